//! A tenant's cache: purging, warming, listing and preview renders.
//!
//! Every URL a tenant sends is mapped onto one of its own domains before anything happens: a URL on
//! another host is refused by name, whoever owns that host. Renders go through the render queue to
//! the workers (warms on their own low-priority queue, so a big sitemap never delays a bot's render).

use crate::App;
use crate::db::{DbError, DomainRecord, WarmJobRecord};
use crate::sitemaps::SitemapFetcher;
use kiln_core::job::RenderPurpose;
use kiln_core::{CacheKey, DeviceClass, Hostname, NormalizedUrl, RenderJob};
use kiln_queue::{QueueError, RenderQueue};
use kiln_sitemap::SitemapError;
use kiln_store::{PreviewResult, StoreError};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The most URLs one purge or warm request may name.
pub const MAX_URLS: usize = 1000;
/// How many problems an error message lists before it says "and N more".
const MAX_PROBLEMS_LISTED: usize = 10;
/// How long reading a sitemap (all its children included) may take.
const SITEMAP_DEADLINE: Duration = Duration::from_secs(120);
/// A warm job still reading its sitemap after this long was abandoned by a stopped dashboard.
pub const ABANDONED_WARM_SECS: i64 = 2 * SITEMAP_DEADLINE.as_secs() as i64;
/// How long a preview may wait in the queue on top of its own render budget.
const PREVIEW_QUEUE_MARGIN: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// URLs of the request that are not pages of the tenant's, every one with why.
    #[error(transparent)]
    InvalidUrls(UrlProblems),
    /// What is wrong with the request, in words written for its sender (no other error's text).
    #[error("{0}")]
    Invalid(String),
    #[error("no such domain")]
    DomainNotFound,
    #[error("no such warm job")]
    WarmNotFound,
    #[error("the cursor is not one a listing returned")]
    InvalidCursor,
    #[error(
        "{0} is not verified yet; verify it (POST /api/v1/domains/{{id}}/verify) before rendering its pages"
    )]
    NotVerified(Hostname),
    #[error("the render did not finish within {0} s; the workers may be busy or stopped")]
    PreviewTimeout(u64),
    /// The root of a sitemap warm could not be read (only a warm's background task meets it).
    #[error(transparent)]
    Sitemap(Box<SitemapError>),
    #[error("reading the sitemap took longer than {0} s")]
    SitemapTimeout(u64),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the cache is unavailable")]
    Store(#[from] StoreError),
    #[error("the render queue is unavailable")]
    Queue(#[from] QueueError),
}

/// Why a URL a tenant sent is not a page of theirs that Kiln renders.
#[derive(Debug, thiserror::Error)]
pub enum UrlRefused {
    #[error("not an absolute URL")]
    NotAbsolute(#[source] url::ParseError),
    #[error("the scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("the URL has no valid hostname")]
    NoHostname,
    #[error("{0} is not one of this account's domains")]
    NotOurs(Hostname),
    #[error(transparent)]
    Unnormalisable(#[from] kiln_core::UrlError),
    /// The domain's path rules leave the page out, so there is nothing to do with it (`so` says
    /// what is not there: "there is no render to preview").
    #[error("{EXCLUDED}, so {so}")]
    Excluded { so: &'static str },
}

/// One URL of a request that is not a page of the tenant's.
#[derive(Debug)]
pub struct UrlProblem {
    /// Where the request had it: `url`, `urls[3]`.
    pub field: String,
    /// The URL as sent, shortened to 120 characters.
    pub url: String,
    pub reason: UrlRefused,
}

impl UrlProblem {
    pub(crate) fn new(field: impl Into<String>, url: &str, reason: UrlRefused) -> Self {
        UrlProblem {
            field: field.into(),
            url: shorten(url),
            reason,
        }
    }
}

/// The URLs of a request that are not pages of the tenant's, as one message for the person who
/// sent them (``urls[1] `x`: not an absolute URL: relative URL without a base; …``), the first
/// ten listed and the rest counted.
#[derive(Debug)]
pub struct UrlProblems(pub Vec<UrlProblem>);

impl UrlProblems {
    pub(crate) fn one(problem: UrlProblem) -> Self {
        UrlProblems(vec![problem])
    }
}

impl std::fmt::Display for UrlProblems {
    // A list of several problems has no one source to expose, so each reason is written out
    // with its own sources here, where the list is reported.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, problem) in self.0.iter().take(MAX_PROBLEMS_LISTED).enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            let reason = crate::error_chain(&problem.reason);
            write!(f, "{} `{}`: {reason}", problem.field, problem.url)?;
        }
        if self.0.len() > MAX_PROBLEMS_LISTED {
            write!(f, "; and {} more", self.0.len() - MAX_PROBLEMS_LISTED)?;
        }
        Ok(())
    }
}

impl std::error::Error for UrlProblems {}

/// A URL mapped onto the tenant's domain that serves it.
pub(crate) struct PageRef<'a> {
    pub(crate) domain: &'a DomainRecord,
    pub(crate) url: NormalizedUrl,
}

/// `domains` keyed by hostname, for [`resolve_url`].
pub(crate) fn by_host(domains: &[DomainRecord]) -> HashMap<&Hostname, &DomainRecord> {
    domains.iter().map(|d| (&d.host, d)).collect()
}

/// Maps every URL onto one of `domains`, normalised the way the gateway normalises a bot's
/// request; all problems are reported together.
fn resolve_urls<'a>(
    domains: &'a [DomainRecord],
    urls: &[String],
) -> Result<Vec<PageRef<'a>>, CacheError> {
    if urls.is_empty() {
        return Err(CacheError::Invalid("`urls` is empty".to_owned()));
    }
    if urls.len() > MAX_URLS {
        return Err(CacheError::Invalid(format!(
            "`urls` has {} entries; send at most {MAX_URLS} per request",
            urls.len()
        )));
    }
    let by_host = by_host(domains);
    let mut pages = Vec::with_capacity(urls.len());
    let mut problems = Vec::new();
    for (index, raw) in urls.iter().enumerate() {
        match resolve_url(&by_host, raw) {
            Ok(page) => pages.push(page),
            Err(reason) => problems.push(UrlProblem::new(format!("urls[{index}]"), raw, reason)),
        }
    }
    if problems.is_empty() {
        Ok(pages)
    } else {
        Err(CacheError::InvalidUrls(UrlProblems(problems)))
    }
}

pub(crate) fn resolve_url<'a>(
    by_host: &HashMap<&Hostname, &'a DomainRecord>,
    raw: &str,
) -> Result<PageRef<'a>, UrlRefused> {
    let parsed = url::Url::parse(raw.trim()).map_err(UrlRefused::NotAbsolute)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme(parsed.scheme().to_owned()));
    }
    let host = parsed
        .host_str()
        .and_then(|h| Hostname::parse(h).ok())
        .ok_or(UrlRefused::NoHostname)?;
    let domain = by_host
        .get(&host)
        .ok_or_else(|| UrlRefused::NotOurs(host.clone()))?;
    let mut target = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        target.push('?');
        target.push_str(query);
    }
    let url = NormalizedUrl::from_request(
        parsed.scheme(),
        &domain.host,
        &target,
        &domain.settings.ignored_query_params,
    )?;
    Ok(PageRef { domain, url })
}

pub(crate) fn shorten(text: &str) -> String {
    shorten_to(text, 120)
}

/// `text` cut to its first `max` characters, with `…` when anything was cut.
pub fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// How many of the entries a warm leaves out its record lists (with their reasons); the rest are
/// only counted, so a sitemap of 60,000 excluded URLs does not make a job record of megabytes.
pub const MAX_SKIPPED_LISTED: usize = 100;
/// How much of a left-out entry's URL (or reason) its record keeps: a `<loc>` is customer input of
/// any length.
const MAX_SKIPPED_CHARS: usize = 1000;

/// The entries a warm leaves out: every one counted, the first [`MAX_SKIPPED_LISTED`] kept as
/// `{"url", "reason"}` for the job's record.
#[derive(Default)]
struct LeftOut {
    listed: Vec<serde_json::Value>,
    total: usize,
}

impl LeftOut {
    fn add(&mut self, url: &str, reason: impl std::fmt::Display) {
        self.total += 1;
        if self.listed.len() < MAX_SKIPPED_LISTED {
            self.listed.push(serde_json::json!({
                "url": shorten_to(url, MAX_SKIPPED_CHARS),
                "reason": shorten_to(&reason.to_string(), MAX_SKIPPED_CHARS),
            }));
        }
    }

    /// Entries someone else (the sitemap reader) left out and only counted.
    fn add_uncounted(&mut self, count: usize) {
        self.total += count;
    }

    /// The listed entries, as the job's record stores them, and the count of all.
    fn into_record(self) -> (serde_json::Value, i32) {
        let total = i32::try_from(self.total).unwrap_or(i32::MAX);
        (serde_json::Value::Array(self.listed), total)
    }
}

/// Why a warm leaves out a page the domain's path rules exclude.
pub(crate) const EXCLUDED: &str =
    "the domain's include_paths/exclude_paths leave it out: bots are proxied to the origin for it";

/// The path of a normalised URL, without its query: what path rules match.
pub(crate) fn path_of(url: &NormalizedUrl) -> &str {
    let path = url.path_and_query();
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// The device classes a domain keeps renders for.
fn devices(domain: &DomainRecord) -> &'static [DeviceClass] {
    if domain.settings.device_variants {
        &[DeviceClass::Desktop, DeviceClass::Mobile]
    } else {
        &[DeviceClass::Desktop]
    }
}

/// Every cache entry that can hold `url`: each device, and both schemes (a bot may have asked over
/// http or https; a purge means the page, not one spelling of it).
fn entry_keys(page: &PageRef<'_>) -> Vec<CacheKey> {
    let path = page.url.path_and_query();
    let id = page.domain.id.to_string();
    let mut keys = Vec::with_capacity(4);
    for scheme in ["https", "http"] {
        let url = NormalizedUrl::from_stored(format!("{scheme}://{}{path}", page.domain.host));
        for device in [DeviceClass::Desktop, DeviceClass::Mobile] {
            keys.push(CacheKey::new(&id, device, &url));
        }
    }
    keys
}

/// What a purge removes.
pub enum Purge {
    Urls(Vec<String>),
    Prefix { domain_id: Uuid, prefix: String },
    All { domain_id: Uuid },
}

/// What a purge did.
#[derive(Clone, Copy, Debug)]
pub struct Purged {
    /// How many cache entries existed and are gone.
    pub entries: u64,
    /// Gateways that did not confirm within [`kiln_store::CONFIRM_WAIT`] that they dropped their
    /// in-memory copies (0: the next bot on every gateway gets a fresh render). Each may serve
    /// a purged page from memory for at most 30 s more.
    pub unconfirmed_gateways: u32,
}

/// Removes cached pages, from Redis and from every gateway's memory: returns once the gateways
/// confirmed it (or the wait for them ran out, which the result says).
pub async fn purge(
    app: &App,
    tenant_id: Uuid,
    purge: Purge,
    actor: &str,
) -> Result<Purged, CacheError> {
    let (purged, target, details) = match purge {
        Purge::Urls(urls) => {
            let domains = app.db.domains_of(tenant_id).await?;
            let pages = resolve_urls(&domains, &urls)?;
            let keys: Vec<CacheKey> = pages.iter().flat_map(entry_keys).collect();
            let purged = app.store.pages().purge(&keys).await?;
            let details = serde_json::json!({ "urls": urls.len(), "purged": purged });
            (purged, "urls".to_owned(), details)
        }
        Purge::Prefix { domain_id, prefix } => {
            if !prefix.starts_with('/') {
                return Err(CacheError::Invalid(format!(
                    "`prefix` must start with `/`, e.g. /blog/ (got `{}`)",
                    shorten(&prefix)
                )));
            }
            let domain = own_domain(app, tenant_id, domain_id).await?;
            let purged = app
                .store
                .pages()
                .purge_prefix(&domain.id.to_string(), &prefix)
                .await?;
            let details = serde_json::json!({ "prefix": prefix, "purged": purged });
            (purged, domain.host.to_string(), details)
        }
        Purge::All { domain_id } => {
            let domain = own_domain(app, tenant_id, domain_id).await?;
            let purged = app
                .store
                .pages()
                .purge_domain(&domain.id.to_string())
                .await?;
            let details = serde_json::json!({ "all": true, "purged": purged });
            (purged, domain.host.to_string(), details)
        }
    };
    app.db
        .audit(
            tenant_id,
            actor,
            crate::db::action::CACHE_PURGE,
            &target,
            details,
        )
        .await?;
    let confirmation = app.store.events().confirm(kiln_store::CONFIRM_WAIT).await?;
    if confirmation.unconfirmed > 0 {
        tracing::warn!(
            cache.purged = purged,
            gateways.confirmed = confirmation.confirmed,
            gateways.unconfirmed = confirmation.unconfirmed,
            "cache purged, but not every gateway confirmed dropping its copies in memory"
        );
    } else {
        tracing::info!(
            cache.purged = purged,
            gateways.confirmed = confirmation.confirmed,
            "cache purged"
        );
    }
    Ok(Purged {
        entries: purged,
        unconfirmed_gateways: confirmation.unconfirmed,
    })
}

async fn own_domain(app: &App, tenant_id: Uuid, id: Uuid) -> Result<DomainRecord, CacheError> {
    app.db
        .domain_of(tenant_id, id)
        .await?
        .ok_or(CacheError::DomainNotFound)
}

pub(crate) fn render_job(
    domain: &DomainRecord,
    url: NormalizedUrl,
    device: DeviceClass,
    purpose: RenderPurpose,
) -> RenderJob {
    let config = domain.config();
    RenderJob {
        key: CacheKey::new(&config.id, device, &url),
        tenant_id: config.tenant_id.clone(),
        render_url: config.origin_url_for(&url),
        page_url: url,
        device,
        cache_ttl_secs: config.settings.cache_ttl_secs,
        stale_ttl_secs: config.settings.stale_ttl_secs,
        render_timeout_ms: config.settings.render_timeout_ms,
        enqueued_at: kiln_core::unix_millis_now(),
        request_id: None,
        blocking: config.settings.blocking,
        purpose,
        user_agent: None,
        via: kiln_core::RenderVia::Edge,
    }
}

/// Starts warming a list of URLs (on any of the tenant's verified domains): one render per URL and
/// device class the domain serves. Returns the job.
pub async fn warm_urls(
    app: &App,
    queue: &RenderQueue,
    tenant_id: Uuid,
    urls: &[String],
    actor: &str,
) -> Result<WarmJobRecord, CacheError> {
    let domains = app.db.domains_of(tenant_id).await?;
    let pages = resolve_urls(&domains, urls)?;
    if let Some(page) = pages.iter().find(|page| !page.domain.verified) {
        return Err(CacheError::NotVerified(page.domain.host.clone()));
    }
    let mut rules = HashMap::new();
    let mut left_out = LeftOut::default();
    let pages: Vec<&PageRef<'_>> = pages
        .iter()
        .filter(|page| {
            let rules = rules
                .entry(page.domain.id)
                .or_insert_with(|| page.domain.settings.path_rules());
            let rendered = rules.renders(path_of(&page.url));
            if !rendered {
                left_out.add(page.url.as_str(), EXCLUDED);
            }
            rendered
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let renders: Vec<(&DomainRecord, NormalizedUrl, DeviceClass)> = pages
        .iter()
        .flat_map(|page| {
            devices(page.domain)
                .iter()
                .map(move |device| (page.domain, page.url.clone(), *device))
        })
        .filter(|(domain, url, device)| seen.insert((domain.id, url.clone(), *device)))
        .collect();
    let single_domain = pages
        .first()
        .map(|p| p.domain.id)
        .filter(|id| pages.iter().all(|p| p.domain.id == *id));
    let (skipped, skipped_total) = left_out.into_record();
    let job = app
        .db
        .insert_warm_job(&WarmJobRecord {
            id: Uuid::now_v7(),
            tenant_id,
            domain_id: single_domain,
            sitemap_url: None,
            state: "rendering".to_owned(),
            total: renders.len() as i32,
            skipped,
            skipped_total,
            error: None,
            actor: actor.to_owned(),
            created_at: time::OffsetDateTime::now_utc(),
        })
        .await?;
    enqueue_warm(queue, &job, renders).await?;
    Ok(job)
}

async fn enqueue_warm(
    queue: &RenderQueue,
    job: &WarmJobRecord,
    renders: Vec<(&DomainRecord, NormalizedUrl, DeviceClass)>,
) -> Result<(), CacheError> {
    let purpose = RenderPurpose::Warm {
        job_id: job.id.to_string(),
    };
    for (domain, url, device) in renders {
        queue
            .push_warm(render_job(domain, url, device, purpose.clone()))
            .await?;
    }
    tracing::info!(warm.id = %job.id, warm.total = job.total, "warm job queued");
    Ok(())
}

/// Starts warming from a sitemap of one of the tenant's verified domains. The sitemap is read in
/// the background (it can be large and nested); the job reports `collecting` until it has been.
pub async fn warm_sitemap(
    app: &App,
    queue: &RenderQueue,
    fetcher: &SitemapFetcher,
    tenant_id: Uuid,
    domain_id: Uuid,
    sitemap_url: &str,
    actor: &str,
) -> Result<WarmJobRecord, CacheError> {
    let domain = own_domain(app, tenant_id, domain_id).await?;
    if !domain.verified {
        return Err(CacheError::NotVerified(domain.host.clone()));
    }
    let root = url::Url::parse(sitemap_url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            CacheError::Invalid(format!(
                "`sitemap_url` `{}` is not an absolute http(s) URL",
                shorten(sitemap_url)
            ))
        })?;
    if root
        .host_str()
        .and_then(|h| Hostname::parse(h).ok())
        .as_ref()
        != Some(&domain.host)
    {
        return Err(CacheError::Invalid(format!(
            "`sitemap_url` must be on {} (the domain's hostname); Kiln reads it from the domain's origin",
            domain.host
        )));
    }
    let job = app
        .db
        .insert_warm_job(&WarmJobRecord {
            id: Uuid::now_v7(),
            tenant_id,
            domain_id: Some(domain.id),
            sitemap_url: Some(root.to_string()),
            state: "collecting".to_owned(),
            total: 0,
            skipped: serde_json::json!([]),
            skipped_total: 0,
            error: None,
            actor: actor.to_owned(),
            created_at: time::OffsetDateTime::now_utc(),
        })
        .await?;
    let (app, queue, fetcher, returned) =
        (app.clone(), queue.clone(), fetcher.clone(), job.clone());
    tokio::spawn(async move {
        if let Err(error) = collect_and_enqueue(&app, &queue, &fetcher, &domain, &job, &root).await
        {
            let message = crate::error_chain(&error);
            tracing::warn!(warm.id = %job.id, %message, "sitemap warm failed");
            if let Err(error) = app.db.warm_job_failed(job.id, &message).await {
                tracing::error!(
                    warm.id = %job.id,
                    error = %crate::error_chain(&error),
                    "could not record a failed warm job"
                );
            }
        }
    });
    Ok(returned)
}

async fn collect_and_enqueue(
    app: &App,
    queue: &RenderQueue,
    fetcher: &SitemapFetcher,
    domain: &DomainRecord,
    job: &WarmJobRecord,
    root: &url::Url,
) -> Result<(), CacheError> {
    let fetcher = fetcher.for_domain(domain);
    // The reader keeps no more examples of what it left out than the job's record lists.
    let limits = kiln_sitemap::Limits {
        max_skipped: MAX_SKIPPED_LISTED,
        ..kiln_sitemap::Limits::default()
    };
    let collected = tokio::time::timeout(
        SITEMAP_DEADLINE,
        kiln_sitemap::collect(&fetcher, root, &limits),
    )
    .await
    .map_err(|_| CacheError::SitemapTimeout(SITEMAP_DEADLINE.as_secs()))?
    .map_err(|error| CacheError::Sitemap(Box::new(error)))?;

    let mut left_out = LeftOut::default();
    // First, so that the record lists it however much else was left out.
    if collected.truncated {
        left_out.add(
            root.as_str(),
            format!(
                "the sitemap goes beyond what a warm reads (at most {} URLs, from {} sitemaps, \
                 {} index levels deep); the rest was left out",
                limits.max_urls, limits.max_sitemaps, limits.max_depth
            ),
        );
    }
    for skipped in &collected.skipped {
        left_out.add(&skipped.url, crate::error_chain(&skipped.reason));
    }
    left_out.add_uncounted(collected.skipped_omitted);
    let mut renders = Vec::new();
    let by_host = by_host(std::slice::from_ref(domain));
    let rules = domain.settings.path_rules();
    for url in &collected.urls {
        match resolve_url(&by_host, url.as_str()) {
            Ok(page) if !rules.renders(path_of(&page.url)) => left_out.add(url.as_str(), EXCLUDED),
            Ok(page) => {
                for device in devices(domain) {
                    renders.push((domain, page.url.clone(), *device));
                }
            }
            Err(reason) => left_out.add(url.as_str(), crate::error_chain(&reason)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    renders.retain(|(_, url, device)| seen.insert((url.clone(), *device)));
    let (skipped, skipped_total) = left_out.into_record();
    app.db
        .warm_job_collected(job.id, renders.len() as i32, &skipped, skipped_total)
        .await?;
    let job = WarmJobRecord {
        total: renders.len() as i32,
        ..job.clone()
    };
    enqueue_warm(queue, &job, renders).await
}

/// A warm job with its progress.
pub struct WarmStatus {
    pub job: WarmJobRecord,
    pub done: u64,
    pub failed: u64,
}

/// A warm job and how far it got, as both front ends show it.
#[derive(Clone, Debug)]
pub struct WarmProgress {
    pub id: Uuid,
    /// `collecting` (reading the sitemap), `rendering`, `done` (every render finished, whether
    /// or not the job's record says so yet) or `failed`.
    pub state: String,
    pub domain_id: Option<Uuid>,
    pub sitemap_url: Option<String>,
    /// Renders in the job (URLs × device variants).
    pub total: u64,
    /// Renders not finished yet.
    pub queued: u64,
    pub done: u64,
    pub failed: u64,
    /// The first entries left out, with reasons (`[{"url": …, "reason": …}]`).
    pub skipped: serde_json::Value,
    /// How many entries were left out in all.
    pub skipped_total: u64,
    /// Whether more entries were left out than `skipped` lists.
    pub skipped_truncated: bool,
    /// Why the job failed, when it did.
    pub error: Option<String>,
    pub created_at: time::OffsetDateTime,
}

impl WarmProgress {
    pub fn new(job: &WarmJobRecord, done: u64, failed: u64) -> Self {
        let total = u64::try_from(job.total).unwrap_or(0);
        let finished = done + failed;
        let skipped_total = u64::try_from(job.skipped_total).unwrap_or(0);
        let listed = job.skipped.as_array().map_or(0, Vec::len) as u64;
        let state = match job.state.as_str() {
            "rendering" if finished >= total => "done",
            other => other,
        };
        WarmProgress {
            id: job.id,
            state: state.to_owned(),
            domain_id: job.domain_id,
            sitemap_url: job.sitemap_url.clone(),
            total,
            queued: total.saturating_sub(finished),
            done,
            failed,
            skipped: job.skipped.clone(),
            skipped_total,
            skipped_truncated: skipped_total > listed,
            error: job.error.clone(),
            created_at: job.created_at,
        }
    }
}

impl From<&WarmStatus> for WarmProgress {
    fn from(status: &WarmStatus) -> Self {
        WarmProgress::new(&status.job, status.done, status.failed)
    }
}

pub async fn warm_status(app: &App, tenant_id: Uuid, id: Uuid) -> Result<WarmStatus, CacheError> {
    let job = app
        .db
        .warm_job_of(tenant_id, id)
        .await?
        .ok_or(CacheError::WarmNotFound)?;
    let progress = app
        .store
        .render_log()
        .warm_progress(&job.id.to_string())
        .await?;
    Ok(WarmStatus {
        job,
        done: progress.done,
        failed: progress.failed,
    })
}

/// A fresh render of one URL, exactly as a bot would get it, without touching the cache.
pub async fn preview(
    app: &App,
    queue: &RenderQueue,
    tenant_id: Uuid,
    url: &str,
    device: DeviceClass,
) -> Result<(NormalizedUrl, PreviewResult), CacheError> {
    let domains = app.db.domains_of(tenant_id).await?;
    let refused =
        |reason| CacheError::InvalidUrls(UrlProblems::one(UrlProblem::new("url", url, reason)));
    let page = resolve_url(&by_host(&domains), url).map_err(refused)?;
    if !page.domain.verified {
        return Err(CacheError::NotVerified(page.domain.host.clone()));
    }
    if !page
        .domain
        .settings
        .path_rules()
        .renders(path_of(&page.url))
    {
        return Err(refused(UrlRefused::Excluded {
            so: "there is no render to preview",
        }));
    }
    let reply_to = Uuid::new_v4().to_string();
    let budget = Duration::from_millis(page.domain.settings.render_timeout_ms) * 2;
    let job = render_job(
        page.domain,
        page.url.clone(),
        device,
        RenderPurpose::Preview {
            reply_to: reply_to.clone(),
        },
    );
    queue.push(job).await?;
    let wait = budget + PREVIEW_QUEUE_MARGIN;
    match app.store.render_log().take_preview(&reply_to, wait).await? {
        Some(result) => Ok((page.url, result)),
        None => Err(CacheError::PreviewTimeout(wait.as_secs())),
    }
}

/// The domain's cached pages whose path starts with `prefix`, by path, `limit` at a time from
/// `cursor` (what the previous listing returned).
pub async fn pages(
    app: &App,
    domain: &DomainRecord,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<kiln_store::PageListing, CacheError> {
    app.store
        .pages()
        .list(&domain.id.to_string(), prefix, cursor, limit)
        .await
        .map_err(|error| match error {
            StoreError::InvalidCursor => CacheError::InvalidCursor,
            other => CacheError::Store(other),
        })
}

/// How many pages of the domain are cached and not expired.
pub async fn page_count(app: &App, domain_id: Uuid) -> Result<u64, CacheError> {
    Ok(app
        .store
        .pages()
        .count(&domain_id.to_string(), kiln_core::unix_millis_now())
        .await?)
}

/// The domain's last `count` warm jobs with their progress, newest first. A job whose progress
/// Redis cannot tell shows none done.
pub async fn recent_warms(
    app: &App,
    tenant_id: Uuid,
    domain_id: Uuid,
    count: i64,
) -> Result<Vec<WarmProgress>, CacheError> {
    let jobs = app.db.recent_warm_jobs(tenant_id, domain_id, count).await?;
    let mut warms = Vec::with_capacity(jobs.len());
    for job in jobs {
        let progress = app
            .store
            .render_log()
            .warm_progress(&job.id.to_string())
            .await
            .ok();
        let (done, failed) = progress.map_or((0, 0), |p| (p.done, p.failed));
        warms.push(WarmProgress::new(&job, done, failed));
    }
    Ok(warms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let check = |text: &str, max: usize, expected: &str| {
            assert_eq!(shorten_to(text, max), expected, "{text:?} to {max}");
        };
        check("", 3, "");
        check("abc", 3, "abc");
        check("abcd", 3, "abc…");
        check("ééé", 3, "ééé");
        check("éééé", 2, "éé…");
        check("abc", 0, "…");
    }

    #[test]
    fn url_problems_are_one_message_with_each_reason_and_its_sources() {
        let not_absolute = url::Url::parse("not a url").unwrap_err();
        let problem = |n: usize| {
            UrlProblem::new(
                format!("urls[{n}]"),
                "not a url",
                UrlRefused::NotAbsolute(not_absolute),
            )
        };
        let one = "not an absolute URL: relative URL without a base";
        assert_eq!(
            UrlProblems::one(problem(1)).to_string(),
            format!("urls[1] `not a url`: {one}")
        );
        let many = UrlProblems((0..MAX_PROBLEMS_LISTED + 2).map(problem).collect());
        let message = many.to_string();
        assert!(
            message.starts_with(&format!(
                "urls[0] `not a url`: {one}; urls[1] `not a url`: {one}; "
            )),
            "{message}"
        );
        assert!(
            message.ends_with(&format!("urls[9] `not a url`: {one}; and 2 more")),
            "{message}"
        );
        // The list is the whole message: nothing follows it in a chain.
        let error = CacheError::InvalidUrls(many);
        assert_eq!(crate::error_chain(&error), error.to_string());
    }

    #[test]
    fn what_a_warm_leaves_out_is_all_counted_and_the_first_listed() {
        let mut left_out = LeftOut::default();
        for n in 0..MAX_SKIPPED_LISTED + 5 {
            left_out.add(&format!("https://shop.example/{n}"), EXCLUDED);
        }
        left_out.add_uncounted(7);
        left_out.add(&"x".repeat(5000), "a reason");
        let (listed, total) = left_out.into_record();
        assert_eq!(total as usize, MAX_SKIPPED_LISTED + 5 + 7 + 1);
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), MAX_SKIPPED_LISTED);
        assert_eq!(listed[0]["url"], "https://shop.example/0");
        assert_eq!(listed[0]["reason"], EXCLUDED);

        let mut left_out = LeftOut::default();
        left_out.add(&"x".repeat(5000), "y".repeat(5000));
        let (listed, total) = left_out.into_record();
        assert_eq!(total, 1);
        let url = listed[0]["url"].as_str().unwrap();
        assert_eq!(url.chars().count(), MAX_SKIPPED_CHARS + 1, "cut, with …");
        let reason = listed[0]["reason"].as_str().unwrap();
        assert_eq!(reason.chars().count(), MAX_SKIPPED_CHARS + 1);
    }
}
