//! Users and their sessions.

use super::{AuditEvent, Db, DbError, action, insert_audit};
use time::OffsetDateTime;
use uuid::Uuid;

/// The unique constraint on `users.email` (named in `0002_accounts.sql`).
pub const USERS_EMAIL_KEY: &str = "users_email_key";

/// A row of `users`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    pub password_changed_at: OffsetDateTime,
}

/// A row of `sessions`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A new account: its tenant and its first user.
pub struct NewUser<'a> {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub email: &'a str,
    pub password_hash: &'a str,
}

const USER_COLUMNS: &str = "id, tenant_id, email, password_hash, created_at, password_changed_at";

impl Db {
    /// Creates a tenant and its user in one transaction. A taken email fails with
    /// [`DbError::Conflict`] on [`USERS_EMAIL_KEY`] and writes nothing.
    pub async fn insert_user(&self, new: &NewUser<'_>) -> Result<UserRecord, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
            .bind(new.tenant_id)
            .bind(new.email)
            .execute(&mut *tx)
            .await?;
        let user: UserRecord = sqlx::query_as(
            "INSERT INTO users (id, tenant_id, email, password_hash) VALUES ($1, $2, $3, $4) \
             RETURNING id, tenant_id, email, password_hash, created_at, password_changed_at",
        )
        .bind(new.user_id)
        .bind(new.tenant_id)
        .bind(new.email)
        .bind(new.password_hash)
        .fetch_one(&mut *tx)
        .await?;
        let actor = format!("user:{}", user.id);
        let event = AuditEvent {
            tenant_id: user.tenant_id,
            actor: &actor,
            action: action::ACCOUNT_SIGNUP,
            target: &user.email,
            before: None,
            after: Some(serde_json::json!({ "user_id": user.id, "email": user.email })),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, DbError> {
        let user = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(user)
    }

    pub async fn user_of(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<UserRecord>, DbError> {
        let user = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(user)
    }

    /// Stores a new password hash and revokes every session of the user except `keep`, so that
    /// whoever knew the old password is logged out everywhere else.
    pub async fn change_password(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        password_hash: &str,
        keep: Uuid,
    ) -> Result<u64, DbError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $3, password_changed_at = now() \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = now() \
             WHERE tenant_id = $1 AND user_id = $2 AND id <> $3 AND revoked_at IS NULL",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated > 0 {
            let actor = format!("user:{user_id}");
            let event = AuditEvent {
                tenant_id,
                actor: &actor,
                action: action::ACCOUNT_PASSWORD,
                target: &actor,
                before: None,
                after: Some(serde_json::json!({ "sessions_revoked": revoked })),
            };
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    pub async fn insert_session(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        user_id: Uuid,
        expires_at: OffsetDateTime,
    ) -> Result<SessionRecord, DbError> {
        let session = sqlx::query_as(
            "INSERT INTO sessions (id, tenant_id, user_id, expires_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, tenant_id, user_id, created_at, expires_at",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(user_id)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(session)
    }

    /// The session if it is neither revoked nor past its absolute end, and marks it seen.
    pub async fn live_session(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<SessionRecord>, DbError> {
        let session = sqlx::query_as(
            "UPDATE sessions SET last_seen_at = now() \
             WHERE id = $1 AND tenant_id = $2 AND user_id = $3 \
             AND revoked_at IS NULL AND expires_at > now() \
             RETURNING id, tenant_id, user_id, created_at, expires_at",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(session)
    }

    pub async fn revoke_session(&self, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = now() \
             WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(tenant_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }
}
