//! The REST API under `/api/v1`: JSON in and out, one error shape, authenticated by API key or
//! session cookie, described by an OpenAPI 3 document generated from these handlers and served at
//! `/api/v1/openapi.json`.
//!
//! Tenant isolation: handlers take the tenant from the authenticated [`auth::Caller`] only, and
//! every query filters by it; another tenant's ids are "not found", exactly like ids that do not
//! exist, so nothing can be learnt by probing.

pub mod account;
pub mod activity;
pub mod audit;
pub mod cache;
pub mod certificates;
pub mod domains;
pub mod extract;
pub mod keys;
pub mod parity;

pub use extract::JsonBodyErrors;

use kiln_frontdoor::auth;
use kiln_frontdoor::{ApiError, Ctx, MAX_BODY_BYTES};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln API",
        version = "1",
        description = "Manage domains, purge and warm the render cache, see what bots were \
                       served and compare it with what people see. Authenticate with \
                       `Authorization: Bearer <API key>` (create keys while logged in) or a \
                       session cookie from `/api/v1/auth/login`. Errors \
                       are always `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. \
                       Each API key and user may make a burst of requests, then a steady rate \
                       (by default 100, then 10 a second); beyond it every endpoint answers 429 \
                       `rate_limited` with `Retry-After`."
    ),
    paths(
        account::sign_up,
        account::log_in,
        account::log_out,
        account::me,
        account::change_password,
        keys::create,
        keys::list,
        keys::revoke,
        keys::revoke_all,
        domains::create,
        domains::list,
        domains::get,
        domains::update,
        domains::delete,
        domains::verify,
        certificates::get,
        cache::purge,
        cache::warm,
        cache::warm_status,
        cache::list,
        cache::render,
        parity::file,
        parity::list,
        parity::get,
        parity::image,
        activity::renders,
        activity::usage,
        audit::list,
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "api-keys", description = "Keys for scripts and CI"),
        (name = "domains", description = "Domains, settings and ownership"),
        (name = "cache", description = "Purge, warm, list and preview renders"),
        (name = "parity", description = "Compare what people see with the snapshot bots get"),
        (name = "activity", description = "Render log and usage"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kiln_live_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

/// The `/api/v1` routes.
pub fn router(ctx: Ctx) -> Router {
    let limited =
        tower_governor::GovernorLayer::new(ctx.address_limits.clone()).error_handler(|error| {
            match error {
                tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
                    ApiError::too_many(wait_time).into_response()
                }
                other => {
                    tracing::warn!(error = %other, "rate limiter failed");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the client address could not be determined",
                    )
                    .into_response()
                }
            }
        });
    let auth_routes = Router::new()
        .route("/auth/signup", post(account::sign_up))
        .route("/auth/login", post(account::log_in))
        .layer(limited);

    Router::new()
        .merge(auth_routes)
        .route("/auth/logout", post(account::log_out))
        .route("/auth/me", get(account::me))
        .route("/auth/password", post(account::change_password))
        .route("/api-keys", post(keys::create).get(keys::list))
        .route("/api-keys/{id}", axum::routing::delete(keys::revoke))
        .route("/api-keys/revoke-all", post(keys::revoke_all))
        .route("/domains", post(domains::create).get(domains::list))
        .route(
            "/domains/{id}",
            get(domains::get)
                .patch(domains::update)
                .delete(domains::delete),
        )
        .route("/domains/{id}/verify", post(domains::verify))
        .route("/domains/{id}/certificate", get(certificates::get))
        .route("/cache/purge", post(cache::purge))
        .route("/cache/warm", post(cache::warm))
        .route("/cache/warm/{id}", get(cache::warm_status))
        .route("/cache", get(cache::list))
        .route("/render", get(cache::render))
        .route("/parity", post(parity::file).get(parity::list))
        .route("/parity/{id}", get(parity::get))
        .route("/parity/{id}/images/{image}", get(parity::image))
        .route("/renders", get(activity::renders))
        .route("/usage", get(activity::usage))
        .route("/audit", get(audit::list))
        .route("/openapi.json", get(openapi))
        .method_not_allowed_fallback(extract::method_not_allowed)
        .fallback(extract::not_found)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
