//! A domain's cache: the list of cached pages, purging, warming with its progress, and "view as
//! bot".

use super::domains::{own_domain, page_count};
use super::format;
use super::{
    Chrome, FieldErrors, Nav, PageResult, WebForm, WebUser, fail, lines, redirect_with, render,
};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_control::cache::WarmProgress;
use kiln_control::cache::{self, CacheError, Purge};
use kiln_control::db::DomainRecord;
use kiln_core::DeviceClass;
use kiln_frontdoor::Ctx;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Cached pages per page of the list.
const PAGE_SIZE: usize = 50;

pub struct PageRow {
    pub url: String,
    pub device: &'static str,
    pub status: u16,
    pub size: String,
    pub age: String,
    pub rendered_at: String,
    /// `fresh for 40 min`, or `stale` (served while a new render replaces it).
    pub freshness: String,
    pub expires: String,
}

/// A recent warm job, as the cache page lists it.
pub struct WarmRow {
    pub id: Uuid,
    pub started: String,
    pub source: String,
    pub state: String,
    pub progress: String,
}

/// The domain's last few warm jobs with their progress (a job whose progress Redis cannot tell is
/// shown without it).
async fn recent_warms(ctx: &Ctx, user: &WebUser, domain: &DomainRecord) -> Vec<WarmRow> {
    let now = OffsetDateTime::now_utc();
    let warms = match cache::recent_warms(&ctx.app, user.tenant_id, domain.id, 5).await {
        Ok(warms) => warms,
        Err(error) => {
            tracing::warn!(error = %kiln_control::error_chain(&error), "cannot list warm jobs");
            return Vec::new();
        }
    };
    let mut rows = Vec::with_capacity(warms.len());
    for view in warms {
        let source = match &view.sitemap_url {
            Some(sitemap) => sitemap.clone(),
            None => format!("{} URLs", view.total),
        };
        rows.push(WarmRow {
            id: view.id,
            started: format::relative(view.created_at, now),
            source,
            progress: format!(
                "{} of {} rendered, {} failed",
                view.done, view.total, view.failed
            ),
            state: view.state,
        });
    }
    rows
}

#[derive(Template)]
#[template(path = "cache.html")]
struct CachePage {
    warms: Vec<WarmRow>,
    chrome: Chrome,
    domain: DomainRecord,
    total: Option<u64>,
    search: String,
    rows: Vec<PageRow>,
    next: Option<String>,
    paged: bool,
    listing_error: Option<String>,
    warm: WarmForm,
    prefix: String,
    errors: FieldErrors,
}

#[derive(Deserialize, Default)]
pub struct CacheQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct WarmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub urls: String,
    #[serde(default)]
    pub sitemap_url: String,
}

#[derive(Deserialize)]
pub struct PurgeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    confirm: String,
}

/// The path prefix a search means: a path as typed, or the path of a full URL on the domain.
fn search_prefix(domain: &DomainRecord, search: &str) -> String {
    let search = search.trim();
    if search.is_empty() {
        return String::new();
    }
    if let Ok(url) = url::Url::parse(search)
        && url
            .host_str()
            .is_some_and(|host| host.eq_ignore_ascii_case(domain.host.as_str()))
    {
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        return path;
    }
    if search.starts_with('/') {
        search.to_owned()
    } else {
        format!("/{search}")
    }
}

struct Extra {
    warm: WarmForm,
    prefix: String,
    errors: FieldErrors,
    status: StatusCode,
}

async fn cache_page(
    ctx: &Ctx,
    user: &WebUser,
    domain: DomainRecord,
    query: CacheQuery,
    extra: Extra,
) -> Response {
    let prefix = search_prefix(&domain, &query.q);
    let now = OffsetDateTime::now_utc();
    let listing = cache::pages(
        &ctx.app,
        &domain,
        &prefix,
        query.cursor.as_deref(),
        PAGE_SIZE,
    )
    .await;
    let (rows, next, listing_error) = match listing {
        Ok(listing) => {
            let rows = listing
                .pages
                .into_iter()
                .map(|page| {
                    let rendered = kiln_control::from_millis(page.rendered_at);
                    let fresh_until = kiln_control::from_millis(page.fresh_until);
                    let freshness = if fresh_until > now {
                        let left = (fresh_until - now).whole_seconds().max(0) as u64;
                        format!("fresh for {}", format::span(left))
                    } else {
                        "stale".to_owned()
                    };
                    PageRow {
                        url: page.url,
                        device: page.device.as_str(),
                        status: page.status,
                        size: format::bytes(page.bytes),
                        age: format::relative(rendered, now),
                        rendered_at: format::when(rendered),
                        freshness,
                        expires: format::relative(kiln_control::from_millis(page.expires_at), now),
                    }
                })
                .collect();
            (rows, listing.next_cursor, None)
        }
        Err(CacheError::InvalidCursor) => (
            Vec::new(),
            None,
            Some("That page of the list no longer exists; start again from the first page.".into()),
        ),
        Err(error) => {
            tracing::warn!(error = %kiln_control::error_chain(&error), "cannot list cached pages");
            (
                Vec::new(),
                None,
                Some("The cache (Redis) is not answering, so cached pages cannot be listed right now.".into()),
            )
        }
    };
    let total = page_count(ctx, domain.id).await;
    let warms = recent_warms(ctx, user, &domain).await;
    render(
        extra.status,
        &CachePage {
            chrome: user.chrome(Nav::Domains),
            warms,
            domain,
            total,
            search: query.q,
            rows,
            next,
            paged: query.cursor.is_some(),
            listing_error,
            warm: extra.warm,
            prefix: extra.prefix,
            errors: extra.errors,
        },
    )
}

pub async fn list(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    Query(query): Query<CacheQuery>,
) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let extra = Extra {
        warm: WarmForm::default(),
        prefix: String::new(),
        errors: FieldErrors::default(),
        status: StatusCode::OK,
    };
    Ok(cache_page(&ctx, &user, domain, query, extra).await)
}

pub async fn purge(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<PurgeForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    let mut errors = FieldErrors::default();
    let purge = match form.scope.as_str() {
        "url" => Some(Purge::Urls(vec![form.url.clone()])),
        "prefix" => {
            let prefix = search_prefix(&domain, &form.prefix);
            if prefix.is_empty() {
                errors.add("prefix", "give the path prefix to purge, e.g. /blog/");
                None
            } else if prefix.chars().any(char::is_control) {
                errors.add("prefix", "must not contain control characters");
                None
            } else {
                Some(Purge::Prefix {
                    domain_id: id,
                    prefix,
                })
            }
        }
        "all" => {
            if form
                .confirm
                .trim()
                .eq_ignore_ascii_case(domain.host.as_str())
            {
                Some(Purge::All { domain_id: id })
            } else {
                errors.add(
                    "confirm",
                    format!("type {} to confirm purging every page", domain.host),
                );
                None
            }
        }
        _ => return Err(fail(CacheError::Invalid("unknown purge scope".into()))),
    };
    if let Some(purge) = purge {
        let what = match &purge {
            Purge::Urls(urls) => urls.first().cloned().unwrap_or_default(),
            Purge::Prefix { prefix, .. } => format!("pages under {prefix}"),
            Purge::All { .. } => format!("every page of {}", domain.host),
        };
        match cache::purge(&ctx.app, user.tenant_id, purge, &user.actor).await {
            Ok(purged) => {
                let count = purged.entries;
                let entries = if count == 1 { "entry" } else { "entries" };
                let mut message = format!("Purged {what}: {count} cache {entries} removed.");
                if purged.unconfirmed_gateways > 0 {
                    message.push_str(&format!(
                        " {} gateway(s) did not confirm in time and may serve the old page \
                         for up to 30 seconds.",
                        purged.unconfirmed_gateways
                    ));
                }
                return Ok(redirect_with(&format!("/domains/{id}/cache"), &message));
            }
            Err(error @ CacheError::InvalidUrls(_)) => errors.add("url", error.to_string()),
            Err(error) => return Err(fail(error)),
        }
    }
    let extra = Extra {
        warm: WarmForm::default(),
        prefix: form.prefix,
        errors,
        status: StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(cache_page(&ctx, &user, domain, CacheQuery::default(), extra).await)
}

pub async fn warm(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<WarmForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    let urls = lines(&form.urls);
    let sitemap = form.sitemap_url.trim();
    let mut errors = FieldErrors::default();
    let started = match (urls.is_empty(), sitemap.is_empty()) {
        (false, true) => {
            Some(cache::warm_urls(&ctx.app, &ctx.queue, user.tenant_id, &urls, &user.actor).await)
        }
        (true, false) => Some(
            cache::warm_sitemap(
                &ctx.app,
                &ctx.queue,
                &ctx.sitemaps,
                user.tenant_id,
                id,
                sitemap,
                &user.actor,
            )
            .await,
        ),
        (true, true) => {
            errors.add("urls", "paste URLs to warm, or give a sitemap URL below");
            None
        }
        (false, false) => {
            errors.add(
                "urls",
                "warm either from the URL list or from a sitemap, not both",
            );
            None
        }
    };
    match started {
        Some(Ok(job)) => {
            return Ok(redirect_with(
                &format!("/domains/{id}/warm/{}", job.id),
                "Warming started.",
            ));
        }
        Some(Err(error @ (CacheError::InvalidUrls(_) | CacheError::Invalid(_)))) => {
            let field = if urls.is_empty() {
                "sitemap_url"
            } else {
                "urls"
            };
            errors.add(field, error.to_string());
        }
        Some(Err(error @ CacheError::NotVerified(_))) => errors.add("urls", error.to_string()),
        Some(Err(error)) => return Err(fail(error)),
        None => {}
    }
    let extra = Extra {
        warm: form,
        prefix: String::new(),
        errors,
        status: StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(cache_page(&ctx, &user, domain, CacheQuery::default(), extra).await)
}

#[derive(Template)]
#[template(path = "warm.html")]
struct WarmPage {
    chrome: Chrome,
    domain: DomainRecord,
    job: WarmProgress,
    started: String,
    percent: u64,
    finished: bool,
    skipped: Vec<(String, String)>,
}

pub async fn warm_progress(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path((id, job_id)): Path<(Uuid, Uuid)>,
) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let status = cache::warm_status(&ctx.app, user.tenant_id, job_id)
        .await
        .map_err(fail)?;
    if status.job.domain_id.is_some_and(|d| d != id) {
        return Err(fail(CacheError::WarmNotFound));
    }
    let job = WarmProgress::from(&status);
    let percent = (job.done + job.failed)
        .saturating_mul(100)
        .checked_div(job.total)
        .unwrap_or(if job.state == "done" { 100 } else { 0 });
    let skipped = job
        .skipped
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let field = |name: &str| {
                        entry
                            .get(name)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (field("url"), field("reason"))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(render(
        StatusCode::OK,
        &WarmPage {
            chrome: user.chrome(Nav::Domains),
            domain,
            started: format::when(job.created_at),
            finished: matches!(job.state.as_str(), "done" | "failed"),
            percent,
            job,
            skipped,
        },
    ))
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage {
    chrome: Chrome,
    domain: DomainRecord,
    url: String,
    mobile: bool,
    result: Option<PreviewView>,
    errors: FieldErrors,
}

pub struct PreviewView {
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub size: String,
    pub render_time: String,
    pub error: Option<String>,
}

/// `?url=` of a page that names one page of the domain (View as bot, Compare with people).
#[derive(Deserialize)]
pub struct PageQuery {
    url: Option<String>,
}

impl PageQuery {
    /// The URL asked for, or the domain's home page.
    pub fn url_or_home(self, domain: &DomainRecord) -> String {
        self.url
            .unwrap_or_else(|| format!("https://{}/", domain.host))
    }
}

pub async fn preview_page(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let url = query.url_or_home(&domain);
    Ok(render(
        StatusCode::OK,
        &PreviewPage {
            chrome: user.chrome(Nav::Domains),
            domain,
            url,
            mobile: false,
            result: None,
            errors: FieldErrors::default(),
        },
    ))
}

/// A form naming one page of the domain and a device: the preview's, and the parity check's.
#[derive(Deserialize)]
pub struct PageForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub device: String,
}

impl PageForm {
    /// Whether the form asks for a phone.
    pub fn mobile(&self) -> bool {
        self.device == "mobile"
    }

    pub fn device_class(&self) -> DeviceClass {
        if self.mobile() {
            DeviceClass::Mobile
        } else {
            DeviceClass::Desktop
        }
    }

    /// The URL, trimmed, when it is an absolute URL on `domain`; otherwise the URL field's error is
    /// added to `errors`. (A URL of another of the account's domains belongs on that domain's page.)
    pub fn url_on(&self, domain: &DomainRecord, errors: &mut FieldErrors) -> Option<&str> {
        let url = self.url.trim();
        let on_domain = url::Url::parse(url).ok().is_some_and(|u| {
            u.host_str()
                .is_some_and(|host| host.eq_ignore_ascii_case(domain.host.as_str()))
        });
        if !on_domain {
            errors.add(
                "url",
                format!(
                    "give an absolute URL on {}, e.g. https://{}/",
                    domain.host, domain.host
                ),
            );
            return None;
        }
        Some(url)
    }
}

/// Renders the URL now, as a bot would get it; nothing is cached. A POST with a CSRF token, since
/// each one costs a render.
pub async fn preview(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<PageForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    let mut errors = FieldErrors::default();
    let mut result = None;
    if let Some(url) = form.url_on(&domain, &mut errors) {
        let device = form.device_class();
        match cache::preview(&ctx.app, &ctx.queue, user.tenant_id, url, device).await {
            Ok((normalised, render)) => {
                result = Some(PreviewView {
                    url: normalised.to_string(),
                    status: render.status,
                    headers: render.headers,
                    size: format::bytes(render.html.len() as u64),
                    body: render.html,
                    render_time: format::millis(render.render_ms),
                    error: render.error,
                });
            }
            Err(
                error @ (CacheError::InvalidUrls(_)
                | CacheError::Invalid(_)
                | CacheError::NotVerified(_)
                | CacheError::PreviewTimeout(_)),
            ) => errors.add("url", error.to_string()),
            Err(error) => return Err(fail(error)),
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        status,
        &PreviewPage {
            chrome: user.chrome(Nav::Domains),
            domain,
            mobile: form.mobile(),
            url: form.url,
            result,
            errors,
        },
    ))
}
