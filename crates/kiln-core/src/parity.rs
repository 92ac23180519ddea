//! Parity checks: does what bots are served look like what people see?
//!
//! A check loads one page twice in the same browser, at the same device width: live, as a person's
//! browser would (scripts on), and as the snapshot bots get (served from the snapshot's bytes,
//! scripts off). From each load comes a [`PageCapture`]: a screenshot and the facts a crawler reads.
//! `kiln-parity` compares the two into a [`ParityReport`]; the worker stores the report (and the
//! pictures) where the dashboard reads them.

use crate::{DeviceClass, UnixMillis};
use serde::{Deserialize, Serialize};

/// The name under which a check holds a place in its tenant's render budget: the dashboard takes
/// it when it files the check, the worker gives it back when the check ends.
pub fn budget_place(check_id: &str) -> String {
    format!("parity:{check_id}")
}

/// What one load of a page showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFacts {
    /// The text a reader sees (`document.body.innerText`): hidden elements left out, one line per
    /// block.
    pub text: String,
    /// `document.title`.
    pub title: String,
    /// `<meta name="description">`'s content.
    pub description: Option<String>,
    /// `<link rel="canonical">`'s href, resolved.
    pub canonical: Option<String>,
    /// Every `h1`–`h6`, in document order, as `h2: Text`.
    pub headings: Vec<String>,
    /// Every `a[href]`'s resolved href, in document order (duplicates kept).
    pub links: Vec<String>,
    /// The text of every `<script type="application/ld+json">`, in document order.
    pub json_ld: Vec<String>,
    /// The document's height in CSS pixels (`scrollHeight` of the scrolling element).
    pub height: u32,
}

/// A screenshot (PNG, `width` × `height` device pixels) and the facts of one load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageCapture {
    pub png: Vec<u8>,
    pub facts: PageFacts,
}

/// The pictures of a check, each stored beside its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParityImage {
    /// The live page, as a person sees it.
    Live,
    /// The snapshot, as bots get it.
    Snapshot,
    /// Where the two differ: differing pixels in red over a faded copy of the live page.
    Diff,
}

impl ParityImage {
    pub const ALL: [ParityImage; 3] = [ParityImage::Live, ParityImage::Snapshot, ParityImage::Diff];

    pub fn as_str(self) -> &'static str {
        match self {
            ParityImage::Live => "live",
            ParityImage::Snapshot => "snapshot",
            ParityImage::Diff => "diff",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|image| image.as_str() == name)
    }
}

/// How the two screenshots compare.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VisualDiff {
    /// The compared area, in pixels (both screenshots, the shorter padded with white).
    pub width: u32,
    pub height: u32,
    /// Pixels that differ beyond the colour tolerance and are not antialiasing.
    pub differing_pixels: u64,
    /// `differing_pixels` over the compared area: 0 for identical pictures, 1 for nothing alike.
    pub score: f64,
    /// Each side's document height in CSS pixels.
    pub live_height: u32,
    pub snapshot_height: u32,
}

/// Text a person sees that the snapshot lacks, and the reverse, line by line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextDiff {
    /// Lines of the live page missing from the snapshot (the first [`MAX_LISTED_LINES`]).
    pub missing: Vec<String>,
    /// Lines only the snapshot has (the first [`MAX_LISTED_LINES`]).
    pub extra: Vec<String>,
    /// How many lines are missing and extra in all.
    pub missing_total: u32,
    pub extra_total: u32,
    /// Non-whitespace characters of text on each side.
    pub live_chars: u32,
    pub snapshot_chars: u32,
}

/// The most lines (and list items of a [`FieldDiff`]) a report lists; the totals count them all.
pub const MAX_LISTED_LINES: usize = 50;

/// One thing a crawler reads (the title, the canonical link, the headings…) that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// `title`, `description`, `canonical`, `headings`, `links` or `json_ld`.
    pub field: String,
    /// Values only the live page has (for a single value: the live page's, if any).
    pub only_live: Vec<String>,
    /// Values only the snapshot has.
    pub only_snapshot: Vec<String>,
}

/// The outcome of comparing a live page with its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    pub visual: VisualDiff,
    pub text: TextDiff,
    /// The fields that differ; empty when every one agrees.
    pub fields: Vec<FieldDiff>,
}

/// A parity check's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParityState {
    /// Waiting on the parity queue.
    Queued,
    /// A worker is loading the pages.
    Running,
    /// Compared: the report is there.
    Done,
    /// Could not be compared: `error` says why.
    Failed,
}

/// A parity check as stored: who asked, about what, and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityCheck {
    pub id: String,
    pub tenant_id: String,
    pub domain_id: String,
    /// The public URL compared.
    pub url: String,
    pub device: DeviceClass,
    pub state: ParityState,
    pub requested_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// Why the check failed (the live page or the render could not be loaded, say).
    pub error: Option<String>,
    pub report: Option<ParityReport>,
    /// How long each load took, once done.
    pub live_ms: Option<u64>,
    pub snapshot_ms: Option<u64>,
}

impl ParityCheck {
    /// A check just asked for, waiting on the parity queue.
    pub fn queued(
        id: String,
        tenant_id: String,
        domain_id: String,
        url: String,
        device: DeviceClass,
    ) -> Self {
        ParityCheck {
            id,
            tenant_id,
            domain_id,
            url,
            device,
            state: ParityState::Queued,
            requested_at: crate::unix_millis_now(),
            finished_at: None,
            error: None,
            report: None,
            live_ms: None,
            snapshot_ms: None,
        }
    }
}
