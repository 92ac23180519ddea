//! The REST API under `/api/v1`: JSON in and out, one error shape, authenticated by API key or
//! session cookie, described by an OpenAPI 3 document generated from these handlers and served at
//! `/api/v1/openapi.json`.
//!
//! Tenant isolation: handlers take the tenant from the authenticated [`auth::Caller`] only, and
//! every query filters by it; another tenant's ids are "not found", exactly like ids that do not
//! exist, so nothing can be learnt by probing.
//!
//! Architecture invariant: the router and the document cannot drift. Each handler is registered
//! once, with `utoipa_axum::routes!`, which takes its method and path from its `#[utoipa::path]`
//! (relative to [`PREFIX`]) and adds the operation to the document as it adds the route; the
//! document is committed beside the crate (`openapi.json`) and a test fails when they differ.

pub mod account;
pub mod activity;
pub mod audit;
pub mod cache;
pub mod certificates;
pub mod domains;
pub mod extract;
pub mod keys;
pub mod page;
pub mod parity;
pub mod responses;
pub mod service_tokens;

use kiln_frontdoor::auth;
use kiln_frontdoor::{ApiError, Ctx, MAX_BODY_BYTES};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the API is served: the dashboard nests [`router`] here, and every path in the document
/// starts with it.
pub const PREFIX: &str = "/api/v1";

/// What the document says besides its paths (and the schemas they use), which come from the
/// routes themselves: see [`document`].
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
    modifiers(&Security),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "api-keys", description = "Keys for scripts and CI"),
        (name = "service-tokens", description = "Tokens for the render service, with which your \
            own server (prerender-node, rendertron-middleware, …) asks Kiln for bots' pages"),
        (name = "domains", description = "Domains, settings and ownership"),
        (name = "cache", description = "Purge, warm, list and preview renders"),
        (name = "parity", description = "Compare what people see with the snapshot bots get"),
        (name = "activity", description = "Render log and usage"),
    )
)]
struct ApiDoc;

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

/// Every endpoint, each registered once: `routes!` takes a handler's method and path from its
/// `#[utoipa::path]`, so the router and the document cannot disagree. (Handlers on one path go in
/// one `routes!`.) Sign-up and log-in are apart because they are also limited per client address,
/// a layer [`router`] adds and the document does not need.
struct Routes {
    address_limited: OpenApiRouter<Ctx>,
    rest: OpenApiRouter<Ctx>,
}

impl Routes {
    fn new() -> Self {
        let address_limited = OpenApiRouter::new()
            .routes(routes!(account::sign_up))
            .routes(routes!(account::log_in));
        let rest = OpenApiRouter::new()
            .routes(routes!(account::log_out))
            .routes(routes!(account::me))
            .routes(routes!(account::change_password))
            .routes(routes!(keys::create, keys::list))
            .routes(routes!(keys::revoke))
            .routes(routes!(keys::revoke_all))
            .routes(routes!(service_tokens::create, service_tokens::list))
            .routes(routes!(service_tokens::revoke))
            .routes(routes!(domains::create, domains::list))
            .routes(routes!(domains::get, domains::update, domains::delete))
            .routes(routes!(domains::verify))
            .routes(routes!(certificates::get))
            .routes(routes!(cache::purge))
            .routes(routes!(cache::warm))
            .routes(routes!(cache::warm_status))
            .routes(routes!(cache::list))
            .routes(routes!(cache::render))
            .routes(routes!(parity::file, parity::list))
            .routes(routes!(parity::get))
            .routes(routes!(parity::image))
            .routes(routes!(activity::renders))
            .routes(routes!(activity::usage))
            .routes(routes!(audit::list));
        Routes {
            address_limited,
            rest,
        }
    }
}

/// The OpenAPI document [`router`] serves at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let routes = Routes::new();
    with_prefix(routes.address_limited.merge(routes.rest).into_openapi())
}

/// The whole document: [`ApiDoc`] with the routes' paths, under [`PREFIX`].
fn with_prefix(routes: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().nest(PREFIX, routes)
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
    let routes = Routes::new();
    let (router, paths) = routes
        .address_limited
        .layer(limited)
        .merge(routes.rest)
        .split_for_parts();
    let document = Arc::new(with_prefix(paths));
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(&*document).into_response() }
            }),
        )
        .method_not_allowed_fallback(extract::method_not_allowed)
        .fallback(extract::not_found)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The document is committed beside the crate (`openapi.json`), so that a change to the API
    /// shows in review as a change to that file.
    #[test]
    fn the_document_is_the_committed_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let served = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("KILN_UPDATE_OPENAPI").is_some_and(|value| value == "1") {
            std::fs::write(&path, &served).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != served {
            let (was, is): (Vec<_>, Vec<_>) =
                (committed.lines().collect(), served.lines().collect());
            let line = (0..was.len().max(is.len()))
                .find(|&at| was.get(at) != is.get(at))
                .unwrap_or(was.len());
            panic!(
                "the API's OpenAPI document is not {}: line {} is `{}` there but `{}` now. If the \
                 API changed on purpose, write the file again with \
                 `KILN_UPDATE_OPENAPI=1 cargo test -p kiln-api` and commit it",
                path.display(),
                line + 1,
                was.get(line).map_or("(the end)", |text| text.trim()),
                is.get(line).map_or("(the end)", |text| text.trim()),
            );
        }
    }
}
