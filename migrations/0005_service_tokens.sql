-- The render service: tokens with which a customer's own server (prerender-node,
-- rendertron-middleware, an nginx recipe…) asks Kiln's gateways for its bots' pages by URL, and
-- domains used only that way.

CREATE TABLE service_tokens (
    id              uuid        PRIMARY KEY,
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_by      uuid        REFERENCES users (id) ON DELETE SET NULL,
    name            text        NOT NULL CHECK (name <> ''),
    -- The start of the token (`kiln_svc_ab12cd34`), shown so that a user can tell tokens apart.
    prefix          text        NOT NULL,
    -- SHA-256 of the whole token; the gateways look tokens up by its hex form
    -- (kiln_store::token_hash), which the dashboard publishes to Redis from this column. Tokens are
    -- 190 random bits, so a fast hash is enough.
    token_hash      bytea       NOT NULL,
    -- Requests a second the token may make on each gateway, and at once above that; NULL: the
    -- gateways' defaults (KILN_SERVICE_TOKEN_RATE, KILN_SERVICE_TOKEN_BURST).
    rate_per_second integer     CHECK (rate_per_second > 0),
    burst           integer     CHECK (burst > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Copied from Redis (where the gateways record uses) by the dashboard's activity copier.
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    CONSTRAINT service_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX service_tokens_tenant_id_idx ON service_tokens (tenant_id);

-- A domain used only through the render service: no CNAME to Kiln's edge, and its origin is the
-- public site itself (`https://<hostname>`).
ALTER TABLE domains ADD COLUMN service_only boolean NOT NULL DEFAULT false;
