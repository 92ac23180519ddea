//! Postgres access: the connection pool, migrations, and every query the dashboard runs.
//!
//! Architecture invariant: this is the only module that sees `sqlx::Error`. Callers get a [`DbError`],
//! in which a unique violation is [`DbError::Conflict`] and an unreachable server is
//! [`DbError::Unavailable`].
//!
//! Queries are runtime-checked (`sqlx::query`/`query_as` with `FromRow`), not the compile-time
//! `query!` macros: this first version has no committed `.sqlx/` offline data, and builds must not
//! need a live database. Switching to the macros (with `cargo sqlx prepare` and `SQLX_OFFLINE=true`)
//! is a mechanical change confined to this file. The tests in `tests/it` run every query against a
//! real Postgres.
//!
//! Every write records its audit event in the same transaction, so history cannot miss a change.

use kiln_core::{DomainSettings, Hostname};
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The migrations in the workspace's top-level `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

mod accounts;
mod activity;
mod keys;
mod render_log;
pub mod render_stats;
mod service_tokens;

pub use accounts::{NewUser, SessionRecord, USERS_EMAIL_KEY, UserRecord};
pub use activity::{Bucket, RenderRecord, UsageRecord, UsageSnapshot, WarmJobRecord};
pub use keys::{ApiKeyRecord, NewApiKey};
pub use render_log::RenderFilter;
pub use service_tokens::{NewServiceToken, ServiceTokenRecord};

/// Audit actions recorded by this module.
pub mod action {
    pub const DOMAIN_ADD: &str = "domain.add";
    pub const DOMAIN_REMOVE: &str = "domain.remove";
    pub const DOMAIN_UPDATE: &str = "domain.update";
    pub const DOMAIN_VERIFY: &str = "domain.verify";
    pub const ACCOUNT_SIGNUP: &str = "account.signup";
    pub const ACCOUNT_PASSWORD: &str = "account.password_change";
    pub const API_KEY_CREATE: &str = "api_key.create";
    pub const API_KEY_REVOKE: &str = "api_key.revoke";
    pub const API_KEY_REVOKE_ALL: &str = "api_key.revoke_all";
    pub const SERVICE_TOKEN_CREATE: &str = "service_token.create";
    pub const SERVICE_TOKEN_REVOKE: &str = "service_token.revoke";
    pub const CACHE_PURGE: &str = "cache.purge";
    pub const CACHE_WARM: &str = "cache.warm";
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A row with the same unique key exists; `constraint` names the violated constraint.
    #[error("a row with the same key already exists ({constraint})")]
    Conflict { constraint: String },
    #[error("postgres is unreachable")]
    Unavailable(#[source] sqlx::Error),
    #[error("a database query failed")]
    Query(#[source] sqlx::Error),
    #[error("running the database migrations failed")]
    Migrate(#[source] MigrateError),
}

static POSTGRES_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many database operations have failed in this process, constraint violations aside (the
/// `kiln_postgres_errors_total` metric).
pub fn postgres_errors() -> u64 {
    POSTGRES_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        if !matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation()) {
            POSTGRES_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict {
                constraint: db.constraint().unwrap_or("unnamed").to_owned(),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(error),
            _ => DbError::Query(error),
        }
    }
}

/// The unique constraint on `domains.hostname` (named in `0001_initial.sql`).
pub const DOMAINS_HOSTNAME_KEY: &str = "domains_hostname_key";

/// A row of `domains`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Stored canonical; a row that is not would fail to decode rather than be served.
    #[sqlx(rename = "hostname", try_from = "String")]
    pub host: Hostname,
    pub origin: String,
    pub verified: bool,
    pub verification_token: String,
    #[sqlx(json)]
    pub settings: DomainSettings,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub verified_at: Option<OffsetDateTime>,
    pub verification_checked_at: Option<OffsetDateTime>,
    /// The last ownership check's findings, as the REST API shows them.
    pub verification_result: Option<serde_json::Value>,
    /// Used only through the render service (see `kiln_core::DomainConfig::service_only`).
    pub service_only: bool,
}

impl DomainRecord {
    /// What the audit log keeps of a domain: everything but the verification token.
    pub(crate) fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "tenant_id": self.tenant_id,
            "host": self.host,
            "origin": self.origin,
            "verified": self.verified,
            "service_only": self.service_only,
            "settings": self.settings,
        })
    }
}

/// The values of a domain about to be inserted.
#[derive(Clone, Debug)]
pub struct NewDomain<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub host: &'a Hostname,
    pub origin: &'a str,
    pub verified: bool,
    pub verification_token: &'a str,
    pub settings: &'a DomainSettings,
    pub service_only: bool,
}

/// A pool of Postgres connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
}

/// The columns of a [`DomainRecord`], for `concat!` into `'static` SQL (sqlx 0.9 wants `SqlSafeStr`).
macro_rules! domain_columns {
    () => {
        "id, tenant_id, hostname, origin, verified, verification_token, settings, created_at, \
         updated_at, verified_at, verification_checked_at, verification_result, service_only"
    };
}

impl Db {
    /// Connects to the database at `url`, failing if it cannot be reached within a few seconds.
    ///
    /// The connections run without the JIT compiler (`jit = off`, whatever the server's default):
    /// the dashboard's queries are short, and on the larger ones the JIT spent most of a second
    /// compiling what then ran in milliseconds.
    pub async fn connect(url: &SecretString) -> Result<Self, DbError> {
        let options: PgConnectOptions = url.expose_secret().parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.options([("jit", "off")]))
            .await?;
        Ok(Db { pool })
    }

    /// Applies any migration not yet applied. Concurrent callers are safe: sqlx takes an advisory lock.
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await.map_err(DbError::Migrate)
    }

    /// A round trip to Postgres, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts a domain and its `domain.add` audit event. A hostname that is already registered fails
    /// with [`DbError::Conflict`] on [`DOMAINS_HOSTNAME_KEY`], and nothing is written.
    pub async fn insert_domain(
        &self,
        new: &NewDomain<'_>,
        actor: &str,
    ) -> Result<DomainRecord, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: DomainRecord = sqlx::query_as(concat!(
            "INSERT INTO domains (id, tenant_id, hostname, origin, verified, verification_token, settings, \
             verified_at, service_only) VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $5 THEN now() END, \
             $8) RETURNING ",
            domain_columns!()
        ))
        .bind(new.id)
        .bind(new.tenant_id)
        .bind(new.host.as_str())
        .bind(new.origin)
        .bind(new.verified)
        .bind(new.verification_token)
        .bind(Json(new.settings))
        .bind(new.service_only)
        .fetch_one(&mut *tx)
        .await?;
        let event = AuditEvent {
            tenant_id: record.tenant_id,
            actor,
            action: action::DOMAIN_ADD,
            target: record.host.as_str(),
            before: None,
            after: Some(record.audit_view()),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn domain_by_host(&self, host: &Hostname) -> Result<Option<DomainRecord>, DbError> {
        let record = sqlx::query_as(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains WHERE hostname = $1"
        ))
        .bind(host.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// Every domain of every tenant, by hostname.
    pub async fn list_domains(&self) -> Result<Vec<DomainRecord>, DbError> {
        let records = sqlx::query_as(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains ORDER BY hostname"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Deletes a domain and records a `domain.remove` audit event. Returns the deleted row, or `None`
    /// (and records nothing) if the hostname was not registered.
    pub async fn delete_domain(
        &self,
        host: &Hostname,
        actor: &str,
    ) -> Result<Option<DomainRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: Option<DomainRecord> = sqlx::query_as(concat!(
            "DELETE FROM domains WHERE hostname = $1 RETURNING ",
            domain_columns!()
        ))
        .bind(host.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(record) = &record {
            let event = AuditEvent {
                tenant_id: record.tenant_id,
                actor,
                action: action::DOMAIN_REMOVE,
                target: record.host.as_str(),
                before: Some(record.audit_view()),
                after: None,
            };
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(record)
    }
}

/// Tenant-scoped domain queries: every one filters by the caller's tenant, so an id of another
/// tenant's domain finds nothing.
impl Db {
    pub async fn domains_of(&self, tenant_id: Uuid) -> Result<Vec<DomainRecord>, DbError> {
        let records = sqlx::query_as(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains WHERE tenant_id = $1 ORDER BY hostname"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    pub async fn domain_of(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<DomainRecord>, DbError> {
        let record = sqlx::query_as(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// Replaces a domain's origin and settings, recording before and after. `None` if the tenant has
    /// no such domain. The row is locked while it changes, so concurrent edits are serialised.
    pub async fn update_domain(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        origin: &str,
        settings: &DomainSettings,
        actor: &str,
    ) -> Result<Option<DomainRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let Some(before) = lock_domain(&mut tx, tenant_id, id).await? else {
            return Ok(None);
        };
        let after: DomainRecord = sqlx::query_as(concat!(
            "UPDATE domains SET origin = $3, settings = $4, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            domain_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .bind(origin)
        .bind(Json(settings))
        .fetch_one(&mut *tx)
        .await?;
        if before.audit_view() != after.audit_view() {
            audit_domain_change(&mut tx, actor, action::DOMAIN_UPDATE, &before, &after).await?;
        }
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Records the outcome of an ownership check. A change of the verified state is audited;
    /// once verified, a domain stays verified (a later failing check is recorded but does not take
    /// rendering away from a live site because of a DNS hiccup).
    pub async fn record_verification(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        verified: bool,
        result: &serde_json::Value,
        actor: &str,
    ) -> Result<Option<DomainRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let Some(before) = lock_domain(&mut tx, tenant_id, id).await? else {
            return Ok(None);
        };
        let after: DomainRecord = sqlx::query_as(concat!(
            "UPDATE domains SET verified = verified OR $3, \
             verified_at = CASE WHEN NOT verified AND $3 THEN now() ELSE verified_at END, \
             verification_checked_at = now(), verification_result = $4 \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            domain_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .bind(verified)
        .bind(result)
        .fetch_one(&mut *tx)
        .await?;
        if before.verified != after.verified {
            audit_domain_change(&mut tx, actor, action::DOMAIN_VERIFY, &before, &after).await?;
        }
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Deletes one of the tenant's domains with its audit event; `None` if it has no such domain.
    pub async fn delete_domain_of(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        actor: &str,
    ) -> Result<Option<DomainRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: Option<DomainRecord> = sqlx::query_as(concat!(
            "DELETE FROM domains WHERE tenant_id = $1 AND id = $2 RETURNING ",
            domain_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(record) = &record {
            let event = AuditEvent {
                tenant_id,
                actor,
                action: action::DOMAIN_REMOVE,
                target: record.host.as_str(),
                before: Some(record.audit_view()),
                after: None,
            };
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Unverified domains registered within `window_secs` and not checked in the last
    /// `recheck_secs`, oldest check first: what the background verifier looks at. (A system job, so
    /// it spans tenants; each result is recorded under the domain's own tenant.)
    pub async fn domains_to_verify(
        &self,
        window_secs: i64,
        recheck_secs: i64,
        limit: i64,
    ) -> Result<Vec<DomainRecord>, DbError> {
        let records = sqlx::query_as(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains WHERE NOT verified \
             AND created_at > now() - make_interval(secs => $1) \
             AND (verification_checked_at IS NULL \
                  OR verification_checked_at < now() - make_interval(secs => $2)) \
             ORDER BY verification_checked_at NULLS FIRST LIMIT $3"
        ))
        .bind(window_secs as f64)
        .bind(recheck_secs as f64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Records an event that changes no row (a purge, a warm).
    pub async fn audit(
        &self,
        tenant_id: Uuid,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let event = AuditEvent {
            tenant_id,
            actor,
            action,
            target,
            before: None,
            after: Some(details),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's audit log, newest first.
    pub async fn audit_events_of(
        &self,
        tenant_id: Uuid,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, DbError> {
        let records = sqlx::query_as(
            "SELECT id, actor, action, target, before, after, created_at FROM audit_events \
             WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }
}

/// A row of `audit_events` as a tenant sees it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub created_at: OffsetDateTime,
}

/// Locks one of the tenant's domains for the rest of the transaction, so concurrent changes to it
/// are serialised.
async fn lock_domain(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<DomainRecord>, DbError> {
    let record = sqlx::query_as(concat!(
        "SELECT ",
        domain_columns!(),
        " FROM domains WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(tx)
    .await?;
    Ok(record)
}

async fn audit_domain_change(
    tx: &mut sqlx::PgConnection,
    actor: &str,
    action: &str,
    before: &DomainRecord,
    after: &DomainRecord,
) -> Result<(), DbError> {
    let event = AuditEvent {
        tenant_id: after.tenant_id,
        actor,
        action,
        target: after.host.as_str(),
        before: Some(before.audit_view()),
        after: Some(after.audit_view()),
    };
    insert_audit(tx, event).await
}

/// A row of `audit_events`.
pub(crate) struct AuditEvent<'a> {
    pub tenant_id: Uuid,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub(crate) async fn insert_audit(
    tx: &mut sqlx::PgConnection,
    event: AuditEvent<'_>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_events (tenant_id, actor, action, target, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.tenant_id)
    .bind(event.actor)
    .bind(event.action)
    .bind(event.target)
    .bind(event.before)
    .bind(event.after)
    .execute(tx)
    .await?;
    Ok(())
}
