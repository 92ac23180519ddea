//! An in-memory `Fetch` serving fixed bodies, and builders for sitemap documents.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::future::BoxFuture;
use kiln_sitemap::{Collected, Fetch, FetchError, Limits, SitemapError, collect};
use url::Url;

pub const ROOT: &str = "https://shop.example.com/sitemap.xml";

/// Serves a fixed body or failure per URL and records what was asked of it. A URL it does not
/// know answers "HTTP 404", like an origin would.
#[derive(Default)]
pub struct MemoryFetcher {
    responses: HashMap<String, Result<Vec<u8>, String>>,
    fetched: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl MemoryFetcher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn serve(mut self, url: &str, body: impl Into<Vec<u8>>) -> Self {
        self.responses.insert(url.to_owned(), Ok(body.into()));
        self
    }

    pub fn fail(mut self, url: &str, message: &str) -> Self {
        self.responses
            .insert(url.to_owned(), Err(message.to_owned()));
        self
    }

    /// Every URL fetched, in the order the fetches started.
    pub fn fetched(&self) -> Vec<String> {
        self.fetched.lock().unwrap().clone()
    }

    /// The most fetches that were in progress at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub async fn collect(&self, limits: &Limits) -> Result<Collected, SitemapError> {
        collect(self, &Url::parse(ROOT).unwrap(), limits).await
    }
}

impl Fetch for MemoryFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.fetched.lock().unwrap().push(url.to_string());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // A network fetch is pending at least once; yielding lets fetches started together
            // overlap, so the test can see how many run at a time.
            tokio::task::yield_now().await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match self.responses.get(url.as_str()) {
                None => Err(FetchError::new("HTTP 404")),
                Some(Err(message)) => Err(FetchError::new(message.clone())),
                // The contract: an implementation refuses bodies over the limit.
                Some(Ok(body)) if body.len() > max_bytes => Err(FetchError::new(format!(
                    "the body is larger than {max_bytes} bytes"
                ))),
                Some(Ok(body)) => Ok(Bytes::from(body.clone())),
            }
        })
    }
}

pub fn urlset(locs: &[&str]) -> String {
    let entries: String = locs
        .iter()
        .map(|loc| format!("  <url><loc>{loc}</loc><changefreq>daily</changefreq></url>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n{entries}</urlset>\n"
    )
}

pub fn index(locs: &[&str]) -> String {
    let entries: String = locs
        .iter()
        .map(|loc| format!("  <sitemap><loc>{loc}</loc></sitemap>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n{entries}</sitemapindex>\n"
    )
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

/// `https://shop.example.com{path}`, for brevity in expectations.
pub fn shop(path: &str) -> String {
    format!("https://shop.example.com{path}")
}

pub fn urls(collected: &Collected) -> Vec<String> {
    collected.urls.iter().map(Url::to_string).collect()
}

/// An error and its sources on one line, as the dashboard shows a sitemap's.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Skipped entries as (url, reason message) pairs, the reason with its sources.
pub fn skipped(collected: &Collected) -> Vec<(String, String)> {
    collected
        .skipped
        .iter()
        .map(|skipped| (skipped.url.clone(), chain(&skipped.reason)))
        .collect()
}

pub fn pair(url: &str, reason: &str) -> (String, String) {
    (url.to_owned(), reason.to_owned())
}
