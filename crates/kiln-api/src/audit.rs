//! `/api/v1/audit`: the account's audit log.

use crate::extract::ApiQuery;
use crate::page::{self, PageSize};
use crate::responses::{CallerErrors, QueryErrors};
use axum::extract::State;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// From the previous page's `next_cursor`.
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub cursor: Option<i64>,
    /// Events per response (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub limit: Option<u32>,
}

const EVENTS_PER_PAGE: PageSize = PageSize {
    default: 100,
    max: 500,
};

/// One change to the account's configuration.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: `user:<id>`, `api_key:<id>`, `operator:cli` or `system:verifier`.
    #[schema(example = "api_key:0193a0c4-6f1e-7c3a-9d52-3b0e8f1a2c4d")]
    pub actor: String,
    /// What, e.g. `domain.update`, `cache.purge`, `api_key.revoke`.
    #[schema(example = "domain.update")]
    pub action: String,
    /// What it was done to, e.g. a hostname.
    pub target: String,
    /// The state before the change, when there was one.
    pub before: Option<serde_json::Value>,
    /// The state after, or the details of an action (a purge's prefix and count).
    pub after: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    pub events: Vec<AuditEntry>,
    /// Pass as `cursor` for older events; null at the end.
    pub next_cursor: Option<i64>,
}

/// The account's audit log, newest first: every change to domains, settings, keys and the
/// password, and every purge and warm, with who made it.
#[utoipa::path(get, path = "/audit", tag = "activity", params(AuditQuery),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Events", body = AuditLog),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<axum::Json<AuditLog>, ApiError> {
    let limit = EVENTS_PER_PAGE.of(query.limit)?;
    if query.cursor.is_some_and(|cursor| cursor < 1) {
        return Err(page::unknown_cursor());
    }
    let records =
        kiln_control::audit::events(&ctx.app, caller.tenant_id, query.cursor, i64::from(limit))
            .await?;
    let next_cursor = page::next_cursor(&records, limit, |r| r.id);
    let events = records
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.created_at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            before: r.before,
            after: r.after,
        })
        .collect();
    Ok(axum::Json(AuditLog {
        events,
        next_cursor,
    }))
}
