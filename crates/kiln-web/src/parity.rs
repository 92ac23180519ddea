//! "Compare with people": parity checks of a domain's pages, beside "View as bot". A form files a
//! check; the check's page waits for it (refreshing itself) and then shows how much the snapshot
//! bots get differs from the page people see, as a picture first: the score on a coloured gauge,
//! the three screenshots, the text and the fields that differ.

use super::cache::{PageForm, PageQuery};
use super::domains::own_domain;
use super::format;
use super::{Chrome, FieldErrors, Nav, PageResult, WebForm, WebUser, fail, redirect_with, render};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use kiln_control::cache::shorten_to;
use kiln_control::db::DomainRecord;
use kiln_control::from_millis;
use kiln_control::parity::score_of;
use kiln_control::parity::{self, ParityError};
use kiln_core::DeviceClass;
use kiln_core::parity::{ParityCheck, ParityImage, ParityReport, ParityState};
use kiln_frontdoor::Ctx;
use kiln_frontdoor::png_response;
use time::OffsetDateTime;
use uuid::Uuid;

/// How many of the domain's checks the page lists.
const RECENT_LISTED: usize = 10;
/// How much of a differing field's value (a JSON-LD block can be kilobytes) the table shows.
const FIELD_VALUE_CHARS: usize = 300;
/// Scores (as a share of the picture, in percent) under which a check looks the same, and under
/// which it only differs a little.
const GOOD_BELOW_PERCENT: f64 = 0.5;
const FAIR_BELOW_PERCENT: f64 = 5.0;
/// The gauge's width in its SVG's units.
const GAUGE_WIDTH: f64 = 300.0;

/// A score as the page draws it.
pub struct Gauge {
    /// `0 %`, `< 0.01 %`, `0.37 %`, `2.4 %`, `37 %`.
    pub percent: String,
    /// `good` (under 0.5 %), `fair` (under 5 %) or `poor`: the colour.
    pub level: &'static str,
    /// What the level means, in words.
    pub verdict: &'static str,
    /// How much of the gauge is filled, in its SVG's units (0–300).
    pub fill: String,
}

impl Gauge {
    /// The gauge for `score` (0–1). Its three zones are equally wide, each spanning its own range
    /// (0–0.5 %, 0.5–5 %, 5–100 %), so that the small scores that matter most stay visible.
    pub fn of(score: f64) -> Self {
        let percent = score_of(score) * 100.0;
        let (level, verdict, zone, from, to) = if percent < GOOD_BELOW_PERCENT {
            ("good", "Looks the same", 0.0, 0.0, GOOD_BELOW_PERCENT)
        } else if percent < FAIR_BELOW_PERCENT {
            (
                "fair",
                "Small differences",
                1.0,
                GOOD_BELOW_PERCENT,
                FAIR_BELOW_PERCENT,
            )
        } else {
            ("poor", "Looks different", 2.0, FAIR_BELOW_PERCENT, 100.0)
        };
        let third = GAUGE_WIDTH / 3.0;
        let fill = third * zone + third * ((percent - from) / (to - from)).clamp(0.0, 1.0);
        Gauge {
            percent: percent_text(percent),
            level,
            verdict,
            fill: format!("{fill:.1}"),
        }
    }
}

/// A percentage with as many digits as it needs to be told apart from its neighbours.
fn percent_text(percent: f64) -> String {
    if percent == 0.0 {
        "0 %".to_owned()
    } else if percent < 0.01 {
        "< 0.01 %".to_owned()
    } else if percent < 1.0 {
        format!("{percent:.2} %")
    } else if percent < 10.0 {
        format!("{percent:.1} %")
    } else {
        format!("{percent:.0} %")
    }
}

/// What people call a field a crawler reads.
fn field_name(field: &str) -> String {
    match field {
        "title" => "Title".to_owned(),
        "description" => "Description".to_owned(),
        "canonical" => "Canonical link".to_owned(),
        "headings" => "Headings".to_owned(),
        "links" => "Links".to_owned(),
        "json_ld" => "JSON-LD".to_owned(),
        other => other.to_owned(),
    }
}

fn device_name(device: DeviceClass) -> &'static str {
    match device {
        DeviceClass::Desktop => "Desktop",
        DeviceClass::Mobile => "Phone",
    }
}

fn state_name(state: ParityState) -> &'static str {
    match state {
        ParityState::Queued => "queued",
        ParityState::Running => "running",
        ParityState::Done => "done",
        ParityState::Failed => "failed",
    }
}

/// One of a check's pictures, as the page links it.
pub struct Shot {
    pub title: &'static str,
    pub alt: &'static str,
    pub href: String,
}

pub struct FieldRow {
    pub name: String,
    pub live: Vec<String>,
    pub snapshot: Vec<String>,
}

pub struct ReportView {
    pub gauge: Gauge,
    /// `1,234 of 1,000,000 pixels`.
    pub pixels: String,
    pub shots: Vec<Shot>,
    pub missing: Vec<String>,
    pub missing_total: u32,
    /// Lines missing beyond those listed.
    pub missing_more: u32,
    pub extra: Vec<String>,
    pub extra_total: u32,
    pub extra_more: u32,
    pub fields: Vec<FieldRow>,
}

impl ReportView {
    fn new(report: &ParityReport, picture_base: &str) -> Self {
        let visual = &report.visual;
        let area = u64::from(visual.width) * u64::from(visual.height);
        let text = &report.text;
        let clip = |values: &[String]| {
            values
                .iter()
                .map(|value| shorten_to(value, FIELD_VALUE_CHARS))
                .collect()
        };
        let shot = |image: ParityImage, title, alt| Shot {
            title,
            alt,
            href: format!("{picture_base}/{}.png", image.as_str()),
        };
        ReportView {
            gauge: Gauge::of(visual.score),
            pixels: format!(
                "{} of {} pixels",
                thousands(visual.differing_pixels),
                thousands(area)
            ),
            shots: vec![
                shot(
                    ParityImage::Live,
                    "People see",
                    "The live page, as a person's browser shows it",
                ),
                shot(
                    ParityImage::Snapshot,
                    "Bots get",
                    "The snapshot Kiln serves bots",
                ),
                shot(
                    ParityImage::Diff,
                    "Where they differ",
                    "Differing pixels in red over a faded copy of the live page",
                ),
            ],
            missing_total: text.missing_total,
            missing_more: text.missing_total.saturating_sub(text.missing.len() as u32),
            missing: text.missing.clone(),
            extra_total: text.extra_total,
            extra_more: text.extra_total.saturating_sub(text.extra.len() as u32),
            extra: text.extra.clone(),
            fields: report
                .fields
                .iter()
                .map(|field| FieldRow {
                    name: field_name(&field.field),
                    live: clip(&field.only_live),
                    snapshot: clip(&field.only_snapshot),
                })
                .collect(),
        }
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A check as its page shows it.
pub struct CheckView {
    pub id: String,
    pub url: String,
    pub device: &'static str,
    pub state: &'static str,
    /// Queued or running: the page refreshes itself until it is not.
    pub pending: bool,
    pub requested: String,
    pub requested_at: String,
    /// `live 1.2 s, snapshot 850 ms`, once done.
    pub timings: Option<String>,
    pub error: Option<String>,
    pub report: Option<ReportView>,
}

impl CheckView {
    fn new(check: &ParityCheck, domain: &DomainRecord, now: OffsetDateTime) -> Self {
        let requested = from_millis(check.requested_at);
        let picture_base = format!("/domains/{}/parity/{}", domain.id, check.id);
        let timings = match (check.live_ms, check.snapshot_ms) {
            (Some(live), Some(snapshot)) => Some(format!(
                "live page {}, snapshot {}",
                format::millis(live),
                format::millis(snapshot)
            )),
            _ => None,
        };
        CheckView {
            id: check.id.clone(),
            url: check.url.clone(),
            device: device_name(check.device),
            state: state_name(check.state),
            pending: matches!(check.state, ParityState::Queued | ParityState::Running),
            requested: format::relative(requested, now),
            requested_at: format::when(requested),
            timings,
            error: check.error.clone(),
            report: (check.state == ParityState::Done)
                .then_some(check.report.as_ref())
                .flatten()
                .map(|report| ReportView::new(report, &picture_base)),
        }
    }
}

/// A recent check, as the list shows it.
pub struct RecentRow {
    pub id: String,
    pub url: String,
    pub device: &'static str,
    pub when: String,
    pub state: &'static str,
    /// The score, once done.
    pub gauge: Option<Gauge>,
}

#[derive(Template)]
#[template(path = "parity.html")]
struct ParityPage {
    chrome: Chrome,
    domain: DomainRecord,
    url: String,
    mobile: bool,
    errors: FieldErrors,
    check: Option<CheckView>,
    recent: Vec<RecentRow>,
    /// Why the list is missing, when Redis did not answer.
    recent_error: Option<String>,
}

/// What the page shows besides the form.
struct Shown {
    url: String,
    mobile: bool,
    errors: FieldErrors,
    check: Option<CheckView>,
    status: StatusCode,
}

async fn parity_page(ctx: &Ctx, user: &WebUser, domain: DomainRecord, shown: Shown) -> Response {
    let now = OffsetDateTime::now_utc();
    let (recent, recent_error) = match parity::recent(
        &ctx.app,
        user.tenant_id,
        Some(domain.id),
        RECENT_LISTED,
    )
    .await
    {
        Ok(checks) => {
            let rows = checks
                .iter()
                .map(|check| RecentRow {
                    id: check.id.clone(),
                    url: check.url.clone(),
                    device: device_name(check.device),
                    when: format::relative(from_millis(check.requested_at), now),
                    state: state_name(check.state),
                    gauge: check
                        .report
                        .as_ref()
                        .filter(|_| check.state == ParityState::Done)
                        .map(|report| Gauge::of(report.visual.score)),
                })
                .collect();
            (rows, None)
        }
        Err(error) => {
            tracing::warn!(error = %kiln_control::error_chain(&error), "cannot list parity checks");
            (
                Vec::new(),
                Some(
                    "Redis is not answering, so recent checks cannot be listed right now."
                        .to_owned(),
                ),
            )
        }
    };
    render(
        shown.status,
        &ParityPage {
            chrome: user.chrome(Nav::Domains),
            domain,
            url: shown.url,
            mobile: shown.mobile,
            errors: shown.errors,
            check: shown.check,
            recent,
            recent_error,
        },
    )
}

/// The compare tab: the form and the domain's recent checks.
pub async fn page(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let url = query.url_or_home(&domain);
    let shown = Shown {
        url,
        mobile: false,
        errors: FieldErrors::default(),
        check: None,
        status: StatusCode::OK,
    };
    Ok(parity_page(&ctx, &user, domain, shown).await)
}

/// Files a check and sends the browser to its page. A POST with a CSRF token, since each one costs
/// renders.
pub async fn file(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<PageForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let domain = own_domain(&ctx, &user, id).await?;
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut retry_after = None;
    if let Some(url) = form.url_on(&domain, &mut errors) {
        let device = form.device_class();
        match parity::file(&ctx.app, &ctx.queue, user.tenant_id, url, device).await {
            Ok(check) => {
                return Ok(redirect_with(
                    &format!("/domains/{id}/parity/{}", check.id),
                    "Checking: the page is loaded as people see it and as bots get it, then compared.",
                ));
            }
            Err(error @ (ParityError::InvalidUrl(_) | ParityError::NotVerified(_))) => {
                errors.add("url", error.to_string());
            }
            Err(error @ ParityError::BudgetExhausted { .. }) => {
                status = StatusCode::TOO_MANY_REQUESTS;
                retry_after = error.retry_after_secs();
                errors.add("url", error.to_string());
            }
            Err(error) => return Err(fail(error)),
        }
    }
    let shown = Shown {
        mobile: form.mobile(),
        url: form.url,
        errors,
        check: None,
        status,
    };
    let mut response = parity_page(&ctx, &user, domain, shown).await;
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}

/// The domain's check `check`, or the not-found page (another domain's check, or another
/// tenant's, is not found).
async fn own_check(
    ctx: &Ctx,
    user: &WebUser,
    domain: &DomainRecord,
    check: Uuid,
) -> Result<ParityCheck, Response> {
    let check = parity::check(&ctx.app, user.tenant_id, check)
        .await
        .map_err(fail)?;
    if check.domain_id != domain.id.to_string() {
        return Err(fail(ParityError::NotFound));
    }
    Ok(check)
}

/// A check: waiting for it, why it failed, or what differs.
pub async fn show(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path((id, check_id)): Path<(Uuid, Uuid)>,
) -> PageResult {
    let domain = own_domain(&ctx, &user, id).await?;
    let check = own_check(&ctx, &user, &domain, check_id).await?;
    let shown = Shown {
        url: check.url.clone(),
        mobile: check.device == DeviceClass::Mobile,
        errors: FieldErrors::default(),
        check: Some(CheckView::new(&check, &domain, OffsetDateTime::now_utc())),
        status: StatusCode::OK,
    };
    Ok(parity_page(&ctx, &user, domain, shown).await)
}

/// One of a check's pictures (`live.png`, `snapshot.png`, `diff.png`), for the owner's session.
pub async fn picture(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path((id, check_id, file)): Path<(Uuid, Uuid, String)>,
) -> PageResult {
    let image = file
        .strip_suffix(".png")
        .and_then(ParityImage::parse)
        .ok_or_else(|| fail(ParityError::NotFound))?;
    let domain = own_domain(&ctx, &user, id).await?;
    own_check(&ctx, &user, &domain, check_id).await?;
    let png = parity::image(&ctx.app, user.tenant_id, check_id, image)
        .await
        .map_err(fail)?;
    Ok(png_response(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_coloured_by_how_much_differs_and_drawn_on_three_equal_zones() {
        let check = |score: f64, percent: &str, level: &str, fill: &str| {
            let gauge = Gauge::of(score);
            assert_eq!(
                (gauge.percent.as_str(), gauge.level, gauge.fill.as_str()),
                (percent, level, fill),
                "{score}"
            );
        };
        check(0.0, "0 %", "good", "0.0");
        check(0.000_05, "< 0.01 %", "good", "1.0");
        check(0.0025, "0.25 %", "good", "50.0");
        check(0.0049, "0.49 %", "good", "98.0");
        check(0.005, "0.50 %", "fair", "100.0");
        check(0.0275, "2.8 %", "fair", "150.0");
        check(0.05, "5.0 %", "poor", "200.0");
        check(0.525, "52 %", "poor", "250.0");
        check(1.0, "100 %", "poor", "300.0");
        check(7.0, "100 %", "poor", "300.0");
        check(f64::NAN, "0 %", "good", "0.0");
    }

    #[test]
    fn big_numbers_are_grouped_by_thousands() {
        let check = |n: u64, expected: &str| assert_eq!(thousands(n), expected, "{n}");
        check(0, "0");
        check(999, "999");
        check(1000, "1,000");
        check(123_456, "123,456");
        check(1_234_567, "1,234,567");
    }
}
