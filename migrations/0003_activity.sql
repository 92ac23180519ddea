-- What the dashboard's activity page reads: hourly bot traffic, and the render log by time.

-- Bot traffic per domain per UTC hour, for the dashboard's charts of the last 24 hours.
--
-- Snapshotted like usage_daily, from the hour fields of the gateways' Redis counters
-- (`{domain_id}:{kind}:{HH}` in `kiln:usage:{day}`), keeping the larger of the stored and the new
-- value. The dashboard deletes rows older than 35 days; usage_daily keeps the long history.
CREATE TABLE usage_hourly (
    domain_id    uuid        NOT NULL,
    -- The start of the hour.
    hour         timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    tenant_id    uuid        NOT NULL,
    hits         bigint      NOT NULL DEFAULT 0,
    misses       bigint      NOT NULL DEFAULT 0,
    bypasses     bigint      NOT NULL DEFAULT 0,
    passthroughs bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (domain_id, hour)
);

CREATE INDEX usage_hourly_tenant_idx ON usage_hourly (tenant_id, hour);

-- The activity page lists and charts a whole tenant's renders by time (the older index leads with
-- the domain, which serves one domain's log).
CREATE INDEX renders_tenant_at_idx ON renders (tenant_id, at DESC);
