//! `/api/v1/domains`: a tenant's domains, their settings and their ownership verification.

use crate::extract::{ApiJson, ApiPath};
use crate::responses::{CallerErrors, JsonBodyErrors};
use axum::extract::State;
use axum::http::StatusCode;
use kiln_control::db::DomainRecord;
use kiln_control::domains;
use kiln_control::origin::Origin;
use kiln_core::{BotFamily, DomainSettings, Hostname, ResourceBlocking, SettingsError};
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A domain to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomainInput {
    /// The hostname visitors use, e.g. `shop.example.com` or `bücher.example`: no scheme, port,
    /// path or wildcard. Internationalised names are stored in punycode.
    #[schema(example = "shop.example.com")]
    pub hostname: String,
    /// Where Kiln fetches pages: `http(s)://host[:port]`, no path. Required, except for a domain
    /// used only through the render service, whose origin is its public site,
    /// `https://<hostname>` (left out, or given as exactly that).
    #[schema(example = "https://origin.shop.example.com")]
    pub origin: Option<String>,
    /// Whether the domain is used only through the render service: your own server
    /// (prerender-node, rendertron-middleware, …) asks Kiln for bots' pages with a service token,
    /// and no DNS record points at Kiln's edge. Ownership is still proven with the TXT record.
    /// Default `false`.
    pub service_only: Option<bool>,
    /// Settings other than the defaults.
    pub settings: Option<SettingsInput>,
}

/// Changes to a domain: fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainPatch {
    #[schema(example = "https://origin.shop.example.com")]
    pub origin: Option<String>,
    pub settings: Option<SettingsInput>,
}

/// Per-domain settings; fields left out keep their current (or default) values.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// How long a render is fresh (served from the cache as it is), in seconds.
    #[schema(minimum = 1, maximum = 31536000)]
    pub cache_ttl_secs: Option<u64>,
    /// How long after that a render is still served, at once, while a background render replaces
    /// it (and kept if that render fails), in seconds; 0 turns stale serving off.
    #[schema(minimum = 0, maximum = 31536000)]
    pub stale_ttl_secs: Option<u64>,
    /// The longest a render may take, in milliseconds.
    #[schema(minimum = 1000, maximum = 120000)]
    pub render_timeout_ms: Option<u64>,
    /// How long a bot waits for a render on a cache miss before it gets the origin's page.
    #[schema(minimum = 0, maximum = 120000)]
    pub bot_wait_ms: Option<u64>,
    /// Bot requests a second each client address may make (0: no limit); verified crawlers are
    /// not limited. Beyond it a bot gets `429` with `Retry-After`.
    #[schema(minimum = 0, maximum = 10000)]
    pub bot_rate_per_second: Option<u64>,
    /// Bot requests a client address may make at once before the rate applies.
    #[schema(minimum = 1, maximum = 10000)]
    pub bot_rate_burst: Option<u64>,
    /// Whether phones get their own renders (mobile viewport and User-Agent).
    pub device_variants: Option<bool>,
    /// What renders do not download.
    pub blocking: Option<BlockingInput>,
    /// Query parameters that never change the page; a trailing `*` makes a prefix (`utm_*`).
    pub ignored_query_params: Option<Vec<String>>,
    /// Which families of known bots get renders (search, social, ai, seo, monitoring; all by
    /// default). Bots of other families are proxied to the origin like people.
    #[schema(value_type = Option<Vec<BotFamilyName>>)]
    pub bot_families: Option<Vec<String>>,
    /// Extra bot User-Agent patterns (case-insensitive substrings) beyond the edge's list; these
    /// always get renders.
    pub bot_user_agents: Option<Vec<String>>,
    /// Only paths matching one of these glob patterns (`*` = anything) are rendered; empty = all.
    pub include_paths: Option<Vec<String>>,
    /// Paths matching one of these glob patterns are never rendered.
    pub exclude_paths: Option<Vec<String>>,
}

/// A family of known bots, as the edge's data file (`nginx/bots.map`) names them. (For the OpenAPI
/// document only: the values are those of `kiln_core::BotFamily`.)
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum BotFamilyName {
    Search,
    Social,
    Ai,
    Seo,
    Monitoring,
}

/// Reads a list of bot family names; the error names the entry (`bot_families[1]`).
pub fn parse_bot_families(names: &[String]) -> Result<BTreeSet<BotFamily>, SettingsError> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            name.trim().parse::<BotFamily>().map_err(|_| SettingsError {
                field: format!("bot_families[{index}]"),
                rule: "must be one of search, social, ai, seo, monitoring".into(),
            })
        })
        .collect()
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BlockingInput {
    pub images: Option<bool>,
    pub media: Option<bool>,
    pub fonts: Option<bool>,
    pub stylesheets: Option<bool>,
    /// Known analytics, advertising and tag-manager hosts.
    pub trackers: Option<bool>,
}

impl SettingsInput {
    /// `base` with the given fields replaced, checked against the settings' bounds.
    pub fn apply(self, base: &DomainSettings) -> Result<DomainSettings, ApiError> {
        let mut settings = base.clone();
        let SettingsInput {
            cache_ttl_secs,
            stale_ttl_secs,
            render_timeout_ms,
            bot_wait_ms,
            bot_rate_per_second,
            bot_rate_burst,
            device_variants,
            blocking,
            ignored_query_params,
            bot_families,
            bot_user_agents,
            include_paths,
            exclude_paths,
        } = self;
        if let Some(names) = bot_families {
            settings.bot_families = parse_bot_families(&names)
                .map_err(|error| ApiError::invalid(format!("settings: {error}")))?;
        }
        set(&mut settings.cache_ttl_secs, cache_ttl_secs);
        set(&mut settings.stale_ttl_secs, stale_ttl_secs);
        set(&mut settings.render_timeout_ms, render_timeout_ms);
        set(&mut settings.bot_wait_ms, bot_wait_ms);
        set(&mut settings.bot_rate_per_second, bot_rate_per_second);
        set(&mut settings.bot_rate_burst, bot_rate_burst);
        set(&mut settings.device_variants, device_variants);
        set(&mut settings.ignored_query_params, ignored_query_params);
        set(&mut settings.bot_user_agents, bot_user_agents);
        set(&mut settings.include_paths, include_paths);
        set(&mut settings.exclude_paths, exclude_paths);
        if let Some(blocking) = blocking {
            let b = &mut settings.blocking;
            set(&mut b.images, blocking.images);
            set(&mut b.media, blocking.media);
            set(&mut b.fonts, blocking.fonts);
            set(&mut b.stylesheets, blocking.stylesheets);
            set(&mut b.trackers, blocking.trackers);
        }
        settings
            .validate()
            .map_err(|error| ApiError::invalid(format!("settings: {error}")))?;
        Ok(settings)
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A domain as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct DomainView {
    pub id: Uuid,
    /// In punycode for internationalised names.
    #[schema(example = "shop.example.com")]
    pub hostname: String,
    #[schema(example = "https://origin.shop.example.com")]
    pub origin: String,
    /// Whether Kiln renders for bots on this domain (ownership proven).
    pub verified: bool,
    /// Whether the domain is used only through the render service (its origin is its public
    /// site).
    pub service_only: bool,
    pub verification: VerificationView,
    pub settings: SettingsView,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// How to prove ownership, and what the last check found.
#[derive(Serialize, ToSchema)]
pub struct VerificationView {
    #[schema(example = "pending")]
    pub status: VerificationStatus,
    /// Point the hostname's CNAME here.
    #[schema(example = "edge.kiln.example.com")]
    pub cname_target: String,
    /// Or publish this TXT record.
    pub txt_record: TxtRecord,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
    /// What the last check found, for a person.
    pub last_check: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    Verified,
    Pending,
}

#[derive(Serialize, ToSchema)]
pub struct TxtRecord {
    #[schema(example = "_kiln-challenge.shop.example.com")]
    pub name: String,
    pub value: String,
}

/// A domain's settings, every field present.
#[derive(Serialize, ToSchema)]
pub struct SettingsView {
    pub cache_ttl_secs: u64,
    pub stale_ttl_secs: u64,
    pub render_timeout_ms: u64,
    pub bot_wait_ms: u64,
    pub bot_rate_per_second: u64,
    pub bot_rate_burst: u64,
    pub device_variants: bool,
    pub blocking: BlockingView,
    pub ignored_query_params: Vec<String>,
    #[schema(value_type = Vec<BotFamilyName>)]
    pub bot_families: Vec<String>,
    pub bot_user_agents: Vec<String>,
    pub include_paths: Vec<String>,
    pub exclude_paths: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BlockingView {
    pub images: bool,
    pub media: bool,
    pub fonts: bool,
    pub stylesheets: bool,
    pub trackers: bool,
}

impl From<&DomainSettings> for SettingsView {
    fn from(s: &DomainSettings) -> Self {
        let ResourceBlocking {
            images,
            media,
            fonts,
            stylesheets,
            trackers,
        } = s.blocking;
        SettingsView {
            cache_ttl_secs: s.cache_ttl_secs,
            stale_ttl_secs: s.stale_ttl_secs,
            render_timeout_ms: s.render_timeout_ms,
            bot_wait_ms: s.bot_wait_ms,
            bot_rate_per_second: s.bot_rate_per_second,
            bot_rate_burst: s.bot_rate_burst,
            device_variants: s.device_variants,
            blocking: BlockingView {
                images,
                media,
                fonts,
                stylesheets,
                trackers,
            },
            ignored_query_params: s.ignored_query_params.clone(),
            bot_families: s.bot_families.iter().map(|f| f.to_string()).collect(),
            bot_user_agents: s.bot_user_agents.clone(),
            include_paths: s.include_paths.clone(),
            exclude_paths: s.exclude_paths.clone(),
        }
    }
}

impl DomainView {
    pub fn new(record: &DomainRecord, cname_target: &Hostname) -> Self {
        DomainView {
            id: record.id,
            hostname: record.host.to_string(),
            origin: record.origin.clone(),
            verified: record.verified,
            service_only: record.service_only,
            verification: VerificationView {
                status: if record.verified {
                    VerificationStatus::Verified
                } else {
                    VerificationStatus::Pending
                },
                cname_target: cname_target.to_string(),
                txt_record: TxtRecord {
                    name: domains::challenge_name(&record.host),
                    value: record.verification_token.clone(),
                },
                verified_at: record.verified_at,
                checked_at: record.verification_checked_at,
                last_check: record.verification_result.clone(),
            },
            settings: SettingsView::from(&record.settings),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DomainList {
    pub domains: Vec<DomainView>,
}

pub(super) fn parse_hostname(input: &str) -> Result<Hostname, ApiError> {
    Hostname::parse(input).map_err(|error| ApiError::invalid(format!("hostname: {error}")))
}

pub(super) fn parse_origin(input: &str) -> Result<Origin, ApiError> {
    Origin::parse(input).map_err(|error| ApiError::invalid(error.to_string()))
}

/// Adds a domain. It starts unverified: people are proxied at once, bots get renders once the
/// hostname's DNS proves ownership (see `POST /api/v1/domains/{id}/verify`). A domain used only
/// through the render service (`service_only`) takes no origin: Kiln fetches its public site.
#[utoipa::path(post, path = "/domains", tag = "domains", request_body = NewDomainInput,
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 201, description = "Added", body = DomainView),
        (status = 409, description = "The hostname is registered already", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid hostname, origin or settings (an origin missing, or one given for a service-only domain that is not `https://<hostname>`), or a body of the wrong shape; \
            a hostname no one may register is `hostname_reserved` (the platform's own names: its CNAME target, \
            the dashboard's host, the render service's host and names under them), `hostname_single_label` (`localhost`) or \
            `hostname_public_suffix` (`co.uk`, `github.io`: on the Public Suffix List)", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        CallerErrors,
    ))]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(input): ApiJson<NewDomainInput>,
) -> Result<(StatusCode, axum::Json<DomainView>), ApiError> {
    let host = parse_hostname(&input.hostname)?;
    let origin = input.origin.as_deref().map(parse_origin).transpose()?;
    let settings = input
        .settings
        .unwrap_or_default()
        .apply(&DomainSettings::default())?;
    let record = domains::create_for_tenant(
        &ctx.app,
        caller.tenant_id,
        host,
        origin,
        input.service_only.unwrap_or(false),
        settings,
        &caller.actor(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(DomainView::new(&record, &ctx.cname_target)),
    ))
}

/// The account's domains, by hostname.
#[utoipa::path(get, path = "/domains", tag = "domains",
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The domains", body = DomainList),
        CallerErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
) -> Result<axum::Json<DomainList>, ApiError> {
    let records = domains::of_tenant(&ctx.app, caller.tenant_id).await?;
    let domains = records
        .iter()
        .map(|record| DomainView::new(record, &ctx.cname_target))
        .collect();
    Ok(axum::Json(DomainList { domains }))
}

/// One domain.
#[utoipa::path(get, path = "/domains/{id}", tag = "domains",
    params(("id" = Uuid, Path, description = "The domain's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The domain", body = DomainView),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<DomainView>, ApiError> {
    let record = kiln_control::domains::get(&ctx.app, caller.tenant_id, id).await?;
    Ok(axum::Json(DomainView::new(&record, &ctx.cname_target)))
}

/// Changes a domain's origin or settings. Gateways and workers see the change within a second.
#[utoipa::path(patch, path = "/domains/{id}", tag = "domains", request_body = DomainPatch,
    params(("id" = Uuid, Path, description = "The domain's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Changed", body = DomainView),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid origin or settings (a service-only domain keeps its origin, its public site), or a body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        CallerErrors,
    ))]
pub async fn update(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<DomainPatch>,
) -> Result<axum::Json<DomainView>, ApiError> {
    let current = kiln_control::domains::get(&ctx.app, caller.tenant_id, id).await?;
    let origin = patch.origin.as_deref().map(parse_origin).transpose()?;
    let settings = patch
        .settings
        .unwrap_or_default()
        .apply(&current.settings)?;
    let record = domains::update(&ctx.app, &current, origin, settings, &caller.actor()).await?;
    Ok(axum::Json(DomainView::new(&record, &ctx.cname_target)))
}

/// Removes a domain: gateways stop serving it and its cached pages are purged.
#[utoipa::path(delete, path = "/domains/{id}", tag = "domains",
    params(("id" = Uuid, Path, description = "The domain's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn delete(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    domains::delete(&ctx.app, caller.tenant_id, id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the domain's DNS now: verified when its CNAME points at the CNAME target, or
/// `_kiln-challenge.<hostname>` has a TXT record with the domain's token.
#[utoipa::path(post, path = "/domains/{id}/verify", tag = "domains",
    params(("id" = Uuid, Path, description = "The domain's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The domain after the check; `verification.last_check` says what was found", body = DomainView),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn verify(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<DomainView>, ApiError> {
    let record = domains::verify(
        &ctx.app,
        &ctx.verifier,
        &ctx.cname_target,
        caller.tenant_id,
        id,
        &caller.actor(),
    )
    .await?;
    Ok(axum::Json(DomainView::new(&record, &ctx.cname_target)))
}
