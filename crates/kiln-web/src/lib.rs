//! The web dashboard: server-rendered pages for people, beside the REST API for scripts.
//!
//! Pages are askama templates from the repository's `dashboard/templates` folder, escaped by
//! default. Every handler calls the same domain logic as the REST API ([`kiln_control::domains`],
//! [`kiln_control::cache`], [`kiln_control::parity`], [`kiln_control::accounts`], …); what is here only reads forms
//! and renders pages. Errors from that logic are first turned into an [`ApiError`], so a page and
//! the API always agree on what went wrong and how bad it is.
//!
//! Security: the session cookie is the REST API's; every state-changing form carries a CSRF token
//! ([`csrf`]), and `POST`s announced as cross-site by the browser are refused outright; responses
//! carry a strict Content-Security-Policy (no inline script, nothing from another origin),
//! `frame-ancestors 'none'`, `X-Frame-Options: DENY` and `Referrer-Policy: same-origin`.
//! Pages that show account data are `Cache-Control: no-store`.

mod account;
mod activity;
mod assets;
mod audit;
mod cache;
mod charts;
mod domains;
mod format;
mod keys;
mod parity;
mod service_tokens;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, SameSite};
use kiln_control::db::UserRecord;
use kiln_frontdoor::auth;
use kiln_frontdoor::auth::SessionUser;
use kiln_frontdoor::{ApiError, Ctx, MAX_BODY_BYTES};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use assets::Assets;

/// The one-shot message shown on the page after a redirect ("Purged 12 pages").
const FLASH_COOKIE: &str = "kiln_flash";

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The dashboard's pages. `ctx` is the REST API's context: the same state, the same logic.
pub fn router(ctx: Ctx) -> Router {
    // Logging in and signing up share the REST API's per-address buckets, so a script cannot get
    // twice the attempts by alternating between the form and the API.
    let limited =
        tower_governor::GovernorLayer::new(ctx.address_limits.clone()).error_handler(|error| {
            match error {
                tower_governor::GovernorError::TooManyRequests { wait_time, .. } => error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    &format!("Too many attempts from your address; try again in {wait_time} s."),
                ),
                other => {
                    tracing::warn!(error = %other, "rate limiter failed");
                    error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "Your address could not be determined.",
                    )
                }
            }
        });
    let auth_forms = Router::new()
        .route("/login", post(account::log_in))
        .route("/signup", post(account::sign_up))
        .layer(limited);

    Router::new()
        .merge(auth_forms)
        .route("/", get(home))
        .route("/login", get(account::login_page))
        .route("/signup", get(account::signup_page))
        .route("/logout", post(account::log_out))
        .route(
            "/account",
            get(account::page).post(account::change_password),
        )
        .route("/domains", get(domains::list).post(domains::create))
        .route("/domains/new", get(domains::new_page))
        .route("/domains/{id}", get(domains::show))
        .route("/domains/{id}/settings", post(domains::update))
        .route("/domains/{id}/verify", post(domains::verify))
        .route("/domains/{id}/delete", post(domains::delete))
        .route("/domains/{id}/cache", get(cache::list))
        .route("/domains/{id}/purge", post(cache::purge))
        .route("/domains/{id}/warm", post(cache::warm))
        .route("/domains/{id}/warm/{job}", get(cache::warm_progress))
        .route(
            "/domains/{id}/preview",
            get(cache::preview_page).post(cache::preview),
        )
        .route("/domains/{id}/parity", get(parity::page).post(parity::file))
        .route("/domains/{id}/parity/{check}", get(parity::show))
        .route("/domains/{id}/parity/{check}/{image}", get(parity::picture))
        .route("/activity", get(activity::page))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/keys/revoke-all", post(keys::revoke_all))
        .route(
            "/service-tokens",
            get(service_tokens::list).post(service_tokens::create),
        )
        .route("/service-tokens/{id}/revoke", post(service_tokens::revoke))
        .route("/audit", get(audit::page))
        .route("/static/{file}", get(assets::serve))
        .fallback(not_found)
        .layer(from_fn(flash))
        .layer(from_fn(refuse_cross_site_posts))
        .layer(from_fn_with_state(ctx.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// Security headers for every dashboard response, the API's included; with `https` (the dashboard's
/// public URL is https) also `Strict-Transport-Security`, so browsers never use plain http for it
/// again.
pub async fn security_headers(
    axum::extract::State(https): axum::extract::State<bool>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    if https {
        set(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        headers,
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// Browsers label every request with where it came from (`Sec-Fetch-Site`); a state-changing
/// request another site started is refused before it reaches a handler. The CSRF token still
/// guards browsers too old to send the header.
async fn refuse_cross_site_posts(req: Request, next: Next) -> Response {
    let cross_site = req.method() != Method::GET
        && req.method() != Method::HEAD
        && req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|site| site != "same-origin" && site != "none");
    if cross_site {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was sent from another site. Open the Kiln dashboard and try again there.",
        );
    }
    next.run(req).await
}

/// The flash message the previous response left, if any.
#[derive(Clone, Debug, Default)]
pub struct Flash(pub Option<String>);

/// Hands the flash cookie's message to the page, and deletes the cookie once a page has shown it.
async fn flash(mut req: Request, next: Next) -> Response {
    let message = auth::request_cookie(req.headers(), FLASH_COOKIE)
        .map(|value| percent_decode_str(&value).decode_utf8_lossy().into_owned())
        .filter(|message| !message.is_empty());
    let had_flash = message.is_some();
    req.extensions_mut().insert(Flash(message));
    let mut response = next.run(req).await;
    if had_flash && !response.status().is_redirection() {
        let cleared = Cookie::build((FLASH_COOKIE, ""))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::ZERO)
            .build();
        auth::append_cookie(&mut response, cleared);
    }
    response
}

/// A `303 See Other` to `location` that shows `message` on the page it leads to.
pub fn redirect_with(location: &str, message: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    let cookie = Cookie::build((
        FLASH_COOKIE,
        utf8_percent_encode(message, NON_ALPHANUMERIC).to_string(),
    ))
    .path("/")
    .http_only(true)
    .same_site(SameSite::Lax)
    .max_age(time::Duration::seconds(60))
    .build();
    auth::append_cookie(&mut response, cookie);
    response
}

/// Which part of the navigation a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    None,
    Domains,
    Activity,
    Keys,
    ServiceTokens,
    Audit,
    Account,
}

/// What every page's frame shows: the user, the navigation, the flash message, the CSRF token its
/// forms carry and the asset URLs.
pub struct Chrome {
    pub email: Option<String>,
    pub csrf: String,
    pub nav: Nav,
    pub flash: Option<String>,
    pub assets: &'static Assets,
}

impl Nav {
    fn name(self) -> &'static str {
        match self {
            Nav::None => "",
            Nav::Domains => "domains",
            Nav::Activity => "activity",
            Nav::Keys => "keys",
            Nav::ServiceTokens => "service-tokens",
            Nav::Audit => "audit",
            Nav::Account => "account",
        }
    }
}

impl Chrome {
    /// Whether the page belongs to the navigation entry `name` (templates mark it current).
    pub fn is(&self, name: &str) -> bool {
        self.nav.name() == name
    }

    fn anonymous(csrf: String, flash: Option<String>) -> Self {
        Chrome {
            email: None,
            csrf,
            nav: Nav::None,
            flash,
            assets: Assets::get(),
        }
    }
}

/// A logged-in user on a page. Anyone else is sent to the log-in page (and back afterwards).
pub struct WebUser {
    pub tenant_id: Uuid,
    pub user: UserRecord,
    pub session_id: Uuid,
    pub actor: String,
    csrf: String,
    flash: Option<String>,
}

impl WebUser {
    /// The page frame for this user.
    pub fn chrome(&self, nav: Nav) -> Chrome {
        Chrome {
            email: Some(self.user.email.clone()),
            csrf: self.csrf.clone(),
            nav,
            flash: self.flash.clone(),
            assets: Assets::get(),
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, ctx: &Ctx, token: &str) -> Result<(), CsrfRefused> {
        if ctx.csrf.verify_session(self.session_id, token) {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A form whose CSRF token was not its session's.
#[derive(Debug)]
pub struct CsrfRefused;

impl From<CsrfRefused> for Response {
    fn from(_: CsrfRefused) -> Response {
        csrf_refused()
    }
}

fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "The form's security token is missing or out of date (perhaps you logged in again in \
         another tab). Go back, reload the page and send the form again.",
    )
}

impl FromRequestParts<Ctx> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, Self::Rejection> {
        let flash = parts
            .extensions
            .get::<Flash>()
            .cloned()
            .unwrap_or_default()
            .0;
        match SessionUser::from_request_parts(parts, ctx).await {
            Ok(who) => Ok(WebUser {
                tenant_id: who.caller.tenant_id,
                actor: who.caller.actor(),
                csrf: ctx.csrf.for_session(who.session_id),
                session_id: who.session_id,
                user: who.user,
                flash,
            }),
            Err(error) if error.status == StatusCode::SERVICE_UNAVAILABLE => Err(error_page(
                error.status,
                "Dashboard unavailable",
                "The database is not answering, so you cannot be logged in. Try again in a \
                 moment.",
            )),
            Err(_) => {
                let back = (parts.method == Method::GET)
                    .then(|| parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()))
                    .flatten()
                    .filter(|target| is_local_path(target));
                let location = match back {
                    Some(target) => format!(
                        "/login?next={}",
                        utf8_percent_encode(&target, NON_ALPHANUMERIC)
                    ),
                    None => "/login".to_owned(),
                };
                Err(Redirect::to(&location).into_response())
            }
        }
    }
}

/// Whether `target` is a path on this site, safe to redirect to after logging in (`//evil.example`
/// and `/\evil.example` are other sites to a browser).
pub fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.chars().any(char::is_control)
}

/// A form that carries nothing but its CSRF token (a button).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A form body. A malformed one gets an error page rather than a plain-text rejection.
pub struct WebForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(WebForm(value)),
            Err(rejection) => Err(error_page(
                rejection.status(),
                "The form could not be read",
                &rejection.body_text(),
            )),
        }
    }
}

/// Renders a template as a page with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>The page could not be shown; the error has been logged.</p>"),
            )
                .into_response()
        }
    }
}

pub fn ok(template: &impl Template) -> Response {
    render(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            chrome: Chrome::anonymous(String::new(), None),
            status: status.as_u16(),
            title,
            message,
        },
    )
}

/// The error page for an error of the domain logic, worded as the REST API words it.
impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let ApiError {
            status, message, ..
        } = self.0;
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            StatusCode::GATEWAY_TIMEOUT => "Timed out",
            StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
            _ => "The request was refused",
        };
        error_page(status, title, &capitalise(&message))
    }
}

/// An error of the shared domain logic, shown as a page.
pub struct WebError(pub ApiError);

impl<E: Into<ApiError>> From<E> for WebError {
    fn from(error: E) -> Self {
        WebError(error.into())
    }
}

/// What page handlers return: a page, or an error page or redirect.
pub type PageResult = Result<Response, Response>;

/// Turns any error of the domain logic into its error page.
pub fn fail(error: impl Into<ApiError>) -> Response {
    WebError(error.into()).into_response()
}

/// The entries of a one-per-line text box: each non-blank line, trimmed.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

async fn home(user: Result<WebUser, Response>) -> Response {
    match user {
        Ok(_) => Redirect::to("/domains").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

/// The field errors of a form, shown next to each field.
#[derive(Default, Debug)]
pub struct FieldErrors(Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        if self.of(field).is_none() {
            self.0.push((field, capitalise(&message.into())));
        }
    }

    pub fn of(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, message)| message.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
