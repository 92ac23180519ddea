//! The render job: take a tab, render, store the page, tell the waiting gateways, release the lock.
//!
//! The job never fails as far as the queue is concerned (see `kiln-queue` on retries): every outcome,
//! good or bad, is recorded and announced here. Each job runs on a task of its own, tracked so that
//! shutdown can wait for it even if the queue stops polling the job's future.

use bytes::Bytes;
use futures::future::BoxFuture;
use kiln_core::{RenderJob, RenderOutcome, UnixMillis};
use kiln_queue::JobHandler;
use kiln_store::{PageEntry, PageMeta, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::pool::BrowserPool;
use crate::render::{self, RenderError, RenderRequest, Rendered};

/// Bounds on the cap a job may ask for: a zero or absurd value must not break the worker.
const MIN_CAP: Duration = Duration::from_secs(1);
const MAX_CAP: Duration = Duration::from_secs(120);
/// The watchdog fires this long after the cap: a render still running then has a hung browser.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(10);
/// How long a tab has to answer its health check before use.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The shortest a job waits for a free tab (it waits up to its cap otherwise), which rides out a
/// browser being recycled.
const MIN_CHECKOUT_WAIT: Duration = Duration::from_secs(5);

/// Renders jobs from the queue.
#[derive(Clone)]
pub struct RenderHandler {
    inner: Arc<Inner>,
}

struct Inner {
    pool: BrowserPool,
    store: Store,
    quiet: Duration,
    jobs: TaskTracker,
}

impl RenderHandler {
    pub fn new(pool: BrowserPool, store: Store, quiet: Duration) -> Self {
        RenderHandler {
            inner: Arc::new(Inner {
                pool,
                store,
                quiet,
                jobs: TaskTracker::new(),
            }),
        }
    }

    /// Waits until every job that has started is finished.
    pub async fn wait_idle(&self) {
        self.inner.jobs.close();
        self.inner.jobs.wait().await;
    }
}

impl JobHandler for RenderHandler {
    fn handle(&self, job: RenderJob) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let span = tracing::info_span!(
            "render",
            render.url = %job.render_url,
            render.device = %job.device,
            request_id = job.request_id.as_deref().unwrap_or(""),
            render.duration_ms = field::Empty,
            render.page_ms = field::Empty,
            render.status = field::Empty,
            render.outcome = field::Empty,
            render.browser = field::Empty,
        );
        let task = self
            .inner
            .jobs
            .spawn(async move { inner.run(job).await }.instrument(span));
        Box::pin(async move {
            if let Err(error) = task.await {
                tracing::error!(%error, "a render job task failed");
            }
        })
    }
}

impl Inner {
    async fn run(&self, job: RenderJob) {
        let started = Instant::now();
        let result = self.render_with_retry(&job).await;
        let render_ms = started.elapsed().as_millis() as u64;
        let span = tracing::Span::current();
        span.record("render.duration_ms", render_ms);

        let outcome = match result {
            Ok(rendered) => {
                span.record("render.status", rendered.status);
                if let Some(page_ms) = rendered.page_ms {
                    span.record("render.page_ms", page_ms);
                }
                let status = rendered.status;
                match self.store_page(&job, rendered, render_ms).await {
                    Ok(()) => RenderOutcome::Stored { status, render_ms },
                    Err(error) => RenderOutcome::Failed {
                        reason: format!("could not store the page: {error}"),
                    },
                }
            }
            Err(error) => RenderOutcome::Failed {
                reason: error.to_string(),
            },
        };
        match &outcome {
            RenderOutcome::Stored { status, .. } => {
                span.record("render.outcome", "stored");
                tracing::info!(
                    render.status = status,
                    render.duration_ms = render_ms,
                    "render stored"
                );
            }
            RenderOutcome::Failed { reason } => {
                span.record("render.outcome", "failed");
                tracing::warn!(render.duration_ms = render_ms, %reason, "render failed");
            }
        }
        if let Err(error) = self.store.announce_render(&job.key, outcome).await {
            tracing::error!(%error, "could not announce the render's outcome");
        }
        if let Err(error) = self.store.release_render_lock(&job.key).await {
            tracing::error!(%error, "could not release the render lock");
        }
    }

    /// Renders once, and once more (in a fresh tab, on a fresh browser if the browser was to
    /// blame) if the first try failed in a way a second may not: nothing that failed twice is
    /// stored.
    async fn render_with_retry(&self, job: &RenderJob) -> Result<Rendered, RenderError> {
        match self.render_once(job).await {
            Err(error) if error.is_worth_retrying() => {
                tracing::warn!(%error, "the render failed; trying once more");
                self.render_once(job).await
            }
            result => result,
        }
    }

    async fn render_once(&self, job: &RenderJob) -> Result<Rendered, RenderError> {
        let cap = Duration::from_millis(job.render_timeout_ms).clamp(MIN_CAP, MAX_CAP);
        let checkout_deadline = Instant::now() + cap.max(MIN_CHECKOUT_WAIT);
        // The health check before use: a tab whose browser does not answer at once is given back
        // (its browser replaced) and another taken, without spending the render's retry.
        let mut lease = loop {
            let mut lease = self
                .pool
                .checkout(
                    checkout_deadline.saturating_duration_since(Instant::now()),
                    job.device,
                )
                .await
                .map_err(|error| RenderError::NoBrowser(error.to_string()))?;
            if lease.is_responsive(HEALTH_CHECK_TIMEOUT).await {
                break lease;
            }
            tracing::warn!(
                render.browser = lease.browser_id(),
                "a browser failed its health check; replacing it"
            );
            lease.mark_broken("the browser failed its health check");
        };
        tracing::Span::current().record("render.browser", lease.browser_id());
        let request = RenderRequest {
            url: &job.render_url,
            page_url: job.page_url.as_str(),
            device: job.device,
            cap,
            quiet: self.quiet,
            blocking: job.blocking,
        };
        let dead = lease.browser_dead();
        // The watchdog: a render that outlives its cap by the margin is stuck in a CDP call that
        // will not return, which means the page or the browser hangs.
        let result = match tokio::time::timeout(
            cap + WATCHDOG_MARGIN,
            render::render(lease.page(), lease.prepared(), &request, &dead),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RenderError::Hung),
        };
        if let Err(error) = &result
            && error.is_browser_fault()
        {
            lease.mark_broken(error.to_string());
        }
        result
    }

    async fn store_page(
        &self,
        job: &RenderJob,
        rendered: Rendered,
        render_ms: u64,
    ) -> Result<(), kiln_store::StoreError> {
        // The page was rendered on the origin: absolute links to it become links to the public host.
        let html = kiln_core::rebase_origin(&rendered.html, job.origin_base(), job.page_url.base());
        let entry = PageEntry {
            html: Bytes::from(html),
            meta: PageMeta {
                status: rendered.status,
                headers: rendered.headers,
                url: job.page_url.as_str().to_owned(),
                rendered_at: unix_millis(),
                render_ms,
            },
        };
        self.store
            .put_page(&job.key, &entry, job.cache_ttl_secs)
            .await
    }
}

fn unix_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMillis)
        .unwrap_or(0)
}
