//! The render service's tokens: stored as a SHA-256 hash beside a visible prefix, with their
//! rate limits; live ones are published to Redis for the gateways.

use super::{AuditEvent, Db, DbError, action, insert_audit};
use time::OffsetDateTime;
use uuid::Uuid;

/// A row of `service_tokens`. The hash is here because the published copy is named by it; it is
/// not a secret (the token is 190 random bits) but no front end shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServiceTokenRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_by: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub token_hash: Vec<u8>,
    /// Checked to be 1 to `service_tokens::MAX_RATE` when set, so always positive.
    pub rate_per_second: Option<i32>,
    pub burst: Option<i32>,
    pub created_at: OffsetDateTime,
    /// As last copied from Redis (see `service_tokens::copy_last_use`).
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl ServiceTokenRecord {
    fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "rate_per_second": self.rate_per_second,
            "burst": self.burst,
            "revoked": self.revoked_at.is_some(),
        })
    }
}

pub struct NewServiceToken<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_by: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a [u8],
    pub rate_per_second: Option<i32>,
    pub burst: Option<i32>,
}

const TOKEN_COLUMNS: &str = "id, tenant_id, created_by, name, prefix, token_hash, rate_per_second, \
     burst, created_at, last_used_at, revoked_at";

impl Db {
    pub async fn insert_service_token(
        &self,
        new: &NewServiceToken<'_>,
        actor: &str,
    ) -> Result<ServiceTokenRecord, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: ServiceTokenRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO service_tokens \
             (id, tenant_id, created_by, name, prefix, token_hash, rate_per_second, burst) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(new.id)
        .bind(new.tenant_id)
        .bind(new.created_by)
        .bind(new.name)
        .bind(new.prefix)
        .bind(new.token_hash)
        .bind(new.rate_per_second)
        .bind(new.burst)
        .fetch_one(&mut *tx)
        .await?;
        let event = AuditEvent {
            tenant_id: record.tenant_id,
            actor,
            action: action::SERVICE_TOKEN_CREATE,
            target: &record.prefix,
            before: None,
            after: Some(record.audit_view()),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The tenant's tokens, revoked ones included (so that the history is visible), newest first.
    pub async fn service_tokens_of(
        &self,
        tenant_id: Uuid,
    ) -> Result<Vec<ServiceTokenRecord>, DbError> {
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE tenant_id = $1 \
             ORDER BY created_at DESC, id"
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Every live (unrevoked) token of every tenant: what the gateways may accept. (A system
    /// read, for publishing them whole.)
    pub async fn live_service_tokens(&self) -> Result<Vec<ServiceTokenRecord>, DbError> {
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE revoked_at IS NULL ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Revokes one of the tenant's tokens. `None` if it has no such token; a token revoked
    /// earlier is returned unchanged (so that a revoke whose withdrawal from Redis failed can be
    /// retried).
    pub async fn revoke_service_token(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        actor: &str,
    ) -> Result<Option<ServiceTokenRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let revoked: Option<ServiceTokenRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE service_tokens SET revoked_at = now() \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let record =
            match revoked {
                Some(record) => {
                    let event = AuditEvent {
                        tenant_id,
                        actor,
                        action: action::SERVICE_TOKEN_REVOKE,
                        target: &record.prefix,
                        before: None,
                        after: Some(record.audit_view()),
                    };
                    insert_audit(&mut tx, event).await?;
                    Some(record)
                }
                None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?,
            };
        tx.commit().await?;
        Ok(record)
    }

    /// Records when tokens were last used (by id), keeping a later time already stored. Ids of
    /// tokens that no longer exist are ignored.
    pub async fn record_service_token_uses(
        &self,
        uses: &[(Uuid, OffsetDateTime)],
    ) -> Result<u64, DbError> {
        if uses.is_empty() {
            return Ok(0);
        }
        let (ids, ats): (Vec<Uuid>, Vec<OffsetDateTime>) = uses.iter().copied().unzip();
        let updated = sqlx::query(
            "UPDATE service_tokens AS t SET last_used_at = u.at \
             FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) \
             WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)",
        )
        .bind(ids)
        .bind(ats)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected())
    }
}
