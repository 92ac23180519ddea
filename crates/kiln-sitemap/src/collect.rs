//! Walking a sitemap and its child sitemaps into the deduplicated list of pages to warm.
//!
//! The walk is breadth-first, so when a limit cuts it short the pages kept are the ones the site
//! lists closest to its root sitemap. A failing root is an error; a failing child is recorded in
//! [`Collected::skipped`] and the walk goes on, because one broken file in a hundred should not
//! cancel a warm.

use std::collections::HashSet;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt as _};
use url::Url;

use crate::parse::{Document, ParseError, parse};

/// How many child sitemaps are fetched at once: enough to hide latency, few enough that a warm
/// does not hammer the customer's origin.
const CONCURRENT_FETCHES: usize = 4;

/// Fetches a sitemap body. Implemented by the caller, which owns routing to the customer's origin
/// and refusing private addresses.
pub trait Fetch: Send + Sync {
    /// The body of `url`, at most `max_bytes` long (the implementation stops reading beyond it
    /// and errors).
    fn fetch<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}

/// Why a [`Fetch`] failed: a message fit to show the customer ("the origin answered 404 Not
/// Found", "the origin did not send it within 30 s", "it is larger than 52428800 bytes"), and the
/// error behind it, when there is one (a connection's, a body's), as its `source()`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl FetchError {
    /// A failure that `message` says all about.
    pub fn new(message: impl Into<String>) -> Self {
        FetchError {
            message: message.into(),
            source: None,
        }
    }

    /// A failure `message` describes, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        FetchError {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Bounds on one [`collect`] run. Every bound exists because the sitemap is customer input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Page URLs returned at most; beyond it the result is [`Collected::truncated`].
    pub max_urls: usize,
    /// Sitemaps fetched at most, the root included.
    pub max_sitemaps: usize,
    /// Levels of index nesting followed below the root: with 1, a root index's children are read
    /// but their children are not; with 0, only the root is read.
    pub max_depth: usize,
    /// Size cap for one sitemap, applied to the fetched body and again to its decompressed form,
    /// so a small gzip bomb cannot expand past it.
    pub max_bytes: usize,
    /// [`Skipped`] entries recorded at most; the rest are only counted in
    /// [`Collected::skipped_omitted`], so a sitemap of a million foreign URLs costs no memory.
    pub max_skipped: usize,
}

impl Default for Limits {
    /// The sitemaps.org protocol's own limits per file (50,000 URLs, 50 MiB), 100 sitemaps and
    /// three levels of nesting, which no legitimate site needs to exceed.
    fn default() -> Self {
        Self {
            max_urls: 50_000,
            max_sitemaps: 100,
            max_depth: 3,
            max_bytes: 50 * 1024 * 1024,
            max_skipped: 1_000,
        }
    }
}

/// The outcome of [`collect`].
#[derive(Debug, Default)]
pub struct Collected {
    /// Page URLs to warm: http(s), on the root sitemap's host, without fragment, deduplicated,
    /// in the order first seen (breadth-first across sitemaps, document order within one).
    pub urls: Vec<Url>,
    /// Sitemaps fetched and parsed successfully, the root included.
    pub sitemaps_read: usize,
    /// Entries left out, and child sitemaps that could not be read, each with the reason.
    pub skipped: Vec<Skipped>,
    /// Skipped entries beyond [`Limits::max_skipped`], counted but not recorded.
    pub skipped_omitted: usize,
    /// Whether a limit cut the walk short, so the site lists pages that `urls` lacks.
    pub truncated: bool,
}

/// An entry or child sitemap that [`collect`] left out.
#[derive(Debug)]
pub struct Skipped {
    /// The `<loc>` as written (it may not be a valid URL), or the sitemap a limit stopped.
    pub url: String,
    pub reason: SkipReason,
}

/// Why an entry or child sitemap was left out.
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    #[error("the <loc> is empty")]
    EmptyLoc,
    #[error("not an absolute URL")]
    Relative,
    #[error("malformed URL")]
    Malformed(#[source] url::ParseError),
    #[error("not an http or https URL")]
    UnsupportedScheme,
    /// The protocol forbids entries on other hosts, and a warm must never render another site.
    #[error("not on {expected}, the host of the root sitemap")]
    OtherHost { expected: String },
    #[error("failed to fetch")]
    FetchFailed(#[source] FetchError),
    #[error("not a sitemap")]
    NotSitemap(#[source] ParseError),
    #[error("nested deeper than {max_depth} index levels")]
    DepthLimit { max_depth: usize },
    #[error("the limit of {max_sitemaps} sitemaps was reached")]
    SitemapLimit { max_sitemaps: usize },
    /// Recorded for the sitemap being read when the limit was hit and for each one left unread.
    #[error("the limit of {max_urls} URLs was reached")]
    UrlLimit { max_urls: usize },
}

/// Why [`collect`] could not read the root sitemap.
#[derive(Debug, thiserror::Error)]
pub enum SitemapError {
    #[error(
        "{url} cannot be a sitemap location: only http and https URLs with a host are supported"
    )]
    UnsupportedRoot { url: Url },
    // The reason is the `source()`: whoever shows this error (the dashboard, on a warm that
    // failed) writes out its chain, "failed to fetch …: the origin answered 404 Not Found".
    #[error("failed to fetch {url}")]
    Fetch {
        url: Url,
        #[source]
        source: FetchError,
    },
    #[error("{url} is not a sitemap")]
    Invalid {
        url: Url,
        #[source]
        source: ParseError,
    },
}

/// Reads the sitemap at `root` and the child sitemaps it leads to, within `limits`, and returns
/// the page URLs to warm.
///
/// Fails only when the root itself cannot be fetched or is not a sitemap; everything else is
/// reported in [`Collected::skipped`]. Must run inside a Tokio runtime, which parsing uses to
/// keep CPU-heavy work off the async workers.
#[tracing::instrument(name = "sitemap.collect", skip_all, fields(sitemap.root = %root))]
pub async fn collect(
    fetcher: &dyn Fetch,
    root: &Url,
    limits: &Limits,
) -> Result<Collected, SitemapError> {
    let Some(scope) = Scope::of(root) else {
        return Err(SitemapError::UnsupportedRoot { url: root.clone() });
    };
    let document =
        read(fetcher, root, limits.max_bytes)
            .await
            .map_err(|failure| match failure {
                Failure::Fetch(source) => SitemapError::Fetch {
                    url: root.clone(),
                    source,
                },
                Failure::Parse(source) => SitemapError::Invalid {
                    url: root.clone(),
                    source,
                },
            })?;

    let mut walk = Walk::new(scope, root, limits);
    walk.collected.sitemaps_read = 1;
    let mut level = walk.absorb(root, 0, document);
    let mut depth = 1;
    while !level.is_empty() && !walk.full {
        level = read_level(&mut walk, fetcher, &level, depth).await;
        depth += 1;
    }
    Ok(walk.finish())
}

/// Reads the child sitemaps at one `depth`, a few at a time, and returns those of the next.
async fn read_level(
    walk: &mut Walk<'_>,
    fetcher: &dyn Fetch,
    level: &[Url],
    depth: usize,
) -> Vec<Url> {
    let max_bytes = walk.limits.max_bytes;
    let mut next_level = Vec::new();
    let mut queued = level.iter();
    // Ordered, so results come back in listing order: the page order stays deterministic and
    // `done` always counts the sitemaps taken in. (A `stream::iter(..).buffered(..)` pipeline
    // would be shorter, but its closure makes the `collect` future fail to be `Send` for every
    // lifetime, which callers spawning it on a runtime need.)
    let mut in_flight: FuturesOrdered<_> = queued
        .by_ref()
        .take(CONCURRENT_FETCHES)
        .map(|url| read(fetcher, url, max_bytes))
        .collect();
    let mut done = 0;
    while let Some(result) = in_flight.next().await {
        let url = &level[done];
        done += 1;
        match result {
            Ok(document) => {
                walk.collected.sitemaps_read += 1;
                next_level.extend(walk.absorb(url, depth, document));
            }
            Err(failure) => {
                // The log takes the error itself, so that the subscriber writes its sources too.
                tracing::debug!(
                    sitemap.url = %url,
                    error = &failure as &dyn std::error::Error,
                    "child sitemap skipped"
                );
                walk.skip(url.as_str(), failure.into_skip_reason());
            }
        }
        if walk.full {
            // Returning drops `in_flight`, which cancels the fetches still under way.
            walk.skip_unread(level[done..].iter().chain(&next_level));
            return Vec::new();
        }
        if let Some(url) = queued.next() {
            in_flight.push_back(read(fetcher, url, max_bytes));
        }
    }
    next_level
}

/// The hosts entries may point to: the root sitemap's host and port.
struct Scope {
    host: String,
    port: Option<u16>,
}

impl Scope {
    fn of(root: &Url) -> Option<Self> {
        if !is_http(root) {
            return None;
        }
        Some(Self {
            host: root.host_str()?.to_owned(),
            port: root.port(),
        })
    }

    fn contains(&self, url: &Url) -> bool {
        url.host_str() == Some(self.host.as_str()) && url.port() == self.port
    }

    /// The host as a customer would write it, for [`SkipReason::OtherHost`].
    fn describe(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// The state of one [`collect`] run.
struct Walk<'a> {
    scope: Scope,
    limits: &'a Limits,
    collected: Collected,
    seen_pages: HashSet<Url>,
    /// Every sitemap scheduled so far, so a sitemap listed twice, or in a cycle, is read once.
    seen_sitemaps: HashSet<Url>,
    /// Set when `max_urls` is reached: nothing more is fetched.
    full: bool,
}

impl<'a> Walk<'a> {
    fn new(scope: Scope, root: &Url, limits: &'a Limits) -> Self {
        Self {
            scope,
            limits,
            collected: Collected::default(),
            seen_pages: HashSet::new(),
            seen_sitemaps: HashSet::from([without_fragment(root.clone())]),
            full: false,
        }
    }

    /// Takes in one parsed sitemap at `depth` (the root is 0) and returns the child sitemaps to
    /// read on the next level. Its entries are validated here rather than by the parser, since
    /// which to keep depends on the root sitemap's host (the walk's [`Scope`]).
    fn absorb(&mut self, sitemap: &Url, depth: usize, document: Document) -> Vec<Url> {
        match document {
            Document::UrlSet(locs) => {
                tracing::debug!(sitemap.url = %sitemap, sitemap.entries = locs.len(), "urlset read");
                for loc in locs {
                    if !self.add_page(sitemap, &loc) {
                        break;
                    }
                }
                Vec::new()
            }
            Document::Index(locs) => {
                tracing::debug!(sitemap.url = %sitemap, sitemap.entries = locs.len(), "index read");
                locs.iter()
                    .filter_map(|loc| self.schedule_child(depth, loc))
                    .collect()
            }
        }
    }

    /// Adds one page entry; returns `false` once `max_urls` stops the walk.
    fn add_page(&mut self, sitemap: &Url, loc: &str) -> bool {
        let url = match self.check(loc) {
            Ok(url) => url,
            Err(reason) => {
                self.skip(loc, reason);
                return true;
            }
        };
        if self.seen_pages.contains(&url) {
            return true;
        }
        if self.collected.urls.len() >= self.limits.max_urls {
            self.full = true;
            self.collected.truncated = true;
            let max_urls = self.limits.max_urls;
            self.skip(sitemap.as_str(), SkipReason::UrlLimit { max_urls });
            return false;
        }
        self.seen_pages.insert(url.clone());
        self.collected.urls.push(url);
        true
    }

    /// Decides whether the child sitemap `loc`, listed by an index at `depth`, is read.
    fn schedule_child(&mut self, depth: usize, loc: &str) -> Option<Url> {
        let url = match self.check(loc) {
            Ok(url) => url,
            Err(reason) => {
                self.skip(loc, reason);
                return None;
            }
        };
        if self.seen_sitemaps.contains(&url) {
            return None;
        }
        if depth >= self.limits.max_depth {
            self.collected.truncated = true;
            let max_depth = self.limits.max_depth;
            self.skip(loc, SkipReason::DepthLimit { max_depth });
            return None;
        }
        if self.seen_sitemaps.len() >= self.limits.max_sitemaps {
            self.collected.truncated = true;
            let max_sitemaps = self.limits.max_sitemaps;
            self.skip(loc, SkipReason::SitemapLimit { max_sitemaps });
            return None;
        }
        self.seen_sitemaps.insert(url.clone());
        Some(url)
    }

    /// Parses a `<loc>` into a URL this walk may use: absolute, http(s), in scope.
    fn check(&self, loc: &str) -> Result<Url, SkipReason> {
        if loc.is_empty() {
            return Err(SkipReason::EmptyLoc);
        }
        let url = Url::parse(loc).map_err(|error| match error {
            url::ParseError::RelativeUrlWithoutBase => SkipReason::Relative,
            error => SkipReason::Malformed(error),
        })?;
        if !is_http(&url) {
            return Err(SkipReason::UnsupportedScheme);
        }
        if !self.scope.contains(&url) {
            return Err(SkipReason::OtherHost {
                expected: self.scope.describe(),
            });
        }
        Ok(without_fragment(url))
    }

    fn skip(&mut self, url: &str, reason: SkipReason) {
        if self.collected.skipped.len() < self.limits.max_skipped {
            self.collected.skipped.push(Skipped {
                url: url.to_owned(),
                reason,
            });
        } else {
            self.collected.skipped_omitted += 1;
        }
    }

    fn skip_unread<'u>(&mut self, unread: impl Iterator<Item = &'u Url>) {
        let max_urls = self.limits.max_urls;
        for url in unread {
            self.skip(url.as_str(), SkipReason::UrlLimit { max_urls });
        }
    }

    fn finish(self) -> Collected {
        let collected = self.collected;
        tracing::info!(
            sitemap.urls = collected.urls.len(),
            sitemap.sitemaps_read = collected.sitemaps_read,
            sitemap.skipped = collected.skipped.len() + collected.skipped_omitted,
            sitemap.truncated = collected.truncated,
            "sitemap collected"
        );
        collected
    }
}

/// The fragment never reaches the server, so `/a#top` and `/a` are the same page to render.
fn without_fragment(mut url: Url) -> Url {
    url.set_fragment(None);
    url
}

/// Why one sitemap could not be read.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Fetch(FetchError),
    #[error(transparent)]
    Parse(ParseError),
}

impl Failure {
    fn into_skip_reason(self) -> SkipReason {
        match self {
            Failure::Fetch(error) => SkipReason::FetchFailed(error),
            Failure::Parse(error) => SkipReason::NotSitemap(error),
        }
    }
}

async fn read(fetcher: &dyn Fetch, url: &Url, max_bytes: usize) -> Result<Document, Failure> {
    let body = fetcher
        .fetch(url, max_bytes)
        .await
        .map_err(Failure::Fetch)?;
    // Inflating and parsing up to 50 MiB takes tens of milliseconds of CPU, long enough to stall
    // every other task on this runtime worker.
    let parsed = tokio::task::spawn_blocking(move || parse(&body, max_bytes)).await;
    match parsed {
        Ok(result) => result.map_err(Failure::Parse),
        // A blocking task is only cancelled when the runtime shuts down, and then this future is
        // never polled again; what remains is a panic in the parser, which belongs to the caller.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
