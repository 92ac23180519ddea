//! `/api/v1/api-keys`: a logged-in user's keys for scripts and CI.

use crate::extract::{ApiJson, ApiPath};
use crate::responses::{JsonBodyErrors, SessionErrors};
use axum::extract::State;
use axum::http::StatusCode;
use kiln_control::api_keys;
use kiln_control::db::ApiKeyRecord;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::SessionUser;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for, e.g. "deploy pipeline".
    #[schema(example = "deploy pipeline", min_length = 1, max_length = 100)]
    pub name: String,
}

/// An API key as listed: never the secret.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    /// The start of the key, to tell keys apart.
    #[schema(example = "kiln_live_ab12cd34")]
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(record: &ApiKeyRecord) -> Self {
        KeyView {
            id: record.id,
            name: record.name.clone(),
            prefix: record.prefix.clone(),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            revoked_at: record.revoked_at,
        }
    }
}

/// A new key with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The whole key: store it now, it cannot be shown again.
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Creates an API key. Needs a logged-in user (a key cannot create keys).
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = NewKey,
    security(("session" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedKeyView),
        (status = 422, description = "Invalid name, or a body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        SessionErrors,
    ))]
pub async fn create(
    State(ctx): State<Ctx>,
    who: SessionUser,
    ApiJson(input): ApiJson<NewKey>,
) -> Result<(StatusCode, axum::Json<CreatedKeyView>), ApiError> {
    let created = api_keys::create(
        &ctx.app,
        who.caller.tenant_id,
        who.user.id,
        &input.name,
        &who.caller.actor(),
    )
    .await?;
    let view = CreatedKeyView {
        key: KeyView::from(&created.record),
        secret: created.secret,
    };
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// The account's API keys, revoked ones included.
#[utoipa::path(get, path = "/api-keys", tag = "api-keys",
    security(("session" = [])),
    responses(
        (status = 200, description = "The keys, newest first", body = KeyList),
        SessionErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    who: SessionUser,
) -> Result<axum::Json<KeyList>, ApiError> {
    let keys = api_keys::list(&ctx.app, who.caller.tenant_id).await?;
    Ok(axum::Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revokes a key; requests using it fail from now on.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    security(("session" = [])),
    responses(
        (status = 200, description = "Revoked", body = KeyView),
        (status = 404, description = "No such key", body = kiln_frontdoor::ErrorBody),
        SessionErrors,
    ))]
pub async fn revoke(
    State(ctx): State<Ctx>,
    who: SessionUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let record = api_keys::revoke(&ctx.app, who.caller.tenant_id, id, &who.caller.actor()).await?;
    Ok(axum::Json(KeyView::from(&record)))
}

#[derive(Serialize, ToSchema)]
pub struct RevokedKeys {
    /// The keys that were live and are revoked now.
    pub revoked: Vec<KeyView>,
}

/// Revokes every live key of the account at once; requests using any of them fail from now on.
/// Keys are not tied to the password: changing it leaves them working, so revoke them too when
/// a key or the password may have leaked.
#[utoipa::path(post, path = "/api-keys/revoke-all", tag = "api-keys",
    security(("session" = [])),
    responses(
        (status = 200, description = "Revoked (an empty list when no key was live)", body = RevokedKeys),
        SessionErrors,
    ))]
pub async fn revoke_all(
    State(ctx): State<Ctx>,
    who: SessionUser,
) -> Result<axum::Json<RevokedKeys>, ApiError> {
    let revoked = api_keys::revoke_all(&ctx.app, who.caller.tenant_id, &who.caller.actor()).await?;
    Ok(axum::Json(RevokedKeys {
        revoked: revoked.iter().map(KeyView::from).collect(),
    }))
}
