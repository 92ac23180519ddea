//! `/api/v1/cache…` and `/api/v1/render`: purge, warm, list and preview.

use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::page::PageSize;
use crate::responses::{CallerErrors, JsonBodyErrors, QueryErrors};
use axum::extract::State;
use axum::http::StatusCode;
use kiln_control::cache::{self, Purge, WarmProgress};
use kiln_control::from_millis;
use kiln_core::DeviceClass;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What to purge: exactly one of `urls`, `domain_id` + `prefix`, or `domain_id` + `all: true`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Up to 1,000 absolute URLs on the account's domains; every device variant and both http and
    /// https spellings of each are purged.
    #[schema(max_items = 1000, example = json!(["https://shop.example.com/products/3"]))]
    pub urls: Option<Vec<String>>,
    pub domain_id: Option<Uuid>,
    /// Purge the domain's pages whose path starts with this, e.g. `/blog/`.
    #[schema(example = "/blog/")]
    pub prefix: Option<String>,
    /// Purge every page of the domain.
    pub all: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct PurgeResult {
    /// How many cache entries were removed.
    pub purged: u64,
    /// Whether every gateway confirmed, before this answer, that it dropped the purged pages from
    /// its memory: then the next bot on any gateway gets a fresh render. The purge waits up to
    /// 2 seconds for them; `false` when one did not answer by then (stalled, stopped without
    /// notice, or cut off from Redis), which may then serve a purged page from memory for at most
    /// 30 seconds more.
    pub confirmed: bool,
    /// How many gateways did not confirm within the wait.
    pub unconfirmed_gateways: u32,
}

/// Removes cached pages, from Redis and from every gateway's memory, so that the next bot gets a
/// fresh render. The answer comes once every gateway has confirmed it (at most 2 seconds later;
/// `confirmed` says whether all did).
#[utoipa::path(post, path = "/cache/purge", tag = "cache", request_body = PurgeRequest,
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Purged", body = PurgeResult),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid request or a URL that is not on the account's domains", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        CallerErrors,
    ))]
pub async fn purge(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(input): ApiJson<PurgeRequest>,
) -> Result<axum::Json<PurgeResult>, ApiError> {
    let purge = match input {
        PurgeRequest {
            urls: Some(urls),
            domain_id: None,
            prefix: None,
            all: None,
        } => Purge::Urls(urls),
        PurgeRequest {
            urls: None,
            domain_id: Some(domain_id),
            prefix: Some(prefix),
            all: None | Some(false),
        } => {
            // Cached paths are normalised, with control characters percent-encoded, so such a
            // prefix could match nothing; and Postgres cannot store a NUL in the audit log.
            if prefix.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "`prefix` must not contain control characters; percent-encode them as in the URL",
                ));
            }
            Purge::Prefix { domain_id, prefix }
        }
        PurgeRequest {
            urls: None,
            domain_id: Some(domain_id),
            prefix: None,
            all: Some(true),
        } => Purge::All { domain_id },
        _ => {
            return Err(ApiError::invalid(
                "send exactly one of {\"urls\": [...]}, {\"domain_id\": ..., \"prefix\": \"/path/\"} \
                 or {\"domain_id\": ..., \"all\": true}",
            ));
        }
    };
    let purged = cache::purge(&ctx.app, caller.tenant_id, purge, &caller.actor()).await?;
    Ok(axum::Json(PurgeResult {
        purged: purged.entries,
        confirmed: purged.unconfirmed_gateways == 0,
        unconfirmed_gateways: purged.unconfirmed_gateways,
    }))
}

/// What to warm: `urls`, or `domain_id` + `sitemap_url`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmRequest {
    /// Up to 1,000 absolute URLs on the account's verified domains.
    #[schema(max_items = 1000, example = json!(["https://shop.example.com/products/3"]))]
    pub urls: Option<Vec<String>>,
    pub domain_id: Option<Uuid>,
    /// A sitemap (or sitemap index; gzip accepted) on the domain's hostname. Kiln reads it from the
    /// domain's origin.
    #[schema(example = "https://shop.example.com/sitemap.xml")]
    pub sitemap_url: Option<String>,
}

// One list of fields, `kiln_control`'s `WarmProgress`'s, serves as the document's schema and, by
// serde's remote derive, as the way a `WarmProgress` is written (`WarmJob`), so the two cannot
// drift and no copy of the job is made field by field.
/// A warm job and its progress.
#[derive(Serialize, ToSchema)]
#[serde(remote = "WarmProgress")]
pub struct WarmView {
    pub id: Uuid,
    /// `collecting` (reading the sitemap), `rendering`, `done` or `failed`.
    #[schema(example = "rendering")]
    pub state: String,
    pub domain_id: Option<Uuid>,
    pub sitemap_url: Option<String>,
    /// Renders in the job (URLs × device variants).
    pub total: u64,
    /// Renders not finished yet.
    pub queued: u64,
    pub done: u64,
    pub failed: u64,
    /// Entries left out (on another host, malformed, excluded by the domain's path rules, a child
    /// sitemap that failed or was beyond the limits), with reasons: the first 100 only, each URL
    /// and reason cut to 1,000 characters. `skipped_total` counts them all.
    #[schema(value_type = Vec<SkippedEntry>)]
    pub skipped: serde_json::Value,
    /// How many entries were left out in all.
    pub skipped_total: u64,
    /// Whether more entries were left out than `skipped` lists.
    pub skipped_truncated: bool,
    /// Why the job failed, when it did.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A [`WarmProgress`] written as a [`WarmView`].
#[derive(Serialize)]
#[serde(transparent)]
pub struct WarmJob(#[serde(with = "WarmView")] pub WarmProgress);

/// An entry a warm left out. (For the OpenAPI document only: the job's record holds these.)
#[derive(Serialize, ToSchema)]
pub struct SkippedEntry {
    /// The entry's URL as the sitemap or request gave it (it may not be a valid URL).
    #[schema(example = "https://elsewhere.example/products/4")]
    pub url: String,
    /// Why it was left out.
    pub reason: String,
}

/// Renders pages ahead of bots. Returns at once with a job id; see `GET /api/v1/cache/warm/{id}`.
#[utoipa::path(post, path = "/cache/warm", tag = "cache", request_body = WarmRequest,
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 202, description = "Queued", body = WarmView),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        (status = 409, description = "The domain is not verified", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid request or a URL that is not on the account's domains", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        CallerErrors,
    ))]
pub async fn warm(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(input): ApiJson<WarmRequest>,
) -> Result<(StatusCode, axum::Json<WarmJob>), ApiError> {
    let actor = caller.actor();
    let job = match input {
        WarmRequest {
            urls: Some(urls),
            domain_id: None,
            sitemap_url: None,
        } => cache::warm_urls(&ctx.app, &ctx.queue, caller.tenant_id, &urls, &actor).await?,
        WarmRequest {
            urls: None,
            domain_id: Some(domain_id),
            sitemap_url: Some(sitemap_url),
        } => {
            cache::warm_sitemap(
                &ctx.app,
                &ctx.queue,
                &ctx.sitemaps,
                caller.tenant_id,
                domain_id,
                &sitemap_url,
                &actor,
            )
            .await?
        }
        _ => {
            return Err(ApiError::invalid(
                "send either {\"urls\": [...]} or {\"domain_id\": ..., \"sitemap_url\": \"...\"}",
            ));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(WarmJob(WarmProgress::new(&job, 0, 0))),
    ))
}

/// A warm job's progress.
#[utoipa::path(get, path = "/cache/warm/{id}", tag = "cache",
    params(("id" = Uuid, Path, description = "The warm job's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The job", body = WarmView),
        (status = 404, description = "No such warm job in this account", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn warm_status(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<WarmJob>, ApiError> {
    let status = cache::warm_status(&ctx.app, caller.tenant_id, id).await?;
    Ok(axum::Json(WarmJob(WarmProgress::from(&status))))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CacheQuery {
    pub domain_id: Uuid,
    /// Only pages whose path starts with this.
    #[param(example = "/blog/")]
    pub prefix: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Pages per response (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub limit: Option<u32>,
}

const PAGES_PER_PAGE: PageSize = PageSize {
    default: 100,
    max: 1000,
};

#[derive(Serialize, ToSchema)]
pub struct CachedPage {
    pub url: String,
    #[schema(example = "desktop")]
    pub device: String,
    pub status: u16,
    pub bytes: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub rendered_at: OffsetDateTime,
    /// Until then bots get it as it is; after that, until `expires_at`, it is served stale while a
    /// new render replaces it.
    #[serde(with = "time::serde::rfc3339")]
    pub fresh_until: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct CacheListing {
    pub pages: Vec<CachedPage>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// The domain's cached pages, by path.
#[utoipa::path(get, path = "/cache", tag = "cache", params(CacheQuery),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Cached pages", body = CacheListing),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CacheQuery>,
) -> Result<axum::Json<CacheListing>, ApiError> {
    let domain = kiln_control::domains::get(&ctx.app, caller.tenant_id, query.domain_id).await?;
    let limit = PAGES_PER_PAGE.of(query.limit)?;
    let prefix = query.prefix.unwrap_or_default();
    let listing = cache::pages(
        &ctx.app,
        &domain,
        &prefix,
        query.cursor.as_deref(),
        limit as usize,
    )
    .await?;
    let pages = listing
        .pages
        .into_iter()
        .map(|page| CachedPage {
            url: page.url,
            device: page.device.as_str().to_owned(),
            status: page.status,
            bytes: page.bytes,
            rendered_at: from_millis(page.rendered_at),
            fresh_until: from_millis(page.fresh_until),
            expires_at: from_millis(page.expires_at),
        })
        .collect();
    Ok(axum::Json(CacheListing {
        pages,
        next_cursor: listing.next_cursor,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RenderQuery {
    /// An absolute URL on one of the account's verified domains.
    #[param(example = "https://shop.example.com/products/3")]
    pub url: String,
    /// `desktop` (default) or `mobile`.
    #[param(inline)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub device: Option<Device>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Desktop,
    Mobile,
}

impl From<Device> for DeviceClass {
    fn from(device: Device) -> Self {
        match device {
            Device::Desktop => DeviceClass::Desktop,
            Device::Mobile => DeviceClass::Mobile,
        }
    }
}

/// A fresh render, as a bot would get it.
#[derive(Serialize, ToSchema)]
pub struct RenderView {
    /// The URL as Kiln normalises it (the cache key's URL).
    pub url: String,
    pub device: String,
    pub status: u16,
    /// The headers the page would be served with.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub render_ms: u64,
    /// Why the render failed; null when it succeeded.
    pub error: Option<String>,
}

/// Renders one URL now and returns what a bot would get, without storing it in the cache.
#[utoipa::path(get, path = "/render", tag = "cache", params(RenderQuery),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The render (see `error` for a failed one)", body = RenderView),
        (status = 409, description = "The domain is not verified", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "The URL is not on the account's domains", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "The render queue is unavailable", body = kiln_frontdoor::ErrorBody),
        (status = 504, description = "No worker finished the render in time", body = kiln_frontdoor::ErrorBody),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn render(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RenderQuery>,
) -> Result<axum::Json<RenderView>, ApiError> {
    let device = DeviceClass::from(query.device.unwrap_or(Device::Desktop));
    let (url, result) =
        cache::preview(&ctx.app, &ctx.queue, caller.tenant_id, &query.url, device).await?;
    Ok(axum::Json(RenderView {
        url: url.to_string(),
        device: device.as_str().to_owned(),
        status: result.status,
        headers: result.headers,
        body: result.html,
        render_ms: result.render_ms,
        error: result.error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use utoipa::PartialSchema;

    #[test]
    fn a_warm_job_is_written_with_the_fields_the_document_lists() {
        let progress = WarmProgress {
            id: Uuid::nil(),
            state: "rendering".to_owned(),
            domain_id: None,
            sitemap_url: Some("https://shop.example/sitemap.xml".to_owned()),
            total: 4,
            queued: 1,
            done: 2,
            failed: 1,
            skipped: serde_json::json!([{"url": "https://elsewhere.example/", "reason": "another host"}]),
            skipped_total: 3,
            skipped_truncated: true,
            error: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(WarmJob(progress)).unwrap();
        assert_eq!(json["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(json["skipped"][0]["reason"], "another host");
        assert_eq!(json["skipped_total"], 3);
        assert_eq!(json["domain_id"], serde_json::Value::Null);

        let schema = serde_json::to_value(WarmView::schema()).unwrap();
        let listed: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
        let written: BTreeSet<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(written, listed);
    }
}
