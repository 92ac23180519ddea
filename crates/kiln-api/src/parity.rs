//! `/api/v1/parity…`: parity checks, which compare the page people see with the snapshot bots get.

use crate::cache::Device;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::page::PageSize;
use crate::responses::{CallerErrors, JsonBodyErrors, QueryErrors};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_control::from_millis;
use kiln_control::parity;
use kiln_control::parity::score_of;
use kiln_core::DeviceClass;
use kiln_core::parity::{FieldDiff, ParityCheck, ParityImage, ParityReport, ParityState};
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What to compare.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParityRequest {
    /// An absolute URL on one of the account's verified domains, on a path the domain renders.
    #[schema(example = "https://shop.example.com/products/3")]
    pub url: String,
    /// The width both pages are loaded at: `desktop` (default) or `mobile`.
    #[schema(inline)]
    pub device: Option<Device>,
}

/// Where a check is in its life.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Waiting for a worker.
    Queued,
    /// A worker is loading the pages.
    Running,
    /// Compared: `report` is there, and the pictures.
    Done,
    /// Could not be compared: `error` says why.
    Failed,
}

impl From<ParityState> for CheckState {
    fn from(state: ParityState) -> Self {
        match state {
            ParityState::Queued => CheckState::Queued,
            ParityState::Running => CheckState::Running,
            ParityState::Done => CheckState::Done,
            ParityState::Failed => CheckState::Failed,
        }
    }
}

/// A parity check: the page at `url`, as a person's browser shows it, against the snapshot Kiln
/// serves bots.
#[derive(Serialize, ToSchema)]
pub struct ParityView {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub domain_id: String,
    /// The URL compared, as Kiln normalises it.
    pub url: String,
    #[schema(example = "desktop")]
    pub device: String,
    pub state: CheckState,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Why the check failed, when it did.
    pub error: Option<String>,
    /// What differs; there once the check is done.
    pub report: Option<ReportView>,
    /// How long loading the live page and the snapshot took, once done.
    pub live_ms: Option<u64>,
    pub snapshot_ms: Option<u64>,
    /// Where the pictures are (PNG), once the check is done.
    pub images: Option<ImageLinks>,
}

/// The comparison.
#[derive(Serialize, ToSchema)]
pub struct ReportView {
    pub visual: VisualView,
    pub text: TextView,
    /// What a crawler reads that differs (`title`, `description`, `canonical`, `headings`,
    /// `links`, `json_ld`); empty when all of it agrees.
    pub fields: Vec<FieldView>,
}

/// How the two screenshots compare.
#[derive(Serialize, ToSchema)]
pub struct VisualView {
    /// The share of pixels that differ: 0 for the same picture, 1 for nothing alike.
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.012)]
    pub score: f64,
    pub differing_pixels: u64,
    /// The compared area in pixels (the shorter screenshot padded with white).
    pub width: u32,
    pub height: u32,
    /// Each page's document height in CSS pixels.
    pub live_height: u32,
    pub snapshot_height: u32,
}

/// Text a person sees that the snapshot lacks, and the reverse, line by line.
#[derive(Serialize, ToSchema)]
pub struct TextView {
    /// Lines of the live page missing from the snapshot (the first 50).
    pub missing: Vec<String>,
    /// Lines only the snapshot has (the first 50).
    pub extra: Vec<String>,
    /// How many lines are missing, and extra, in all.
    pub missing_total: u32,
    pub extra_total: u32,
    /// Characters of text (whitespace left out) on each side.
    pub live_chars: u32,
    pub snapshot_chars: u32,
}

/// One thing a crawler reads that differs.
#[derive(Serialize, ToSchema)]
pub struct FieldView {
    #[schema(example = "title")]
    pub field: String,
    /// Values only the live page has (for a single value such as the title: the live page's).
    pub only_live: Vec<String>,
    /// Values only the snapshot has (for a single value: the snapshot's).
    pub only_snapshot: Vec<String>,
}

/// The pictures of a done check.
#[derive(Serialize, ToSchema)]
pub struct ImageLinks {
    /// The live page, as a person sees it.
    pub live: String,
    /// The snapshot, as bots get it.
    pub snapshot: String,
    /// Where they differ: differing pixels in red over a faded copy of the live page.
    pub diff: String,
}

impl From<&ParityReport> for ReportView {
    fn from(report: &ParityReport) -> Self {
        let visual = &report.visual;
        let text = &report.text;
        ReportView {
            visual: VisualView {
                score: score_of(visual.score),
                differing_pixels: visual.differing_pixels,
                width: visual.width,
                height: visual.height,
                live_height: visual.live_height,
                snapshot_height: visual.snapshot_height,
            },
            text: TextView {
                missing: text.missing.clone(),
                extra: text.extra.clone(),
                missing_total: text.missing_total,
                extra_total: text.extra_total,
                live_chars: text.live_chars,
                snapshot_chars: text.snapshot_chars,
            },
            fields: report.fields.iter().map(FieldView::from).collect(),
        }
    }
}

impl From<&FieldDiff> for FieldView {
    fn from(field: &FieldDiff) -> Self {
        FieldView {
            field: field.field.clone(),
            only_live: field.only_live.clone(),
            only_snapshot: field.only_snapshot.clone(),
        }
    }
}

impl From<&ParityCheck> for ParityView {
    fn from(check: &ParityCheck) -> Self {
        let images = (check.state == ParityState::Done).then(|| {
            let link = |image: ParityImage| image_path(&check.id, image);
            ImageLinks {
                live: link(ParityImage::Live),
                snapshot: link(ParityImage::Snapshot),
                diff: link(ParityImage::Diff),
            }
        });
        ParityView {
            id: check.id.clone(),
            domain_id: check.domain_id.clone(),
            url: check.url.clone(),
            device: check.device.as_str().to_owned(),
            state: check.state.into(),
            requested_at: from_millis(check.requested_at),
            finished_at: check.finished_at.map(from_millis),
            error: check.error.clone(),
            report: check.report.as_ref().map(ReportView::from),
            live_ms: check.live_ms,
            snapshot_ms: check.snapshot_ms,
            images,
        }
    }
}

fn check_path(id: &str) -> String {
    format!("{}/parity/{id}", crate::PREFIX)
}

fn image_path(id: &str, image: ParityImage) -> String {
    format!("{}/images/{}", check_path(id), image.as_str())
}

/// Compares the page at `url`, as a person's browser shows it, with the snapshot Kiln serves bots:
/// how much the two pictures differ, text a person sees that the snapshot lacks (and the reverse),
/// and what a crawler reads that differs (title, description, canonical link, headings, links,
/// JSON-LD). Returns at once with the check, `queued`; follow its `Location`. A check counts
/// against the account's render budget while it is queued or running.
#[utoipa::path(post, path = "/parity", tag = "parity", request_body = ParityRequest,
    operation_id = "file_parity_check",
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 202, description = "Queued", body = ParityView,
            headers(("Location" = String, description = "The check: /api/v1/parity/{id}"))),
        (status = 409, description = "The domain is not verified", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid request, a URL that is not on the account's domains, or a path the domain does not render", body = kiln_frontdoor::ErrorBody),
        (status = 429, description = "Every render the account may have under way is taken (`render_budget_exhausted`); nothing was queued", body = kiln_frontdoor::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a place may be free"))),
        (status = 503, description = "Redis or the parity queue is unavailable", body = kiln_frontdoor::ErrorBody),
        JsonBodyErrors,
        CallerErrors,
    ))]
pub async fn file(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(input): ApiJson<ParityRequest>,
) -> Result<Response, ApiError> {
    let device = DeviceClass::from(input.device.unwrap_or(Device::Desktop));
    let check = parity::file(&ctx.app, &ctx.queue, caller.tenant_id, &input.url, device).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, check_path(&check.id))],
        axum::Json(ParityView::from(&check)),
    )
        .into_response())
}

/// A parity check, in whatever state it is: `queued` and `running` ones are worth asking again
/// in a few seconds.
#[utoipa::path(get, path = "/parity/{id}", tag = "parity",
    operation_id = "get_parity_check",
    params(("id" = Uuid, Path, description = "The check's id")),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The check", body = ParityView),
        (status = 404, description = "No such check in this account (checks are kept a week)", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "Redis is unavailable", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<ParityView>, ApiError> {
    let check = parity::check(&ctx.app, caller.tenant_id, id).await?;
    Ok(axum::Json(ParityView::from(&check)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ParityQuery {
    /// Checks per response (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub limit: Option<u32>,
}

const CHECKS_PER_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};

#[derive(Serialize, ToSchema)]
pub struct ParityList {
    /// Newest first.
    pub checks: Vec<ParityView>,
}

/// The account's recent parity checks, newest first (the last 100 of the past week at most).
#[utoipa::path(get, path = "/parity", tag = "parity", params(ParityQuery),
    operation_id = "list_parity_checks",
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The checks", body = ParityList),
        (status = 503, description = "Redis is unavailable", body = kiln_frontdoor::ErrorBody),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ParityQuery>,
) -> Result<axum::Json<ParityList>, ApiError> {
    let limit = CHECKS_PER_PAGE.of(query.limit)?;
    let checks = parity::recent(&ctx.app, caller.tenant_id, None, limit as usize).await?;
    Ok(axum::Json(ParityList {
        checks: checks.iter().map(ParityView::from).collect(),
    }))
}

/// A picture of a check.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Image {
    /// The live page, as a person sees it.
    Live,
    /// The snapshot, as bots get it.
    Snapshot,
    /// Where they differ.
    Diff,
}

impl From<Image> for ParityImage {
    fn from(image: Image) -> Self {
        match image {
            Image::Live => ParityImage::Live,
            Image::Snapshot => ParityImage::Snapshot,
            Image::Diff => ParityImage::Diff,
        }
    }
}

/// A PNG picture's bytes. (For the OpenAPI document only.)
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[expect(
    dead_code,
    reason = "described, never built: the handler sends the bytes as they are"
)]
pub struct Png(Vec<u8>);

/// A check's picture, as a PNG: the live page, the snapshot, or where they differ (differing
/// pixels in red over a faded copy of the live page). There once the check is done.
#[utoipa::path(get, path = "/parity/{id}/images/{image}", tag = "parity",
    operation_id = "get_parity_image",
    params(
        ("id" = Uuid, Path, description = "The check's id"),
        ("image" = inline(Image), Path, description = "`live`, `snapshot` or `diff`"),
    ),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The picture", content_type = "image/png", body = Png),
        (status = 404, description = "No such check in this account, or it is not done", body = kiln_frontdoor::ErrorBody),
        (status = 503, description = "Redis is unavailable", body = kiln_frontdoor::ErrorBody),
        CallerErrors,
    ))]
pub async fn image(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiPath((id, image)): ApiPath<(Uuid, Image)>,
) -> Result<Response, ApiError> {
    let png = parity::image(&ctx.app, caller.tenant_id, id, image.into()).await?;
    Ok(kiln_frontdoor::png_response(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_check_links_its_pictures_and_a_pending_one_does_not() {
        let mut check = ParityCheck {
            id: "0190a0b0-0000-7000-8000-000000000001".to_owned(),
            tenant_id: "t".to_owned(),
            domain_id: "d".to_owned(),
            url: "https://shop.example/".to_owned(),
            device: DeviceClass::Mobile,
            state: ParityState::Queued,
            requested_at: 1_700_000_000_000,
            finished_at: None,
            error: None,
            report: None,
            live_ms: None,
            snapshot_ms: None,
        };
        let view = ParityView::from(&check);
        assert!(view.images.is_none());
        assert_eq!(view.state, CheckState::Queued);
        assert_eq!(view.device, "mobile");

        check.state = ParityState::Done;
        check.report = Some(ParityReport::default());
        let json = serde_json::to_value(ParityView::from(&check)).unwrap();
        assert_eq!(json["state"], "done");
        assert_eq!(
            json["images"]["diff"],
            "/api/v1/parity/0190a0b0-0000-7000-8000-000000000001/images/diff"
        );
        assert_eq!(json["report"]["visual"]["score"], 0.0);
        assert_eq!(json["requested_at"], "2023-11-14T22:13:20Z");
    }
}
