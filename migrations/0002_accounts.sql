-- Accounts, sessions, API keys, domain verification, cache warming, the render log and daily usage.
--
-- Every tenant-owned row carries tenant_id, and every query the dashboard runs on it filters by it.
-- One account is one tenant (a tenant with several members can come later without changing the
-- tables that hang off tenants).

CREATE TABLE users (
    id                  uuid        PRIMARY KEY,
    tenant_id           uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Lowercased and trimmed by the dashboard before it is stored or looked up.
    email               text        NOT NULL CHECK (email <> '' AND email = lower(email)),
    -- A PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash.
    password_hash       text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE INDEX users_tenant_id_idx ON users (tenant_id);

-- A session is what a session cookie's JWT names (its `sid` claim). The JWT is short-lived and
-- renewed while the session is alive; this row is what log-out and a password change revoke, so that
-- a copied cookie stops working at once.
CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- The absolute end of the session, however often its token is renewed.
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_by   uuid        REFERENCES users (id) ON DELETE SET NULL,
    name         text        NOT NULL CHECK (name <> ''),
    -- The start of the key (`kiln_live_ab12cd34`), shown so that a user can tell keys apart.
    prefix       text        NOT NULL,
    -- SHA-256 of the whole key. Keys are 160 random bits, so a fast hash is enough (no password
    -- stretching needed) and keeps authenticating a request cheap.
    key_hash     bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);

CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id);

ALTER TABLE domains
    ADD COLUMN verified_at             timestamptz,
    ADD COLUMN verification_checked_at timestamptz,
    -- The last check's findings (kiln_verify::Verification as JSON), shown to the customer.
    ADD COLUMN verification_result     jsonb;

UPDATE domains SET verified_at = created_at WHERE verified;

CREATE TABLE warm_jobs (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Set for a sitemap warm; a list of URLs may span several of the tenant's domains.
    domain_id   uuid        REFERENCES domains (id) ON DELETE SET NULL,
    sitemap_url text,
    -- collecting (reading the sitemap) → rendering → (progress is counted in Redis by the workers);
    -- failed when the sitemap could not be read or the dashboard stopped while reading it.
    state       text        NOT NULL CHECK (state IN ('collecting', 'rendering', 'failed')),
    total       integer     NOT NULL DEFAULT 0,
    -- Entries left out (another host, malformed, a child sitemap that failed), with reasons.
    skipped     jsonb       NOT NULL DEFAULT '[]',
    error       text,
    actor       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX warm_jobs_tenant_id_idx ON warm_jobs (tenant_id, created_at);

-- The render log, copied from the workers' Redis stream (`kiln:renders`) by the dashboard. The stream
-- id is the key, so copying the same entry twice (two dashboards, a retry) stores it once.
CREATE TABLE renders (
    stream_id   text        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    domain_id   uuid        NOT NULL,
    at          timestamptz NOT NULL,
    url         text        NOT NULL,
    device      text        NOT NULL,
    purpose     text        NOT NULL,
    outcome     text        NOT NULL,
    status      integer,
    reason      text,
    duration_ms bigint      NOT NULL,
    bytes       bigint      NOT NULL,
    user_agent  text
);

CREATE INDEX renders_domain_at_idx ON renders (tenant_id, domain_id, at DESC);

-- How far the render log has been copied (one row).
CREATE TABLE render_log_cursor (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id   text    NOT NULL
);

-- Bot traffic per domain per UTC day, snapshotted from the gateways' Redis counters. Counters only
-- grow within a day, so a snapshot keeps the larger of the stored and the new value: a Redis that
-- lost its data cannot shrink history.
CREATE TABLE usage_daily (
    domain_id uuid   NOT NULL,
    day       date   NOT NULL,
    tenant_id uuid   NOT NULL,
    hits      bigint NOT NULL DEFAULT 0,
    misses    bigint NOT NULL DEFAULT 0,
    bypasses  bigint NOT NULL DEFAULT 0,
    -- Bot requests proxied to the origin because the domain's path rules exclude them.
    passthroughs bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (domain_id, day)
);

CREATE INDEX usage_daily_tenant_idx ON usage_daily (tenant_id, day);
