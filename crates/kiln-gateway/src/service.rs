//! The render service: Kiln as a drop-in for prerender.io's and Rendertron's users, whose own server
//! (prerender-node, prerender_rails, rendertron-middleware, prerender.io's nginx recipe…) decides
//! that a request is a bot's and fetches the rendered page from a render service by URL. It answers
//! on a host name of its own (`KILN_SERVICE_HOST`), which is never a customer's domain.
//!
//! What it takes (see [`Target::read`]):
//! - prerender.io's `GET /<absolute URL>` (`/https://shop.example/p/3?x=1`, the URL's own query
//!   included) and `GET /render?url=<encoded URL>`, with the token in `X-Prerender-Token`;
//! - Rendertron's `GET /render/<URL>` (encoded, as rendertron-middleware sends it, or not) and
//!   `?mobile`, with the token as the path segment before the URL (`/render/<token>/<URL>`), since
//!   that middleware has no other place for one;
//! - prerender.io's `POST /recache` (`{"prerenderToken", "url" | "urls", "adaptiveType"}`), which
//!   queues a fresh render of each page on the background queue, replacing what is cached once it
//!   is done.
//!
//! A token belongs to a tenant (published by the control plane, `kiln_store::ServiceTokens`) and
//! renders only pages of that tenant's verified domains; any other host is `404`, exactly as a
//! host nobody registered. A page is served from the same cache as the edge's bots (a render for
//! either answers both) and through the same three steps (`bot::cached_or_rendered`): `HIT`,
//! `STALE`, single flight, the tenant's render budget, usage counts and the render log, where it
//! shows as `via: service`. When no render can be had in time, the page comes from the site itself
//! (`BYPASS`), fetched as a person's browser would with `X-Prerender: 1`: the bot's User-Agent is
//! left out, so that the customer's middleware serves the page instead of asking Kiln again.

use crate::bot::{self, Renders, Wanted};
use crate::directory::Domain;
use crate::error::retry_after_secs;
use crate::representation::{CACHE_HEADER, Negotiation};
use crate::state::AppState;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use kiln_core::job::RenderPurpose;
use kiln_core::{DeviceClass, Hostname, NormalizedUrl, RenderVia};
use kiln_queue::QueueKind;
use kiln_store::{ServiceToken, UsageKind, token_hash};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The header prerender.io's middlewares send the token in.
pub const TOKEN_HEADER: &str = "x-prerender-token";
/// The longest page URL the service renders (as `kiln_core::MAX_TARGET_LEN` for the edge's
/// request targets, plus room for a scheme and a host).
pub const MAX_URL_LEN: usize = kiln_core::url::MAX_TARGET_LEN + 300;
/// The most pages one `/recache` names.
pub const MAX_RECACHE_URLS: usize = 1_000;
/// The largest `/recache` body.
const MAX_RECACHE_BODY: usize = 512 * 1024;
/// How often one gateway records a token's use in Redis at most.
pub const RECORD_USE_EVERY: Duration = Duration::from_secs(60);
/// Rendertron's own query parameters, which are not the page's.
const RENDERTRON_PARAMS: [&str; 4] = ["mobile", "wc-inject-shadydom", "timeout", "refreshCache"];

/// Why the service refuses a request. Each answer is plain text for the person reading the
/// middleware's logs, and names what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "a service token is required: send it in the X-Prerender-Token header (prerender.io's \
         middlewares), or as the path segment after /render/ (rendertron-middleware: \
         proxyUrl https://<service host>/render/<token>/)"
    )]
    NoToken,
    #[error("the service token is not valid: it was revoked, or never issued")]
    BadToken,
    #[error("the render service cannot check tokens right now; retry shortly")]
    TokenCheckFailed,
    #[error("this token has made more requests than it may; retry in {} s", retry_after_secs(*.0))]
    RateLimited(Duration),
    #[error(
        "the render service answers GET /<absolute URL>, GET /render?url=<encoded URL>, \
         GET /render/<token>/<URL> and POST /recache"
    )]
    NotFound,
    #[error("the render service answers GET and HEAD (and POST on /recache)")]
    MethodNotAllowed,
    #[error("the page URL is longer than {MAX_URL_LEN} bytes")]
    UrlTooLong,
    #[error("the page URL `{url}` cannot be rendered: {why}")]
    BadUrl { url: String, why: String },
    #[error("no domain `{0}` is registered to this token's account")]
    UnknownDomain(String),
    #[error(
        "the domain `{0}` is not verified yet: publish its TXT record and verify it in Kiln's \
         dashboard"
    )]
    Unverified(String),
    #[error("the recache request is not valid: {0}")]
    BadRecache(String),
    #[error("the recache request is larger than {MAX_RECACHE_BODY} bytes")]
    RecacheTooLarge,
    #[error("the renders could not be queued; retry shortly")]
    QueueFailed,
}

impl ServiceError {
    fn status(&self) -> StatusCode {
        match self {
            ServiceError::NoToken | ServiceError::BadToken => StatusCode::UNAUTHORIZED,
            ServiceError::TokenCheckFailed | ServiceError::QueueFailed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::NotFound | ServiceError::UnknownDomain(_) => StatusCode::NOT_FOUND,
            ServiceError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ServiceError::UrlTooLong => StatusCode::URI_TOO_LONG,
            ServiceError::BadUrl { .. } | ServiceError::BadRecache(_) => StatusCode::BAD_REQUEST,
            ServiceError::Unverified(_) => StatusCode::FORBIDDEN,
            ServiceError::RecacheTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ServiceError::NoToken => "no-token",
            ServiceError::BadToken => "bad-token",
            ServiceError::TokenCheckFailed => "token-check-failed",
            ServiceError::RateLimited(_) => "rate-limited",
            ServiceError::NotFound => "not-found",
            ServiceError::MethodNotAllowed => "method-not-allowed",
            ServiceError::UrlTooLong => "url-too-long",
            ServiceError::BadUrl { .. } => "bad-url",
            ServiceError::UnknownDomain(_) => "unknown-domain",
            ServiceError::Unverified(_) => "unverified-domain",
            ServiceError::BadRecache(_) => "bad-recache",
            ServiceError::RecacheTooLarge => "recache-too-large",
            ServiceError::QueueFailed => "queue-failed",
        }
    }

    fn bad_url(url: &str, why: impl ToString) -> Self {
        ServiceError::BadUrl {
            url: url.chars().take(200).collect(),
            why: why.to_string(),
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (http::HeaderName::from_static("x-kiln-error"), self.code()),
            ],
            format!("{self}\n"),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            ServiceError::RateLimited(wait) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*wait)),
                );
            }
            ServiceError::TokenCheckFailed | ServiceError::QueueFailed => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ServiceError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            _ => {}
        }
        response
    }
}

/// What a request to the service asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A page: its URL as sent, the token if the path carried one, and whether Rendertron's
    /// `mobile` flag asked for the phone's render.
    Render {
        url: String,
        path_token: Option<String>,
        mobile: bool,
    },
    /// `POST /recache`.
    Recache,
    /// `GET /`: what the service is.
    Index,
}

impl Target {
    /// Reads the request line: `path` as sent (still percent-encoded) and the raw `query`.
    pub fn read(method: &Method, path: &str, query: Option<&str>) -> Result<Target, ServiceError> {
        if path == "/recache" {
            return match *method {
                Method::POST => Ok(Target::Recache),
                _ => Err(ServiceError::MethodNotAllowed),
            };
        }
        if !matches!(*method, Method::GET | Method::HEAD) {
            return Err(ServiceError::MethodNotAllowed);
        }
        if path == "/" {
            return Ok(Target::Index);
        }
        if path == "/render" {
            // prerender.io's `/render?url=<encoded URL>`.
            let url = query
                .into_iter()
                .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
                .find(|(name, _)| name == "url")
                .map(|(_, value)| value.into_owned())
                .ok_or(ServiceError::NotFound)?;
            return Ok(Target::Render {
                url,
                path_token: None,
                mobile: false,
            });
        }
        if let Some(rest) = path.strip_prefix("/render/") {
            return Ok(rendertron(rest, query));
        }
        if let Some(url) = path.strip_prefix('/').filter(|rest| is_absolute_url(rest)) {
            // prerender.io's `/<absolute URL>`, its path decoded once as prerender.io decodes it:
            // prerender.io's nginx recipe puts the page's whole `$request_uri` in the path, which
            // nginx escapes (`?` as `%3F`, `%` as `%25`), while the middlewares send the page's
            // path as they got it, where one decoding changes nothing a server tells apart
            // (`%2F` and `%3F` in a path segment aside, as with prerender.io). The request's own
            // query, which only the middlewares send, is the page's, as it is.
            let url = decode_path_url(url);
            let url = match query {
                Some(query) => format!("{url}?{query}"),
                None => url,
            };
            return Ok(Target::Render {
                url: repair_slashes(&url),
                path_token: None,
                mobile: false,
            });
        }
        Err(ServiceError::NotFound)
    }
}

/// Rendertron's `/render/[<token>/]<URL>`: the URL percent-encoded (rendertron-middleware
/// encodes it whole) or not; its flags in the query.
fn rendertron(rest: &str, query: Option<&str>) -> Target {
    let (path_token, rest) = match rest.split_once('/') {
        Some((token, url)) if !is_absolute_url(rest) && !token.is_empty() => {
            (Some(decode(token)), url)
        }
        _ => (None, rest),
    };
    let params: Vec<(String, String)> = query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mobile = params.iter().any(|(name, _)| name == "mobile");
    // Sent unencoded, the URL is taken as it is, and its query arrived as the request's: give it
    // back, less Rendertron's own flags.
    let raw = is_absolute_url(rest);
    let mut url = if raw { rest.to_owned() } else { decode(rest) };
    if raw {
        let page_params: Vec<_> = params
            .iter()
            .filter(|(name, _)| !RENDERTRON_PARAMS.contains(&name.as_str()))
            .collect();
        if !page_params.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(page_params)
                .finish();
            url = format!("{url}?{query}");
        }
    }
    Target::Render {
        url: repair_slashes(&url),
        path_token,
        mobile,
    }
}

/// A URL sent in a path, decoded once; a `#` that came of it (`%23`) stays part of the path unless
/// it starts a hashbang (`#!`, the AJAX crawling scheme's), as prerender.io treats it.
fn decode_path_url(text: &str) -> String {
    let decoded = decode(text);
    let mut out = String::with_capacity(decoded.len());
    let mut rest = decoded.as_str();
    while let Some(at) = rest.find('#') {
        out.push_str(&rest[..at]);
        out.push_str(if rest[at..].starts_with("#!") {
            "#"
        } else {
            "%23"
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `text` starts like an absolute http(s) URL (a proxy may have merged its `//`).
fn is_absolute_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http:/") || lower.starts_with("https:/")
}

/// `https:/host/…` (a proxy that merges slashes in paths did that) back to `https://host/…`.
fn repair_slashes(url: &str) -> String {
    for scheme in ["http:/", "https:/"] {
        if url.len() > scheme.len()
            && url[..scheme.len()].eq_ignore_ascii_case(scheme)
            && !url[scheme.len()..].starts_with('/')
        {
            return format!("{}/{}", &url[..scheme.len()], &url[scheme.len()..]);
        }
    }
    url.to_owned()
}

/// `path` with a token that Rendertron's form carries in it (`/render/<token>/…`) masked, for
/// logs: tokens are never written anywhere.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path
        .strip_prefix("/render/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((token, _)) if !token.is_empty() && !is_absolute_url(&path["/render/".len()..]) => {
            std::borrow::Cow::Owned(path.replacen(token, "<token>", 1))
        }
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// A page URL the service will render: its domain and its normalised URL.
pub struct Page {
    pub domain: Arc<Domain>,
    pub url: NormalizedUrl,
}

/// Checks `raw` and finds its domain among the token's tenant's: a clear refusal for anything
/// else, before anything is looked up, rendered or stored.
pub fn page(app: &AppState, token: &ServiceToken, raw: &str) -> Result<Page, ServiceError> {
    if raw.len() > MAX_URL_LEN {
        return Err(ServiceError::UrlTooLong);
    }
    // The URL parser would drop tabs and newlines silently, making two names for one page. (A
    // space, which a decoded URL may hold, it escapes.)
    if raw.bytes().any(|b| b.is_ascii_control()) {
        return Err(ServiceError::bad_url(raw, "it has a control character"));
    }
    let mut parsed = url::Url::parse(raw).map_err(|error| ServiceError::bad_url(raw, error))?;
    let hashbang = hashbang(&mut parsed);
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ServiceError::bad_url(
            raw,
            format!(
                "only http and https pages are rendered, not {}:",
                parsed.scheme()
            ),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::bad_url(
            raw,
            "a page URL carries no user name or password",
        ));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(host)) => {
            Hostname::parse(host).map_err(|error| ServiceError::bad_url(raw, error))?
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(ServiceError::bad_url(
                raw,
                "the host is an IP address; pages are rendered for registered domain names",
            ));
        }
        None => return Err(ServiceError::bad_url(raw, "the URL has no host")),
    };
    if app.service_host.as_ref() == Some(&host) {
        return Err(ServiceError::bad_url(
            raw,
            "that is the render service itself",
        ));
    }
    // Another tenant's domain is as unknown as one nobody registered.
    let domain = app
        .directory
        .get(&host)
        .filter(|domain| domain.config.tenant_id == token.tenant_id)
        .ok_or_else(|| ServiceError::UnknownDomain(host.to_string()))?;
    if !domain.config.verified {
        return Err(ServiceError::Unverified(host.to_string()));
    }
    let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    let mut url = NormalizedUrl::from_request(
        parsed.scheme(),
        &host,
        target,
        &domain.config.settings.ignored_query_params,
    )
    .map_err(|error| ServiceError::bad_url(raw, error))?;
    // A site used only through the service is fetched at the very URL it was named by; a domain
    // whose traffic comes through the edge shares the edge's cache entries, which have no port.
    if domain.config.service_only
        && let Some(port) = parsed.port()
    {
        url = url.with_port(port);
    }
    if let Some(route) = hashbang {
        url = url.with_hashbang(&route);
    }
    Ok(Page { domain, url })
}

/// The AJAX crawling scheme's route, if the URL names one: `?_escaped_fragment_=<route>` (taken out
/// of the query, as prerender.io does) or a `#!<route>` fragment. An app that routes by hashbang
/// shows that route's page only when loaded with it, so it is rendered with it, and cached apart.
/// An empty `_escaped_fragment_` (a page that asked for it with `<meta name="fragment">`) names the
/// page itself. Any other fragment is dropped: it never reaches a server.
fn hashbang(parsed: &mut url::Url) -> Option<String> {
    const ESCAPED: &str = "_escaped_fragment_";
    let mut route = parsed
        .fragment()
        .and_then(|fragment| fragment.strip_prefix('!'))
        .map(decode);
    parsed.set_fragment(None);
    if parsed.query_pairs().any(|(name, _)| name == ESCAPED) {
        let mut rest = Vec::new();
        for (name, value) in parsed.query_pairs() {
            if name != ESCAPED {
                rest.push((name.into_owned(), value.into_owned()));
            } else if !value.is_empty() {
                route = Some(value.into_owned());
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
    }
    route.filter(|route| !route.is_empty())
}

/// Answers a request to the service host.
pub async fn handle(app: &AppState, req: Request<Body>, request_id: &str) -> Response {
    match serve(app, req, request_id).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(service.refused = error.code(), "{error}");
            error.into_response()
        }
    }
}

async fn serve(
    app: &AppState,
    req: Request<Body>,
    request_id: &str,
) -> Result<Response, ServiceError> {
    // A request's body is not `Sync`: only its head is kept across the awaits below.
    let (head, body) = req.into_parts();
    let target = Target::read(&head.method, head.uri.path(), head.uri.query())?;
    match target {
        Target::Index => Ok(index()),
        Target::Recache => recache(app, &head.headers, body, request_id).await,
        Target::Render {
            url,
            path_token,
            mobile,
        } => {
            let presented = path_token.or_else(|| header_token(&head.headers));
            let token = authenticate(app, presented.as_deref()).await?;
            let page = page(app, &token, &url)?;
            let head_only = head.method == Method::HEAD;
            render(app, &head.headers, head_only, request_id, page, mobile).await
        }
    }
}

fn header_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The live token `presented` is, within its rate; its use noted (at most once a minute per
/// gateway). Never logs the token.
async fn authenticate(
    app: &AppState,
    presented: Option<&str>,
) -> Result<ServiceToken, ServiceError> {
    let presented = presented.ok_or(ServiceError::NoToken)?;
    // Anything of another shape is refused without a round trip; a real token is ASCII.
    if presented.len() > 200 || !presented.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::BadToken);
    }
    let token = match app.store.service_tokens.get(&token_hash(presented)).await {
        Ok(Some(token)) => token,
        Ok(None) => return Err(ServiceError::BadToken),
        Err(error) => {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "cannot check a service token");
            return Err(ServiceError::TokenCheckFailed);
        }
    };
    crate::log_context::update(|fields| fields.service_token = Some(token.id.clone()));
    app.token_limits
        .check(&token)
        .map_err(ServiceError::RateLimited)?;
    if app.token_uses.get(&token.id).is_none() {
        app.token_uses.insert(token.id.clone(), ());
        let tokens = app.store.service_tokens.clone();
        let id = token.id.clone();
        tokio::spawn(async move {
            if let Err(error) = tokens.record_use(&id, kiln_core::unix_millis_now()).await {
                tracing::debug!(error = %kiln_runtime::error_chain(&error), "could not record a service token's use");
            }
        });
    }
    Ok(token)
}

/// Serves `page` as the edge serves a bot's page, or the site's own page when no render can be had.
async fn render(
    app: &AppState,
    headers: &HeaderMap,
    head_only: bool,
    request_id: &str,
    page: Page,
    mobile: bool,
) -> Result<Response, ServiceError> {
    let config = &page.domain.config;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let device = if mobile {
        DeviceClass::Mobile
    } else {
        DeviceClass::from_user_agent(user_agent)
    };
    let negotiation = Negotiation::of(headers, head_only);
    crate::log_context::update(|fields| {
        fields.client_kind = Some("service");
        fields.host = Some(config.host.clone());
    });
    let path = page.url.path_and_query();
    let path = path.split('?').next().unwrap_or(path);
    if !page.domain.paths.renders(path) {
        app.usage.record(&config.id, UsageKind::Passthrough);
        return Ok(site_page(app, &page, device, headers).await);
    }
    if kiln_core::is_asset_path(path) {
        tracing::debug!("an asset, not a page: serving the site's own");
        return Ok(site_page(app, &page, device, headers).await);
    }
    let wanted = Wanted::new(
        config,
        page.url.clone(),
        device,
        user_agent,
        negotiation,
        request_id,
        Renders::Allowed,
        RenderVia::Service,
    );
    match bot::cached_or_rendered(app, config, &wanted).await {
        Some(response) => Ok(response),
        None => {
            bot::count(app, config, UsageKind::Bypass);
            Ok(site_page(app, &page, wanted.device(), headers).await)
        }
    }
}

/// The site's own page at `page`, fetched as a person's browser would (`X-Prerender: 1`, Kiln's
/// render User-Agent, the client's `Accept-Encoding`), marked `BYPASS`. A site that cannot be
/// reached is the gateway's usual error page.
async fn site_page(
    app: &AppState,
    page: &Page,
    device: DeviceClass,
    asked: &HeaderMap,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(device.render_user_agent()),
    );
    headers.insert("x-prerender", HeaderValue::from_static("1"));
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
    );
    if let Some(encoding) = asked.get(header::ACCEPT_ENCODING) {
        headers.insert(header::ACCEPT_ENCODING, encoding.clone());
    }
    let url = page.domain.config.origin_url_for(&page.url);
    // A hashbang route is the browser's: a server is never sent a fragment.
    let url = url.split('#').next().unwrap_or(&url);
    match app.origin.fetch(&page.domain.config, url, headers).await {
        Ok(mut response) => {
            response
                .headers_mut()
                .insert(CACHE_HEADER, HeaderValue::from_static("BYPASS"));
            response
        }
        Err(error) => {
            tracing::warn!(%error, "the site's own page could not be fetched");
            error.into_response()
        }
    }
}

/// `POST /recache`'s body, as prerender.io's API takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Recache {
    prerender_token: Option<String>,
    url: Option<String>,
    urls: Option<Vec<String>>,
    adaptive_type: Option<String>,
}

/// Queues a fresh render of each page named, on the background queue (behind every bot's render).
/// Every URL is checked first: one that may not be rendered refuses the whole request, and nothing
/// is queued.
async fn recache(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
) -> Result<Response, ServiceError> {
    let header_token = header_token(headers);
    let body = http_body_util::Limited::new(body, MAX_RECACHE_BODY)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                ServiceError::RecacheTooLarge
            } else {
                ServiceError::BadRecache("the body could not be read".into())
            }
        })?
        .to_bytes();
    let asked: Recache = serde_json::from_slice(&body)
        .map_err(|error| ServiceError::BadRecache(format!("not the JSON expected: {error}")))?;
    let token = authenticate(
        app,
        asked.prerender_token.as_deref().or(header_token.as_deref()),
    )
    .await?;
    let device = match asked.adaptive_type.as_deref() {
        None | Some("desktop") => DeviceClass::Desktop,
        Some("mobile") => DeviceClass::Mobile,
        Some(other) => {
            return Err(ServiceError::BadRecache(format!(
                "adaptiveType is `mobile` or `desktop`, not `{other}`"
            )));
        }
    };
    let urls: Vec<String> = asked
        .url
        .into_iter()
        .chain(asked.urls.unwrap_or_default())
        .collect();
    if urls.is_empty() {
        return Err(ServiceError::BadRecache(
            "name a page in `url` or `urls`".into(),
        ));
    }
    if urls.len() > MAX_RECACHE_URLS {
        return Err(ServiceError::BadRecache(format!(
            "at most {MAX_RECACHE_URLS} pages a request, not {}",
            urls.len()
        )));
    }
    let pages = urls
        .iter()
        .map(|url| page(app, &token, url))
        .collect::<Result<Vec<_>, _>>()?;
    let job_id = format!("recache-{}", uuid::Uuid::new_v4().simple());
    for page in &pages {
        let wanted = Wanted::new(
            &page.domain.config,
            page.url.clone(),
            device,
            "",
            Negotiation::default(),
            request_id,
            Renders::Allowed,
            RenderVia::Service,
        );
        let mut job = wanted.render_job(&page.domain.config);
        job.purpose = RenderPurpose::Warm {
            job_id: job_id.clone(),
        };
        if let Err(error) = app.queue.push_to(QueueKind::Warm, job).await {
            tracing::warn!(%error, "could not queue a recache");
            return Err(ServiceError::QueueFailed);
        }
    }
    tracing::info!(recache.job_id = %job_id, recache.pages = pages.len(), "recache queued");
    let urls: Vec<&str> = pages.iter().map(|page| page.url.as_str()).collect();
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "queued": urls.len(), "job_id": job_id, "urls": urls })),
    )
        .into_response())
}

/// `GET /`: what this host is, for whoever opens it in a browser.
fn index() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "Kiln's render service: rendered pages for prerender.io's and Rendertron's middlewares.\n\
         GET /<absolute URL> or GET /render?url=<encoded URL> with the X-Prerender-Token header;\n\
         GET /render/<token>/<URL> (rendertron-middleware: proxyUrl https://<this host>/render/<token>/);\n\
         POST /recache {\"prerenderToken\": ..., \"url\" or \"urls\": ..., \"adaptiveType\": \"mobile\"|\"desktop\"}.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(method: Method, target: &str) -> Result<Target, ServiceError> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Target::read(&method, path, query)
    }

    fn page(url: &str, token: Option<&str>, mobile: bool) -> Target {
        Target::Render {
            url: url.into(),
            path_token: token.map(str::to_owned),
            mobile,
        }
    }

    #[test]
    fn prerender_io_forms() {
        let cases = [
            (
                "/https://shop.example/products/3?x=1&y=2",
                "https://shop.example/products/3?x=1&y=2",
            ),
            ("/http://shop.example", "http://shop.example"),
            // A proxy that merges slashes.
            ("/https:/shop.example/a", "https://shop.example/a"),
            ("/HTTPS://shop.example/a", "HTTPS://shop.example/a"),
            (
                "/render?url=https%3A%2F%2Fshop.example%2Fp%3Fq%3D1",
                "https://shop.example/p?q=1",
            ),
        ];
        for (target, url) in cases {
            assert_eq!(
                read(Method::GET, target).unwrap(),
                page(url, None, false),
                "{target}"
            );
        }
        assert_eq!(
            read(Method::HEAD, "/https://shop.example/").unwrap(),
            page("https://shop.example/", None, false)
        );
    }

    #[test]
    fn the_prerender_io_form_is_decoded_once_as_the_nginx_recipe_escapes_it() {
        let cases = [
            // The nginx recipe: `rewrite .* /$scheme://$host$request_uri? break;`.
            (
                "/http://shop.example/products/2%3Fref=newsletter",
                "http://shop.example/products/2?ref=newsletter",
            ),
            (
                "/http://shop.example/caf%25C3%25A9%3Fq=a%2526b",
                "http://shop.example/caf%C3%A9?q=a%26b",
            ),
            // prerender-node: the page's path as it came, and its query as the request's.
            (
                "/http://shop.example/caf%C3%A9?q=a%26b",
                "http://shop.example/café?q=a%26b",
            ),
            ("/http://shop.example/a%23b", "http://shop.example/a%23b"),
            (
                "/http://shop.example/%23!/about",
                "http://shop.example/#!/about",
            ),
        ];
        for (target, url) in cases {
            assert_eq!(
                read(Method::GET, target).unwrap(),
                page(url, None, false),
                "{target}"
            );
        }
    }

    #[test]
    fn hashbang_routes_are_kept_and_escaped_fragments_become_them() {
        let cases = [
            (
                "http://shop.example/?_escaped_fragment_=/about",
                "http://shop.example/",
                Some("/about"),
            ),
            (
                "http://shop.example/p?a=1&_escaped_fragment_=",
                "http://shop.example/p?a=1",
                None,
            ),
            (
                "http://shop.example/#!/about",
                "http://shop.example/",
                Some("/about"),
            ),
            ("http://shop.example/#top", "http://shop.example/", None),
            (
                "http://shop.example/p?a=1",
                "http://shop.example/p?a=1",
                None,
            ),
        ];
        for (raw, left, route) in cases {
            let mut parsed = url::Url::parse(raw).unwrap();
            assert_eq!(hashbang(&mut parsed).as_deref(), route, "{raw}");
            assert_eq!(parsed.as_str(), left, "{raw}");
        }
    }

    #[test]
    fn rendertron_forms_with_and_without_a_token() {
        let cases = [
            (
                "/render/https%3A%2F%2Fshop.example%2Fp%3Fq%3D1",
                page("https://shop.example/p?q=1", None, false),
            ),
            (
                "/render/kiln_svc_abc/https%3A%2F%2Fshop.example%2Fp",
                page("https://shop.example/p", Some("kiln_svc_abc"), false),
            ),
            (
                "/render/kiln_svc_abc/https://shop.example/p?q=1&mobile",
                page("https://shop.example/p?q=1", Some("kiln_svc_abc"), true),
            ),
            (
                "/render/https://shop.example/p?mobile=true",
                page("https://shop.example/p", None, true),
            ),
            (
                "/render/kiln_svc_abc/https%3A%2F%2Fshop.example%2F?wc-inject-shadydom=true",
                page("https://shop.example/", Some("kiln_svc_abc"), false),
            ),
        ];
        for (target, expected) in cases {
            assert_eq!(read(Method::GET, target).unwrap(), expected, "{target}");
        }
    }

    #[test]
    fn a_token_in_the_path_is_never_logged() {
        assert_eq!(
            loggable_path("/render/kiln_svc_secret/https%3A%2F%2Fshop.example%2F"),
            "/render/<token>/https%3A%2F%2Fshop.example%2F"
        );
        for path in [
            "/render/https://shop.example/p",
            "/https://shop.example/p",
            "/",
        ] {
            assert_eq!(loggable_path(path), path);
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_the_service_takes() {
        assert!(matches!(read(Method::GET, "/").unwrap(), Target::Index));
        assert!(matches!(
            read(Method::POST, "/recache").unwrap(),
            Target::Recache
        ));
        for target in ["/favicon.ico", "/render", "/ftp://x/y", "/shop.example/p"] {
            assert!(
                matches!(read(Method::GET, target), Err(ServiceError::NotFound)),
                "{target}"
            );
        }
        assert!(matches!(
            read(Method::GET, "/recache"),
            Err(ServiceError::MethodNotAllowed)
        ));
        assert!(matches!(
            read(Method::DELETE, "/https://shop.example/"),
            Err(ServiceError::MethodNotAllowed)
        ));
    }
}
