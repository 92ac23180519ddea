//! The domain pages: the list, adding one, its DNS set-up, settings and removal.

use super::format;
use super::{
    Chrome, CsrfForm, FieldErrors, Nav, PageResult, WebForm, WebUser, fail, lines, redirect_with,
    render,
};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_control::db::DomainRecord;
use kiln_control::domains::{self, DomainError};
use kiln_control::origin::Origin;
use kiln_core::{BotFamily, DomainSettings, Hostname, ResourceBlocking};
use kiln_frontdoor::Ctx;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A row of the domain list.
pub struct DomainRow {
    pub id: Uuid,
    pub hostname: String,
    pub origin: String,
    pub verified: bool,
    /// Cached pages, or `None` when Redis did not answer.
    pub pages: Option<u64>,
    /// The last seven days' cache hit ratio.
    pub hit_ratio: String,
    /// Used only through the render service (no CNAME to Kiln's edge).
    pub service_only: bool,
}

#[derive(Template)]
#[template(path = "domains.html")]
struct ListPage {
    chrome: Chrome,
    domains: Vec<DomainRow>,
    redis_down: bool,
}

#[derive(Template)]
#[template(path = "domain_new.html")]
struct NewPage {
    chrome: Chrome,
    hostname: String,
    origin: String,
    service_only: bool,
    errors: FieldErrors,
}

/// How to prove ownership of a domain, and what the last check found.
pub struct Dns {
    pub cname_target: String,
    pub txt_name: String,
    pub txt_value: String,
    pub checked: Option<String>,
    pub verified_at: Option<String>,
    pub explanation: Option<String>,
}

#[derive(Template)]
#[template(path = "domain.html")]
struct DomainPage {
    chrome: Chrome,
    domain: DomainRecord,
    dns: Dns,
    /// Where the domain's TLS certificate stands, in a sentence (none when Redis cannot say).
    certificate: Option<String>,
    pages: Option<u64>,
    form: SettingsForm,
    errors: FieldErrors,
}

/// The settings form, as sent (every field a string, so a mistyped value is shown back as typed). A
/// number field the form did not send at all (a page from before the setting existed) keeps its
/// current value; one sent empty is an error.
#[derive(Deserialize, Default)]
pub struct SettingsForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub origin: String,
    pub cache_ttl_secs: Option<String>,
    pub stale_ttl_secs: Option<String>,
    pub render_timeout_ms: Option<String>,
    pub bot_wait_ms: Option<String>,
    pub bot_rate_per_second: Option<String>,
    pub bot_rate_burst: Option<String>,
    pub device_variants: Option<String>,
    pub block_images: Option<String>,
    pub block_media: Option<String>,
    pub block_fonts: Option<String>,
    pub block_stylesheets: Option<String>,
    pub block_trackers: Option<String>,
    pub family_search: Option<String>,
    pub family_social: Option<String>,
    pub family_ai: Option<String>,
    pub family_seo: Option<String>,
    pub family_monitoring: Option<String>,
    #[serde(default)]
    pub ignored_query_params: String,
    #[serde(default)]
    pub bot_user_agents: String,
    #[serde(default)]
    pub include_paths: String,
    #[serde(default)]
    pub exclude_paths: String,
}

impl SettingsForm {
    /// A number field's text as typed (for the form's `value`).
    pub fn text(field: &Option<String>) -> &str {
        field.as_deref().unwrap_or("")
    }
}

fn checked(on: bool) -> Option<String> {
    on.then(|| "on".to_owned())
}

impl SettingsForm {
    fn of(record: &DomainRecord) -> Self {
        let s = &record.settings;
        let ResourceBlocking {
            images,
            media,
            fonts,
            stylesheets,
            trackers,
        } = s.blocking;
        SettingsForm {
            csrf: String::new(),
            origin: record.origin.clone(),
            cache_ttl_secs: Some(s.cache_ttl_secs.to_string()),
            stale_ttl_secs: Some(s.stale_ttl_secs.to_string()),
            render_timeout_ms: Some(s.render_timeout_ms.to_string()),
            bot_wait_ms: Some(s.bot_wait_ms.to_string()),
            bot_rate_per_second: Some(s.bot_rate_per_second.to_string()),
            bot_rate_burst: Some(s.bot_rate_burst.to_string()),
            device_variants: checked(s.device_variants),
            block_images: checked(images),
            block_media: checked(media),
            block_fonts: checked(fonts),
            block_stylesheets: checked(stylesheets),
            block_trackers: checked(trackers),
            family_search: checked(s.bot_families.contains(&BotFamily::Search)),
            family_social: checked(s.bot_families.contains(&BotFamily::Social)),
            family_ai: checked(s.bot_families.contains(&BotFamily::Ai)),
            family_seo: checked(s.bot_families.contains(&BotFamily::Seo)),
            family_monitoring: checked(s.bot_families.contains(&BotFamily::Monitoring)),
            ignored_query_params: s.ignored_query_params.join("\n"),
            bot_user_agents: s.bot_user_agents.join("\n"),
            include_paths: s.include_paths.join("\n"),
            exclude_paths: s.exclude_paths.join("\n"),
        }
    }

    /// The settings the form describes, checked as the REST API checks them; each problem is
    /// reported against its field.
    fn settings(&self, base: &DomainSettings, errors: &mut FieldErrors) -> Option<DomainSettings> {
        let mut number = |field: &'static str, text: &Option<String>, current: u64| match text {
            None => current,
            Some(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
                errors.add(field, "must be a whole number");
                0
            }),
        };
        let settings = DomainSettings {
            cache_ttl_secs: number("cache_ttl_secs", &self.cache_ttl_secs, base.cache_ttl_secs),
            stale_ttl_secs: number("stale_ttl_secs", &self.stale_ttl_secs, base.stale_ttl_secs),
            render_timeout_ms: number(
                "render_timeout_ms",
                &self.render_timeout_ms,
                base.render_timeout_ms,
            ),
            bot_wait_ms: number("bot_wait_ms", &self.bot_wait_ms, base.bot_wait_ms),
            bot_rate_per_second: number(
                "bot_rate_per_second",
                &self.bot_rate_per_second,
                base.bot_rate_per_second,
            ),
            bot_rate_burst: number("bot_rate_burst", &self.bot_rate_burst, base.bot_rate_burst),
            device_variants: self.device_variants.is_some(),
            blocking: ResourceBlocking {
                images: self.block_images.is_some(),
                media: self.block_media.is_some(),
                fonts: self.block_fonts.is_some(),
                stylesheets: self.block_stylesheets.is_some(),
                trackers: self.block_trackers.is_some(),
            },
            ignored_query_params: lines(&self.ignored_query_params),
            bot_families: [
                (BotFamily::Search, &self.family_search),
                (BotFamily::Social, &self.family_social),
                (BotFamily::Ai, &self.family_ai),
                (BotFamily::Seo, &self.family_seo),
                (BotFamily::Monitoring, &self.family_monitoring),
            ]
            .into_iter()
            .filter_map(|(family, ticked)| ticked.is_some().then_some(family))
            .collect(),
            bot_user_agents: lines(&self.bot_user_agents),
            include_paths: lines(&self.include_paths),
            exclude_paths: lines(&self.exclude_paths),
        };
        if !errors.is_empty() {
            return None;
        }
        match settings.validate() {
            Ok(()) => Some(settings),
            Err(error) => {
                // `bot_user_agents[2]` is line 3 of the `bot_user_agents` box.
                let (field, line) = match error.field.split_once('[') {
                    Some((field, rest)) => (
                        field,
                        rest.trim_end_matches(']')
                            .parse::<usize>()
                            .ok()
                            .map(|i| i + 1),
                    ),
                    None => (error.field.as_str(), None),
                };
                let message = match line {
                    Some(line) => format!("line {line} {}", error.rule),
                    None => error.rule.clone(),
                };
                errors.add(field_name(field), message);
                None
            }
        }
    }
}

/// The form's name for a settings field (the names are the same; this keeps them `'static`).
fn field_name(field: &str) -> &'static str {
    const FIELDS: [&str; 10] = [
        "cache_ttl_secs",
        "stale_ttl_secs",
        "render_timeout_ms",
        "bot_wait_ms",
        "bot_rate_per_second",
        "bot_rate_burst",
        "ignored_query_params",
        "bot_user_agents",
        "include_paths",
        "exclude_paths",
    ];
    FIELDS
        .into_iter()
        .find(|name| *name == field)
        .unwrap_or("form")
}

pub(super) async fn own_domain(
    ctx: &Ctx,
    user: &WebUser,
    id: Uuid,
) -> Result<DomainRecord, Response> {
    domains::get(&ctx.app, user.tenant_id, id)
        .await
        .map_err(fail)
}

/// The domain's cached page count, or `None` when Redis does not answer (the page still shows).
pub(super) async fn page_count(ctx: &Ctx, id: Uuid) -> Option<u64> {
    match kiln_control::cache::page_count(&ctx.app, id).await {
        Ok(count) => Some(count),
        Err(error) => {
            tracing::warn!(error = %kiln_control::error_chain(&error), "cannot count cached pages");
            None
        }
    }
}

pub async fn list(State(ctx): State<Ctx>, user: WebUser) -> PageResult {
    let records = domains::of_tenant(&ctx.app, user.tenant_id)
        .await
        .map_err(fail)?;
    let ratios = kiln_control::activity::hit_ratios(&ctx.app, user.tenant_id)
        .await
        .map_err(fail)?;
    let counts = futures::future::join_all(records.iter().map(|r| page_count(&ctx, r.id))).await;
    let redis_down = counts.iter().any(Option::is_none);
    let domains = records
        .into_iter()
        .zip(counts)
        .map(|(record, pages)| {
            let ratio = ratios
                .get(&record.id)
                .filter(|(_, lookups)| *lookups > 0)
                .map(|(hits, lookups)| *hits as f64 / *lookups as f64);
            DomainRow {
                id: record.id,
                hostname: record.host.to_string(),
                origin: record.origin,
                verified: record.verified,
                pages,
                hit_ratio: format::percent(ratio),
                service_only: record.service_only,
            }
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ListPage {
            chrome: user.chrome(Nav::Domains),
            domains,
            redis_down,
        },
    ))
}

pub async fn new_page(user: WebUser) -> Response {
    render(
        StatusCode::OK,
        &NewPage {
            chrome: user.chrome(Nav::Domains),
            hostname: String::new(),
            origin: String::new(),
            service_only: false,
            errors: FieldErrors::default(),
        },
    )
}

#[derive(Deserialize)]
pub struct NewDomainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    origin: String,
    /// The checkbox: present (whatever its value) when ticked.
    service_only: Option<String>,
}

pub async fn create(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<NewDomainForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let mut errors = FieldErrors::default();
    let host = Hostname::parse(form.hostname.trim())
        .map_err(|error| errors.add("hostname", error.to_string()))
        .ok();
    let service_only = form.service_only.is_some();
    // A blank origin is none given: a service-only domain needs none, and for any other
    // domain the control plane says that one is required.
    let origin = match form.origin.trim() {
        "" => Some(None),
        origin => Origin::parse(origin)
            .map(Some)
            .map_err(|error| errors.add("origin", error.to_string()))
            .ok(),
    };
    if let (Some(host), Some(origin)) = (host, origin) {
        let created = domains::create_for_tenant(
            &ctx.app,
            user.tenant_id,
            host,
            origin,
            service_only,
            DomainSettings::default(),
            &user.actor,
        )
        .await;
        match created {
            Ok(record) => {
                let message = format!(
                    "Added {}. Create the DNS record below to prove it is yours; bots get \
                     rendered pages once it is verified.",
                    record.host
                );
                return Ok(redirect_with(&format!("/domains/{}", record.id), &message));
            }
            Err(
                error @ (DomainError::Conflict(_)
                | DomainError::ConflictDiffers { .. }
                | DomainError::Hostname(_)),
            ) => {
                errors.add("hostname", error.to_string());
            }
            Err(DomainError::Origin(error)) => {
                errors.add("origin", kiln_control::error_chain(&error))
            }
            Err(error @ (DomainError::OriginRequired | DomainError::ServiceOnlyOrigin { .. })) => {
                errors.add("origin", error.to_string())
            }
            Err(error) => return Err(fail(error)),
        }
    }
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(render(
        status,
        &NewPage {
            chrome: user.chrome(Nav::Domains),
            hostname: form.hostname,
            origin: form.origin,
            service_only,
            errors,
        },
    ))
}

fn dns(ctx: &Ctx, record: &DomainRecord) -> Dns {
    let explanation = record
        .verification_result
        .as_ref()
        .and_then(|result| result.get("explanation"))
        .and_then(|text| text.as_str())
        .map(str::to_owned);
    let now = OffsetDateTime::now_utc();
    Dns {
        cname_target: ctx.cname_target.to_string(),
        txt_name: domains::challenge_name(&record.host),
        txt_value: record.verification_token.clone(),
        checked: record
            .verification_checked_at
            .map(|at| format::relative(at, now)),
        verified_at: record.verified_at.map(format::when),
        explanation,
    }
}

/// The domain's certificate as the certificate manager (`kiln-acme`) recorded it, for people.
async fn certificate_text(ctx: &Ctx, record: &DomainRecord) -> Option<String> {
    use kiln_control::certificates::CertificateState;
    let at = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .map(format::when)
    };
    let status = kiln_control::certificates::status(&ctx.app, record)
        .await
        .ok()?;
    Some(match status {
        None if record.verified => "HTTPS: a certificate will be requested shortly.".to_owned(),
        None => "HTTPS: a certificate is requested once the domain is verified.".to_owned(),
        Some(status) => match status.state {
            CertificateState::Ordering => "HTTPS: a certificate is being requested.".to_owned(),
            CertificateState::Issued => format!(
                "HTTPS: served with a certificate valid until {} (renewed automatically).",
                status.not_after.and_then(at).unwrap_or_default()
            ),
            CertificateState::Failed => format!(
                "HTTPS: the last certificate request failed ({}); next try {}.",
                status.last_error.unwrap_or_default(),
                status.retry_at.and_then(at).unwrap_or_default()
            ),
        },
    })
}

async fn domain_page(
    ctx: &Ctx,
    user: &WebUser,
    domain: DomainRecord,
    form: SettingsForm,
    errors: FieldErrors,
    status: StatusCode,
) -> Response {
    let pages = page_count(ctx, domain.id).await;
    let certificate = certificate_text(ctx, &domain).await;
    render(
        status,
        &DomainPage {
            chrome: user.chrome(Nav::Domains),
            dns: dns(ctx, &domain),
            certificate,
            domain,
            pages,
            form,
            errors,
        },
    )
}

pub async fn show(State(ctx): State<Ctx>, user: WebUser, Path(id): Path<Uuid>) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let form = SettingsForm::of(&domain);
    Ok(domain_page(
        &ctx,
        &user,
        domain,
        form,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await)
}

pub async fn update(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<SettingsForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    let mut errors = FieldErrors::default();
    let origin = Origin::parse(form.origin.trim())
        .map_err(|error| errors.add("origin", error.to_string()))
        .ok();
    let settings = form.settings(&domain.settings, &mut errors);
    if let (Some(origin), Some(settings)) = (origin, settings) {
        match domains::update(&ctx.app, &domain, Some(origin), settings, &user.actor).await {
            Ok(record) => {
                let message = format!(
                    "Saved the settings of {}. Gateways use them within a second.",
                    record.host
                );
                return Ok(redirect_with(&format!("/domains/{id}"), &message));
            }
            Err(DomainError::Origin(error)) => {
                errors.add("origin", kiln_control::error_chain(&error))
            }
            Err(error @ DomainError::ServiceOnlyOrigin { .. }) => {
                errors.add("origin", error.to_string())
            }
            Err(error) => return Err(fail(error)),
        }
    }
    Ok(domain_page(
        &ctx,
        &user,
        domain,
        form,
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await)
}

pub async fn verify(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<CsrfForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let record = domains::verify(
        &ctx.app,
        &ctx.verifier,
        &ctx.cname_target,
        user.tenant_id,
        id,
        &user.actor,
    )
    .await
    .map_err(fail)?;
    let message = if record.verified {
        format!("{} is verified: bots now get rendered pages.", record.host)
    } else {
        format!(
            "{} is not verified yet. {}",
            record.host,
            dns(&ctx, &record).explanation.unwrap_or_default()
        )
    };
    Ok(redirect_with(&format!("/domains/{id}"), &message))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

pub async fn delete(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<DeleteForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    if !form
        .confirm
        .trim()
        .eq_ignore_ascii_case(domain.host.as_str())
    {
        let mut errors = FieldErrors::default();
        errors.add(
            "confirm",
            format!("type {} to confirm the removal", domain.host),
        );
        let settings = SettingsForm::of(&domain);
        return Ok(domain_page(
            &ctx,
            &user,
            domain,
            settings,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await);
    }
    let record = domains::delete(&ctx.app, user.tenant_id, id, &user.actor)
        .await
        .map_err(fail)?;
    Ok(redirect_with(
        "/domains",
        &format!(
            "Removed {}: bots and people on it are no longer served, and its cache is purged.",
            record.host
        ),
    ))
}
