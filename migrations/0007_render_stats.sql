-- Roll-ups of the render log, so that the dashboard's charts and the usage API read one row per
-- domain and hour (or day) instead of every render; the indexes the render log's retention and its
-- `via = 'service'` filter need.
--
-- What is rolled up: every render but previews (the charts and the usage API leave them out), per
-- domain and UTC hour (render_stats_hourly: the 24-hour charts; kept 35 days, as usage_hourly) and
-- per domain and UTC day (render_stats_daily: the 30-day charts and the usage API; kept for good, as
-- usage_daily, since the usage API answers for any past day while `renders` itself is now kept only
-- KILN_RENDER_LOG_RETENTION_DAYS). The dashboard's copier adds to them in the transaction that
-- inserts the renders, counting only the rows it inserted (`INSERT … ON CONFLICT DO NOTHING
-- RETURNING`), so a render copied twice counts once; deleting old renders leaves them as they are.
--
-- Render times are kept as a histogram of the stored renders' durations over fixed buckets:
-- bucket i holds the durations from render_duration_floor(i) to render_duration_floor(i + 1) - 1
-- milliseconds. Below 32 ms a bucket is one millisecond; from there on every power of two is split
-- in 16 (32, 34, 36, … 62, 64, 68, …), so a bucket is at most 1/16 of its durations wide. Bucket 271
-- (from 1,015,808 ms, about 17 minutes) also takes everything longer. The dashboard interpolates
-- percentiles within a bucket (kiln_control::db::render_stats), so a percentile read from the
-- histogram is off by less than 1/16 (6.25 %) of the duration, and exact below 32 ms.
-- A histogram is sparse: `duration_buckets` lists the buckets with a duration in them, ascending,
-- and `duration_counts` the number in each; both are empty without a stored render.

CREATE FUNCTION render_duration_floor(bucket integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN bucket < 32 THEN bucket
                ELSE (16 + (bucket - 32) % 16)::bigint << (1 + (bucket - 32) / 16) END;

-- The thresholds of buckets 1 to 271, for width_bucket (a binary search: exact, whatever the value).
CREATE FUNCTION render_duration_bounds() RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT render_duration_floor(i) FROM generate_series(1, 271) AS i ORDER BY i);

-- The bucket of a duration. (Inlined into the queries that use it, where render_duration_bounds(),
-- without arguments, is evaluated once when the query is planned.)
CREATE FUNCTION render_duration_bucket(duration_ms bigint) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT width_bucket(duration_ms, render_duration_bounds())::smallint $$;

CREATE TABLE render_stats_hourly (
    domain_id        uuid        NOT NULL,
    -- The start of the UTC hour.
    hour             timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    tenant_id        uuid        NOT NULL,
    -- Renders by outcome: `stored`; `rendered` (not stored, as asked: parity checks); `failed`.
    stored           bigint      NOT NULL DEFAULT 0,
    rendered         bigint      NOT NULL DEFAULT 0,
    failed           bigint      NOT NULL DEFAULT 0,
    -- The stored renders' durations (see above).
    duration_buckets smallint[]  NOT NULL DEFAULT '{}',
    duration_counts  bigint[]    NOT NULL DEFAULT '{}',
    -- By hour first: the retention deletes the oldest hours through it, and the copier adds to the
    -- current hour's rows, which sit together.
    PRIMARY KEY (hour, domain_id),
    CHECK (cardinality(duration_buckets) = cardinality(duration_counts))
);

CREATE INDEX render_stats_hourly_tenant_idx ON render_stats_hourly (tenant_id, hour);

CREATE TABLE render_stats_daily (
    domain_id        uuid        NOT NULL,
    -- The UTC day.
    day              date        NOT NULL,
    tenant_id        uuid        NOT NULL,
    stored           bigint      NOT NULL DEFAULT 0,
    rendered         bigint      NOT NULL DEFAULT 0,
    failed           bigint      NOT NULL DEFAULT 0,
    duration_buckets smallint[]  NOT NULL DEFAULT '{}',
    duration_counts  bigint[]    NOT NULL DEFAULT '{}',
    PRIMARY KEY (domain_id, day),
    CHECK (cardinality(duration_buckets) = cardinality(duration_counts))
);

CREATE INDEX render_stats_daily_tenant_idx ON render_stats_daily (tenant_id, day);

-- The retention deletes the oldest renders a batch at a time; without this it would read the whole
-- table to find them.
CREATE INDEX renders_at_idx ON renders (at);

-- The render log filtered to the renders that came through the render service, of one domain or of
-- the whole tenant: without these, a filter that matches nothing reads every render of the domain
-- (or tenant). Small where the render service is little used; the queries name `via = 'service'`
-- literally so that the planner can use them.
CREATE INDEX renders_service_domain_at_idx ON renders (tenant_id, domain_id, at DESC)
    WHERE via = 'service';
CREATE INDEX renders_service_at_idx ON renders (tenant_id, at DESC) WHERE via = 'service';

-- The roll-ups of the renders copied so far (the last 35 days of them for the hourly one).
-- scripts/bench-capacity.sh runs this block again on its generated render log: keep the markers.
-- backfill: begin
SET LOCAL work_mem = '256MB';
CREATE TEMPORARY TABLE render_stats_backfill ON COMMIT DROP AS
SELECT tenant_id, domain_id, date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
       render_duration_bucket(duration_ms) AS bucket,
       count(*) FILTER (WHERE outcome = 'stored') AS stored,
       count(*) FILTER (WHERE outcome = 'rendered') AS rendered,
       count(*) FILTER (WHERE outcome NOT IN ('stored', 'rendered')) AS failed
FROM renders
WHERE purpose <> 'preview'
GROUP BY 1, 2, 3, 4;

INSERT INTO render_stats_hourly (domain_id, hour, tenant_id, stored, rendered, failed,
                                 duration_buckets, duration_counts)
SELECT domain_id, hour, tenant_id, sum(stored), sum(rendered), sum(failed),
       coalesce(array_agg(bucket ORDER BY bucket) FILTER (WHERE stored > 0), '{}'),
       coalesce(array_agg(stored ORDER BY bucket) FILTER (WHERE stored > 0), '{}')
FROM render_stats_backfill
WHERE hour >= date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '35 days'
GROUP BY domain_id, hour, tenant_id;

INSERT INTO render_stats_daily (domain_id, day, tenant_id, stored, rendered, failed,
                                duration_buckets, duration_counts)
SELECT domain_id, day, tenant_id, sum(stored), sum(rendered), sum(failed),
       coalesce(array_agg(bucket ORDER BY bucket) FILTER (WHERE stored > 0), '{}'),
       coalesce(array_agg(stored ORDER BY bucket) FILTER (WHERE stored > 0), '{}')
FROM (SELECT domain_id, (hour AT TIME ZONE 'UTC')::date AS day, tenant_id, bucket,
             sum(stored)::bigint AS stored, sum(rendered)::bigint AS rendered,
             sum(failed)::bigint AS failed
      FROM render_stats_backfill GROUP BY 1, 2, 3, 4) AS per_day
GROUP BY domain_id, day, tenant_id;
-- backfill: end
