//! `/api/v1/service-tokens`: tokens for the render service, with which a customer's own server
//! (prerender-node, rendertron-middleware, …) asks Kiln for its bots' pages by URL.

use crate::extract::{ApiJson, ApiPath};
use crate::responses::{JsonBodyErrors, SessionErrors};
use axum::extract::State;
use axum::http::StatusCode;
use kiln_control::db::ServiceTokenRecord;
use kiln_control::service_tokens::{self, NewToken};
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::SessionUser;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceToken {
    /// What the token is for, e.g. "shop's prerender-node".
    #[schema(example = "shop's prerender-node", min_length = 1, max_length = 100)]
    pub name: String,
    /// Requests a second the token may make on each gateway; left out, the gateways' default.
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_per_second: Option<u32>,
    /// Requests the token may make at once above its rate; left out, the gateways' default.
    #[schema(minimum = 1, maximum = 10000)]
    pub burst: Option<u32>,
}

/// A service token as listed: never the token itself.
#[derive(Serialize, ToSchema)]
pub struct ServiceTokenView {
    pub id: Uuid,
    pub name: String,
    /// The start of the token, to tell tokens apart.
    #[schema(example = "kiln_svc_ab12cd34")]
    pub prefix: String,
    /// Requests a second on each gateway (`null`: the gateways' default).
    pub rate_per_second: Option<u32>,
    /// Requests at once above the rate (`null`: the gateways' default).
    pub burst: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When a gateway last saw the token used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A limit as stored (checked positive), as the API shows it.
fn limit(value: Option<i32>) -> Option<u32> {
    value.and_then(|value| u32::try_from(value).ok())
}

impl From<&ServiceTokenRecord> for ServiceTokenView {
    fn from(record: &ServiceTokenRecord) -> Self {
        ServiceTokenView {
            id: record.id,
            name: record.name.clone(),
            prefix: record.prefix.clone(),
            rate_per_second: limit(record.rate_per_second),
            burst: limit(record.burst),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            revoked_at: record.revoked_at,
        }
    }
}

/// A new token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedServiceToken {
    pub id: Uuid,
    pub name: String,
    #[schema(example = "kiln_svc_ab12cd34")]
    pub prefix: String,
    /// The whole token: store it now, it cannot be shown again. Give it to your prerender
    /// middleware as its token (prerender-node's `prerenderToken`, sent as `X-Prerender-Token`).
    #[schema(example = "kiln_svc_ab12cd34EFGH5678ijkl9012MNOP3456")]
    pub token: String,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceTokenList {
    pub tokens: Vec<ServiceTokenView>,
}

/// Creates a render service token. Needs a logged-in user (an API key cannot create tokens).
#[utoipa::path(post, path = "/service-tokens", tag = "service-tokens",
    request_body = NewServiceToken,
    security(("session" = [])),
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedServiceToken),
        (status = 422, description = "Invalid name, rate or burst, or a body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "Redis did not answer: the token was not created", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        SessionErrors,
    ))]
pub async fn create(
    State(ctx): State<Ctx>,
    who: SessionUser,
    ApiJson(input): ApiJson<NewServiceToken>,
) -> Result<(StatusCode, axum::Json<CreatedServiceToken>), ApiError> {
    let request = NewToken {
        name: &input.name,
        rate_per_second: input.rate_per_second,
        burst: input.burst,
    };
    let created = service_tokens::create(
        &ctx.app,
        who.caller.tenant_id,
        who.user.id,
        &request,
        &who.caller.actor(),
    )
    .await?;
    let view = ServiceTokenView::from(&created.record);
    let body = CreatedServiceToken {
        id: view.id,
        name: view.name,
        prefix: view.prefix,
        token: created.secret,
        rate_per_second: view.rate_per_second,
        burst: view.burst,
        created_at: view.created_at,
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// The account's render service tokens, revoked ones included, with their last use.
#[utoipa::path(get, path = "/service-tokens", tag = "service-tokens",
    security(("session" = [])),
    responses(
        (status = 200, description = "The tokens, newest first", body = ServiceTokenList),
        SessionErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    who: SessionUser,
) -> Result<axum::Json<ServiceTokenList>, ApiError> {
    let tokens = service_tokens::list(&ctx.app, who.caller.tenant_id).await?;
    Ok(axum::Json(ServiceTokenList {
        tokens: tokens.iter().map(ServiceTokenView::from).collect(),
    }))
}

/// Revokes a token: the gateways refuse it from the next request on. Revoking a revoked token
/// succeeds (and withdraws it from the gateways again).
#[utoipa::path(delete, path = "/service-tokens/{id}", tag = "service-tokens",
    params(("id" = Uuid, Path, description = "The token's id")),
    security(("session" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "Revoked, but Redis did not answer, so the gateways may still \
            accept it: send the request again", body = kiln_frontdoor::ErrorBody),
        SessionErrors,
    ))]
pub async fn revoke(
    State(ctx): State<Ctx>,
    who: SessionUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    service_tokens::revoke(&ctx.app, who.caller.tenant_id, id, &who.caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
