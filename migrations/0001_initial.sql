-- Kiln's first schema: tenants own domains, and every change an operator or tenant makes is recorded
-- in audit_events. Postgres is the source of truth; the dashboard publishes what gateways need to Redis.
--
-- Accounts, memberships and API keys arrive in later migrations and hang off tenants(id).

CREATE TABLE tenants (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The built-in operator tenant: domains an operator registers from the command line belong to it.
-- Its id is well known (kiln_dashboard::OPERATOR_TENANT_ID) and must never change.
INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'operator');

CREATE TABLE domains (
    id                 uuid        PRIMARY KEY,
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The canonical form produced by kiln_core::Hostname: lowercase ASCII, punycode, no trailing dot.
    hostname           text        NOT NULL CHECK (hostname <> '' AND hostname = lower(hostname)),
    -- scheme://host[:port], no path: what kiln_dashboard::origin::Origin produces.
    origin             text        NOT NULL,
    verified           boolean     NOT NULL DEFAULT false,
    -- The value a tenant publishes (DNS TXT record or file) to prove it controls the hostname.
    verification_token text        NOT NULL,
    -- kiln_core::DomainSettings as JSON; missing fields take their defaults when read.
    settings           jsonb       NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Named explicitly: the dashboard maps a violation of it to "already registered".
    CONSTRAINT domains_hostname_key UNIQUE (hostname)
);

CREATE INDEX domains_tenant_id_idx ON domains (tenant_id);

-- Append-only history. tenant_id deliberately has no foreign key: the history of a deleted tenant
-- must outlive it.
CREATE TABLE audit_events (
    id         bigserial   PRIMARY KEY,
    tenant_id  uuid,
    -- Who did it: "operator:cli" today; an account or API key id later.
    actor      text        NOT NULL,
    -- Dotted verb, e.g. "domain.add", "domain.remove".
    action     text        NOT NULL,
    -- What it was done to, e.g. the hostname.
    target     text        NOT NULL,
    before     jsonb,
    after      jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_events_tenant_id_created_at_idx ON audit_events (tenant_id, created_at);
