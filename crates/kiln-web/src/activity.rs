//! The activity page: charts of the last 24 hours and 30 days, and the render log with filters.

use super::format;
use super::{Chrome, Nav, PageResult, WebUser, fail, render};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use kiln_control::db::{RenderFilter, RenderRecord};
use kiln_core::RenderVia;
use kiln_frontdoor::Ctx;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

const PAGE_SIZE: i64 = 50;

/// Crawlers worth naming in the log, by a distinctive part of their User-Agent.
const KNOWN_BOTS: &[(&str, &str)] = &[
    ("googlebot", "Googlebot"),
    ("google-inspectiontool", "Google Inspection Tool"),
    ("adsbot-google", "Google AdsBot"),
    ("storebot-google", "Google StoreBot"),
    ("bingbot", "Bingbot"),
    ("duckduckbot", "DuckDuckBot"),
    ("yandex", "Yandex"),
    ("baiduspider", "Baidu"),
    ("applebot", "Applebot"),
    ("gptbot", "GPTBot"),
    ("oai-searchbot", "OpenAI Search"),
    ("chatgpt-user", "ChatGPT"),
    ("claudebot", "ClaudeBot"),
    ("claude-", "Claude"),
    ("perplexitybot", "PerplexityBot"),
    ("ccbot", "Common Crawl"),
    ("facebookexternalhit", "Facebook"),
    ("meta-externalagent", "Meta"),
    ("twitterbot", "X (Twitter)"),
    ("linkedinbot", "LinkedIn"),
    ("slackbot", "Slack"),
    ("discordbot", "Discord"),
    ("telegrambot", "Telegram"),
    ("whatsapp", "WhatsApp"),
    ("pinterest", "Pinterest"),
    ("redditbot", "Reddit"),
    ("ahrefsbot", "Ahrefs"),
    ("semrushbot", "Semrush"),
    ("petalbot", "PetalBot"),
];

/// A short name for who caused a render.
pub fn bot_name(purpose: &str, user_agent: Option<&str>) -> String {
    match purpose {
        "warm" => return "warming".to_owned(),
        "preview" => return "preview".to_owned(),
        _ => {}
    }
    let Some(agent) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "bot".to_owned();
    };
    let lower = agent.to_ascii_lowercase();
    KNOWN_BOTS
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map_or_else(
            || agent.chars().take(40).collect(),
            |(_, name)| (*name).to_owned(),
        )
}

pub struct RenderRow {
    pub when: String,
    pub iso: String,
    pub url: String,
    pub device: String,
    pub who: String,
    pub user_agent: String,
    pub outcome: String,
    pub status: String,
    pub duration: String,
    pub size: String,
    pub reason: String,
    /// Whether the render service (rather than Kiln's edge) brought the request that caused it.
    pub via_service: bool,
}

/// One chart: its heading and its inline SVG (built by [`crate::charts`], which escapes any text).
pub struct ChartView {
    pub title: String,
    pub svg: String,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    chrome: Chrome,
    domains: Vec<(Uuid, String)>,
    query: ActivityQuery,
    hours: Vec<ChartView>,
    days: Vec<ChartView>,
    rows: Vec<RenderRow>,
    next: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
pub struct ActivityQuery {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub bot: String,
    /// `edge` or `service`: how the request that caused the render reached Kiln.
    #[serde(default)]
    pub via: String,
    pub before: Option<String>,
}

impl ActivityQuery {
    /// The query string of these filters (for the next-page link).
    pub fn filters(&self) -> String {
        let pairs = [
            ("domain", &self.domain),
            ("outcome", &self.outcome),
            ("device", &self.device),
            ("purpose", &self.purpose),
            ("bot", &self.bot),
            ("via", &self.via),
        ];
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
            .finish()
    }
}

fn chosen(value: &str, allowed: &[&str]) -> Option<String> {
    allowed.contains(&value).then(|| value.to_owned())
}

/// The way in the filter names; anything else does not filter, like the other choices.
fn chosen_via(value: &str) -> Option<RenderVia> {
    [RenderVia::Edge, RenderVia::Service]
        .into_iter()
        .find(|via| via.as_str() == value)
}

pub async fn page(
    State(ctx): State<Ctx>,
    user: WebUser,
    Query(query): Query<ActivityQuery>,
) -> PageResult {
    let records = kiln_control::domains::of_tenant(&ctx.app, user.tenant_id)
        .await
        .map_err(fail)?;
    let domains: Vec<(Uuid, String)> = records
        .iter()
        .map(|record| (record.id, record.host.to_string()))
        .collect();
    // An id that is not one of the tenant's domains filters to nothing rather than erroring.
    let domain_id = Uuid::parse_str(&query.domain).ok();
    let filter = RenderFilter {
        domain_id,
        outcome: chosen(&query.outcome, &["stored", "rendered", "failed"]),
        device: chosen(&query.device, &["desktop", "mobile"]),
        purpose: chosen(&query.purpose, &["bot", "warm", "preview"]),
        user_agent: Some(query.bot.trim().to_owned()).filter(|bot| !bot.is_empty()),
        via: chosen_via(&query.via),
    };
    // Renders logged in the last few seconds are copied in first, as the API does.
    kiln_control::activity::catch_up(&ctx.app)
        .await
        .map_err(fail)?;
    let before = query
        .before
        .as_deref()
        .filter(|cursor| kiln_control::activity::is_stream_id(cursor));
    let now = OffsetDateTime::now_utc();
    let (renders, charts) = tokio::join!(
        kiln_control::activity::renders_matching(
            &ctx.app,
            user.tenant_id,
            &filter,
            before,
            PAGE_SIZE + 1
        ),
        kiln_control::stats::charts(&ctx.app, user.tenant_id, domain_id, now),
    );
    let renders = renders.map_err(fail)?;
    let charts = charts.map_err(fail)?;
    let more = renders.len() as i64 > PAGE_SIZE;
    let shown: Vec<&RenderRecord> = renders.iter().take(PAGE_SIZE as usize).collect();
    let next = more
        .then(|| shown.last().map(|r| r.stream_id.clone()))
        .flatten();
    let rows = shown
        .into_iter()
        .map(|r| RenderRow {
            when: format::when(r.at),
            iso: format::iso(r.at),
            url: r.url.clone(),
            device: r.device.clone(),
            who: bot_name(&r.purpose, r.user_agent.as_deref()),
            user_agent: r.user_agent.clone().unwrap_or_default(),
            outcome: r.outcome.clone(),
            status: r.status.map_or_else(|| "—".to_owned(), |s| s.to_string()),
            duration: format::millis(u64::try_from(r.duration_ms).unwrap_or(0)),
            size: format::bytes(u64::try_from(r.bytes).unwrap_or(0)),
            reason: r.reason.clone().unwrap_or_default(),
            via_service: r.via == RenderVia::Service.as_str(),
        })
        .collect();
    let (hours, days) = chart_views(&charts);
    Ok(render(
        StatusCode::OK,
        &ActivityPage {
            chrome: user.chrome(Nav::Activity),
            domains,
            query,
            hours,
            days,
            rows,
            next,
        },
    ))
}

/// The three charts for each period: renders, hit ratio, render time.
fn chart_views(charts: &kiln_control::stats::Charts) -> (Vec<ChartView>, Vec<ChartView>) {
    use crate::charts::{Period, hit_ratio_chart, render_time_chart, renders_chart};
    let views = |buckets: &[kiln_control::stats::Bucket], period: Period| {
        vec![
            ChartView {
                title: "Renders (stored and failed)".to_owned(),
                svg: renders_chart(buckets, period),
            },
            ChartView {
                title: "Cache hit ratio".to_owned(),
                svg: hit_ratio_chart(buckets, period),
            },
            ChartView {
                title: "Render time (p50 and p95)".to_owned(),
                svg: render_time_chart(buckets, period),
            },
        ]
    };
    (
        views(&charts.hours, Period::Hours),
        views(&charts.days, Period::Days),
    )
}

#[cfg(test)]
mod tests {
    use super::bot_name;

    #[test]
    fn renders_name_who_caused_them() {
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(bot_name("bot", Some(google)), "Googlebot");
        assert_eq!(bot_name("warm", None), "warming");
        assert_eq!(
            bot_name("bot", Some("SomeNewCrawler/1.0")),
            "SomeNewCrawler/1.0"
        );
        assert_eq!(bot_name("bot", None), "bot");
    }
}
