//! API keys: stored as a SHA-256 hash beside a visible prefix.

use super::{AuditEvent, Db, DbError, action, insert_audit};
use time::OffsetDateTime;
use uuid::Uuid;

/// A row of `api_keys`, without its hash.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_by: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKeyRecord {
    fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "revoked": self.revoked_at.is_some(),
        })
    }
}

pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_by: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
}

const KEY_COLUMNS: &str =
    "id, tenant_id, created_by, name, prefix, created_at, last_used_at, revoked_at";

/// How stale `last_used_at` may get: refreshing it on every request would turn each API call into a
/// write.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

impl Db {
    pub async fn insert_api_key(
        &self,
        new: &NewApiKey<'_>,
        actor: &str,
    ) -> Result<ApiKeyRecord, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: ApiKeyRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys (id, tenant_id, created_by, name, prefix, key_hash) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}"
        )))
        .bind(new.id)
        .bind(new.tenant_id)
        .bind(new.created_by)
        .bind(new.name)
        .bind(new.prefix)
        .bind(new.key_hash)
        .fetch_one(&mut *tx)
        .await?;
        let event = AuditEvent {
            tenant_id: record.tenant_id,
            actor,
            action: action::API_KEY_CREATE,
            target: &record.prefix,
            before: None,
            after: Some(record.audit_view()),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The tenant's keys, revoked ones included (they stay listed so that the history is visible),
    /// newest first.
    pub async fn api_keys_of(&self, tenant_id: Uuid) -> Result<Vec<ApiKeyRecord>, DbError> {
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Revokes one of the tenant's keys. `None` if it has no such key; a key revoked earlier is
    /// returned unchanged.
    pub async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        actor: &str,
    ) -> Result<Option<ApiKeyRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let revoked: Option<ApiKeyRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = now() \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let record = match revoked {
            Some(record) => {
                let event = AuditEvent {
                    tenant_id,
                    actor,
                    action: action::API_KEY_REVOKE,
                    target: &record.prefix,
                    before: None,
                    after: Some(record.audit_view()),
                };
                insert_audit(&mut tx, event).await?;
                Some(record)
            }
            None => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok(record)
    }

    /// Revokes every live key of the tenant at once (after a password change, say: keys outlive
    /// it otherwise). Returns the keys it revoked; one audit event names them all.
    pub async fn revoke_all_api_keys(
        &self,
        tenant_id: Uuid,
        actor: &str,
    ) -> Result<Vec<ApiKeyRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let revoked: Vec<ApiKeyRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = now() \
             WHERE tenant_id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        )))
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        if !revoked.is_empty() {
            let event = AuditEvent {
                tenant_id,
                actor,
                action: action::API_KEY_REVOKE_ALL,
                target: "all",
                before: None,
                after: Some(serde_json::json!({
                    "revoked": revoked.iter().map(ApiKeyRecord::audit_view).collect::<Vec<_>>(),
                })),
            };
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// The live (unrevoked) key with this hash, its last use refreshed. Revocation takes effect on
    /// the next request: nothing is cached.
    pub async fn use_api_key(&self, key_hash: &[u8]) -> Result<Option<ApiKeyRecord>, DbError> {
        let record: Option<ApiKeyRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(record) = &record {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND \
                 (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
            )
            .bind(record.id)
            .bind(LAST_USED_RESOLUTION_SECS as f64)
            .execute(&self.pool)
            .await?;
        }
        Ok(record)
    }
}
