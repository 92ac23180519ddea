//! `/api/v1/domains/{id}/certificate`: where a domain's TLS certificate stands, as `kiln-acme`
//! recorded it in Redis.

use crate::extract::ApiPath;
use crate::responses::CallerErrors;
use axum::extract::State;
use kiln_control::certificates::CertificateState;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A domain's TLS certificate.
#[derive(Serialize, ToSchema)]
pub struct CertificateView {
    /// `none` until the domain is verified and the certificate manager has looked at it;
    /// `ordering` while an order is under way; `issued` once the edges serve HTTPS for it;
    /// `failed` when the last order failed (the previous certificate, if any, is still served).
    #[schema(example = "issued")]
    pub state: CertificateViewState,
    /// When the certificate being served expires; it is renewed 30 days before.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Why the last order failed.
    pub last_error: Option<String>,
    /// When the next order is tried, after a failure.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateViewState {
    None,
    Ordering,
    Issued,
    Failed,
}

fn at(unix: Option<i64>) -> Option<OffsetDateTime> {
    unix.and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
}

/// The domain's TLS certificate.
#[utoipa::path(get, path = "/domains/{id}/certificate", tag = "domains",
    params(("id" = Uuid, Path, description = "The domain's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The domain's certificate", body = CertificateView),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "Redis is unreachable", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<CertificateView>, ApiError> {
    let record = kiln_control::domains::get(&ctx.app, caller.tenant_id, id).await?;
    let status = kiln_control::certificates::status(&ctx.app, &record)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot read a certificate's status");
            ApiError::unavailable("the certificate's status cannot be read right now")
        })?;
    Ok(axum::Json(match status {
        None => CertificateView {
            state: CertificateViewState::None,
            not_after: None,
            last_error: None,
            retry_at: None,
            updated_at: None,
        },
        Some(status) => CertificateView {
            state: match status.state {
                CertificateState::Ordering => CertificateViewState::Ordering,
                CertificateState::Issued => CertificateViewState::Issued,
                CertificateState::Failed => CertificateViewState::Failed,
            },
            not_after: at(status.not_after),
            last_error: status.last_error,
            retry_at: at(status.retry_at),
            updated_at: at(Some(status.updated_at)),
        },
    }))
}
