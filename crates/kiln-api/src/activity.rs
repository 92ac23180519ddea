//! `/api/v1/renders` and `/api/v1/usage`: what was rendered, and how bots were served.

use crate::extract::ApiQuery;
use crate::page::{self, PageSize};
use crate::responses::{CallerErrors, QueryErrors};
use axum::extract::State;
use kiln_control::activity;
use kiln_core::RenderVia;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::Caller;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RendersQuery {
    pub domain_id: Uuid,
    /// Only the renders caused by requests that came this way.
    #[param(inline)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub via: Option<Via>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Entries per response (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub limit: Option<u32>,
}

const RENDERS_PER_PAGE: PageSize = PageSize {
    default: 100,
    max: 500,
};

/// How the request that caused a render reached Kiln: `edge` (a bot on a domain whose traffic
/// comes through Kiln's edge, or the dashboard's warms, previews and parity checks) or `service`
/// (the render service: your own server asked for the page with a service token).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[schema(example = "edge")]
pub enum Via {
    Edge,
    Service,
}

impl From<Via> for RenderVia {
    fn from(via: Via) -> Self {
        match via {
            Via::Edge => RenderVia::Edge,
            Via::Service => RenderVia::Service,
        }
    }
}

impl Via {
    /// The render log's column, which Postgres holds to `edge` or `service`; anything else (there is
    /// nothing else) reads as the edge, the way entries logged before the column existed came.
    fn of_column(via: &str) -> Via {
        match via {
            "service" => Via::Service,
            _ => Via::Edge,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RenderEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub url: String,
    #[schema(example = "desktop")]
    pub device: String,
    /// `bot`, `warm` or `preview`.
    pub purpose: String,
    /// `stored`, `rendered` (a preview) or `failed`.
    pub outcome: String,
    pub status: Option<i32>,
    /// Why a render failed.
    pub reason: Option<String>,
    pub duration_ms: i64,
    pub bytes: i64,
    /// The bot whose request caused the render.
    pub bot: Option<String>,
    /// How that request reached Kiln.
    pub via: Via,
}

#[derive(Serialize, ToSchema)]
pub struct RenderLog {
    pub renders: Vec<RenderEntry>,
    pub next_cursor: Option<String>,
}

/// The domain's render log, newest first.
#[utoipa::path(get, path = "/renders", tag = "activity", params(RendersQuery),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Renders", body = RenderLog),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn renders(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RendersQuery>,
) -> Result<axum::Json<RenderLog>, ApiError> {
    kiln_control::domains::get(&ctx.app, caller.tenant_id, query.domain_id).await?;
    let limit = RENDERS_PER_PAGE.of(query.limit)?;
    if query
        .cursor
        .as_deref()
        .is_some_and(|c| !activity::is_stream_id(c))
    {
        return Err(page::unknown_cursor());
    }
    let records = activity::renders(
        &ctx.app,
        caller.tenant_id,
        query.domain_id,
        query.via.map(RenderVia::from),
        query.cursor.as_deref(),
        i64::from(limit),
    )
    .await?;
    let next_cursor = page::next_cursor(&records, limit, |r| r.stream_id.clone());
    let renders = records
        .into_iter()
        .map(|r| RenderEntry {
            at: r.at,
            url: r.url,
            device: r.device,
            purpose: r.purpose,
            outcome: r.outcome,
            status: r.status,
            reason: r.reason,
            duration_ms: r.duration_ms,
            bytes: r.bytes,
            bot: r.user_agent,
            via: Via::of_column(&r.via),
        })
        .collect();
    Ok(axum::Json(RenderLog {
        renders,
        next_cursor,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// One domain; all of the account's when left out.
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub domain_id: Option<Uuid>,
    /// First day (UTC, `YYYY-MM-DD`); default 29 days before `to`.
    #[param(value_type = Option<String>, format = Date, example = "2026-11-01")]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`); default today.
    #[param(value_type = Option<String>, format = Date, example = "2026-11-30")]
    #[serde(default, deserialize_with = "crate::extract::given")]
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageDay {
    pub domain_id: Uuid,
    #[schema(value_type = String, format = Date, example = "2026-11-22")]
    pub day: String,
    /// Bots served from the cache.
    pub cache_hits: i64,
    /// Bots that waited for a render.
    pub cache_misses: i64,
    /// Bots served the origin's page (render too slow or failed).
    pub bypasses: i64,
    /// Bot requests proxied because the path is excluded from rendering.
    pub passthroughs: i64,
    /// Renders stored (bot misses and warming).
    pub renders: i64,
    pub failed_renders: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    pub days: Vec<UsageDay>,
}

fn parse_day(name: &str, value: Option<&str>) -> Result<Option<Date>, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    value
        .map(|v| {
            Date::parse(v, &format).map_err(|_| {
                ApiError::bad_request(format!("`{name}` must be a date such as 2026-11-22"))
            })
        })
        .transpose()
}

/// Renders and cache hits per domain per UTC day (days without traffic are left out).
#[utoipa::path(get, path = "/usage", tag = "activity", params(UsageQuery),
    security(("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Usage", body = Usage),
        (status = 404, description = "No such domain in this account", body = kiln_frontdoor::ErrorBody),
        QueryErrors,
        CallerErrors,
    ))]
pub async fn usage(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<axum::Json<Usage>, ApiError> {
    if let Some(id) = query.domain_id {
        kiln_control::domains::get(&ctx.app, caller.tenant_id, id).await?;
    }
    let to =
        parse_day("to", query.to.as_deref())?.unwrap_or_else(|| OffsetDateTime::now_utc().date());
    let from = parse_day("from", query.from.as_deref())?.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(ApiError::bad_request("`from` is after `to`"));
    }
    if (to - from).whole_days() > 366 {
        return Err(ApiError::bad_request("ask for at most 366 days at a time"));
    }
    let records = activity::usage(&ctx.app, caller.tenant_id, query.domain_id, from, to).await?;
    let days = records
        .into_iter()
        .map(|r| UsageDay {
            domain_id: r.domain_id,
            day: r.day.to_string(),
            cache_hits: r.hits,
            cache_misses: r.misses,
            bypasses: r.bypasses,
            passthroughs: r.passthroughs,
            renders: r.renders,
            failed_renders: r.failed_renders,
        })
        .collect();
    Ok(axum::Json(Usage { days }))
}
