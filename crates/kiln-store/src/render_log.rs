//! The render log: one entry per finished render, appended by workers to the stream
//! `{prefix}renders` and read by the dashboard.
//!
//! The stream is capped at about [`RENDER_LOG_MAX_LEN`] entries (`XADD … MAXLEN ~`, which trims
//! whole macro nodes and so is cheap); older entries fall off. Each stream entry has one field,
//! `entry`, holding the [`RenderLogEntry`] as JSON, so the record can grow fields without a new
//! stream layout.

use crate::{Result, StoreError};
use fred::prelude::*;
use fred::types::streams::{XCap, XCapKind, XCapTrim};
use kiln_core::DeviceClass;
use kiln_core::UnixMillis;
use kiln_core::job::RenderPurpose;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// About how many entries the stream keeps.
pub const RENDER_LOG_MAX_LEN: i64 = 100_000;

/// The field each stream entry keeps its JSON in.
const FIELD: &str = "entry";

/// One finished render.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderLogEntry {
    /// When the render finished.
    pub at: UnixMillis,
    /// When the render got a browser tab (none if it never did: no browser was free, or the job
    /// was given up). From the job's being queued until then, it waited.
    #[serde(default)]
    pub tab_at: Option<UnixMillis>,
    pub domain_id: String,
    pub tenant_id: String,
    /// The public (normalised) URL the render was for.
    pub url: String,
    pub device: DeviceClass,
    pub purpose: RenderLogPurpose,
    pub outcome: RenderLogOutcome,
    /// The page's status, when the render got one (also for some failures: the origin's 500).
    pub status: Option<u16>,
    /// Why the render failed.
    pub reason: Option<String>,
    /// From taking the job to the outcome, retry included.
    pub duration_ms: u64,
    /// Length of the HTML produced (0 when none was).
    pub bytes: u64,
    /// The User-Agent of the bot that caused the render.
    pub user_agent: Option<String>,
    /// The worker that rendered it: its queue consumer's name (`KILN_WORKER_NAME`). None in
    /// entries logged before workers named themselves.
    #[serde(default)]
    pub worker: Option<String>,
    /// How the request that caused the render reached Kiln: through the edge, or through the
    /// render service (entries logged before this field existed: the edge).
    #[serde(default)]
    pub via: kiln_core::job::RenderVia,
}

/// Why a page was rendered (the kind of its job's [`RenderPurpose`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderLogPurpose {
    Bot,
    Warm,
    Preview,
    Parity,
}

impl From<&RenderPurpose> for RenderLogPurpose {
    fn from(purpose: &RenderPurpose) -> Self {
        match purpose {
            RenderPurpose::Bot => RenderLogPurpose::Bot,
            RenderPurpose::Warm { .. } => RenderLogPurpose::Warm,
            RenderPurpose::Preview { .. } => RenderLogPurpose::Preview,
            RenderPurpose::Parity { .. } => RenderLogPurpose::Parity,
        }
    }
}

/// What became of a render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderLogOutcome {
    /// The page was rendered and stored in the cache (bot and warm renders).
    Stored,
    /// The page was rendered and, as asked, not stored: a preview.
    Rendered,
    /// The render failed (or its page could not be stored); nothing was stored.
    Failed,
}

crate::view! {
    /// What renders report back: the log of every render (`{prefix}renders`), and the results the
    /// control plane waits on, a warm job's progress, a preview's page and a parity check's report
    /// and pictures. The worker writes them; the control plane reads them.
    RenderLog
}

impl RenderLog {
    fn render_log_key(&self) -> String {
        self.conn.key("renders")
    }

    /// Appends `entry` to the render log. Callers treat a failure as something to log, not to fail
    /// the render for.
    pub async fn append(&self, entry: &RenderLogEntry) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(StoreError::encode("render log entry"))?;
        let cap: XCap = (XCapKind::MaxLen, XCapTrim::AlmostExact, RENDER_LOG_MAX_LEN).try_into()?;
        let _: String = self
            .conn
            .pool
            .xadd(self.render_log_key(), false, cap, "*", vec![(FIELD, json)])
            .await?;
        Ok(())
    }

    /// Up to `count` entries logged after the stream id `after_id` (exclusive), oldest first, each
    /// with its stream id; pass `"0"` to start at the oldest entry kept, then the last id read.
    /// Entries that cannot be read (written by a newer version, say) are skipped with a warning.
    pub async fn read(
        &self,
        after_id: &str,
        count: usize,
    ) -> Result<Vec<(String, RenderLogEntry)>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let start = match after_id {
            "" | "-" | "0" => "-".to_owned(),
            id => format!("({id}"),
        };
        let raw: Vec<(String, HashMap<String, String>)> = self
            .conn
            .pool
            .xrange_values(self.render_log_key(), start, "+", Some(count as u64))
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, mut fields)| {
                let json = fields.remove(FIELD)?;
                match serde_json::from_str(&json) {
                    Ok(entry) => Some((id, entry)),
                    Err(error) => {
                        tracing::warn!(render_log.id = %id, %error, "skipping an unreadable render log entry");
                        None
                    }
                }
            })
            .collect())
    }
}
