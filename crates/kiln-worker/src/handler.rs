//! The render job: take a tab, render (once more if the first try failed in a way a second may not),
//! then do what the job's purpose asks with the result, and log the render.
//!
//! What becomes of a render depends on why it was asked for, one file per purpose: `bot.rs` (store,
//! end the gateway's render claim and announce), `warm.rs` (store, announce a stored page, count the
//! result for the warm job; no lock was taken) and `preview.rs` (store nothing, reply to the
//! dashboard). Every finished render gets one entry in the render log; writing it (like the warm
//! counts and preview replies) is best effort: a failure is logged and never fails the render.
//!
//! The job never fails as far as the queue is concerned (see `kiln-queue` on retries): every
//! outcome, good or bad, is recorded here. Each job runs on a task of its own, tracked so that
//! shutdown can wait for it even if the queue stops polling the job's future.

mod bot;
mod parity;
mod preview;
mod warm;

use bytes::Bytes;
use futures::future::BoxFuture;
use kiln_core::job::RenderPurpose;
use kiln_core::{RenderJob, RenderOutcome, UnixMillis};
use kiln_queue::{JobHandler, QueueKind, RenderQueue};
use kiln_store::{
    PageEntry, PageMeta, Pages, RenderLog, RenderLogEntry, RenderLogOutcome, RenderLogPurpose,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::metrics::WorkerMetrics;
use crate::pool::{Affinity, BrowserPool, Lease, PoolError, Priority, WaitingRender};
use crate::render::{self, Prepared, RenderError, RenderRequest, Rendered};

/// Bounds on the cap a job may ask for: a zero or absurd value must not break the worker.
const MIN_CAP: Duration = Duration::from_secs(1);
const MAX_CAP: Duration = Duration::from_secs(120);
/// The watchdog fires this long after the cap: a render still running then has a hung browser. It
/// leaves room for reading a large page on a loaded machine (see `render::SERIALIZE_TIMEOUT`).
const WATCHDOG_MARGIN: Duration = Duration::from_secs(20);
/// How long a tab has to answer its health check before use.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The shortest a job waits for a free tab (it waits up to its cap otherwise), which rides out a
/// browser being replaced: the backoff after a crash plus a launch, which takes several seconds
/// on a loaded machine (seen: over 4.5 s on two busy cores).
const MIN_CHECKOUT_WAIT: Duration = Duration::from_secs(15);
/// The shortest a background job (a warm, a refresh) waits for a free tab: nobody waits for it,
/// and while bots keep every tab busy it should wait its turn rather than fail.
const MIN_BACKGROUND_CHECKOUT_WAIT: Duration = Duration::from_secs(60);
/// The longest a background job waits for the render queue to have no untaken job.
const YIELD_TO_QUEUED_RENDERS: Duration = Duration::from_secs(2);

/// How the worker renders, whatever the job.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    /// How long the DOM and network must be quiet (`KILN_RENDER_QUIET_MS`).
    pub quiet: Duration,
    /// Whether snapshots carry what pages hold only in memory (`KILN_RENDER_FIDELITY`).
    pub faithful: bool,
}

/// The views of Kiln's Redis data a render's outcome goes to (see `kiln_store::Store`): the page
/// cache (stored pages, failure markers, the ends of render claims and their announcements) and
/// what renders report back (the render log, and the results warms, previews and parity checks
/// wait on). The worker holds no other view: the directory, certificates and usage are not its
/// business.
#[derive(Clone, Debug)]
pub struct StoreViews {
    pub pages: Pages,
    pub render_log: RenderLog,
}

impl StoreViews {
    pub fn of(store: &kiln_store::Store) -> Self {
        StoreViews {
            pages: store.pages(),
            render_log: store.render_log(),
        }
    }
}

/// Renders jobs from the queues.
#[derive(Clone)]
pub struct RenderHandler {
    inner: Arc<Inner>,
}

struct Inner {
    pool: BrowserPool,
    store: StoreViews,
    /// The worker's name (`KILN_WORKER_NAME`), which its render-log entries carry: with several
    /// workers on one queue, the log shows which rendered what.
    worker_name: String,
    options: RenderOptions,
    jobs: TaskTracker,
    /// For background jobs to see renders queued but not yet taken (none if it could not connect).
    render_queue: Option<RenderQueue>,
    metrics: Arc<WorkerMetrics>,
    /// Renders someone waits for that the queue has started and that have not reached `handle`
    /// yet: each holds background renders back from its very start (see `JobHandler::starting`).
    starting: std::sync::Mutex<Vec<WaitingRender>>,
    /// The egress proxy of each tenant with grants of its own (`KILN_ALLOWED_PRIVATE_NETS`), whose
    /// renders use it instead of the browsers' own.
    tenant_proxies: std::collections::HashMap<String, String>,
}

impl RenderHandler {
    pub fn new(
        pool: BrowserPool,
        store: StoreViews,
        worker_name: String,
        options: RenderOptions,
        render_queue: Option<RenderQueue>,
        metrics: Arc<WorkerMetrics>,
        tenant_proxies: std::collections::HashMap<String, String>,
    ) -> Self {
        RenderHandler {
            inner: Arc::new(Inner {
                pool,
                store,
                worker_name,
                options,
                jobs: TaskTracker::new(),
                render_queue,
                metrics,
                starting: Default::default(),
                tenant_proxies,
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
    /// A render someone waits for holds background renders back from the moment the queue starts
    /// it, not only once it asks for a tab: the queue counts its start and the job looks at the
    /// cache first, and a background render taking the tab meanwhile would delay it by a whole
    /// render.
    fn starting(&self, queue: QueueKind) {
        if queue == QueueKind::Render {
            let waiting = self.inner.pool.expect_waiting_render();
            self.inner.starting_renders().push(waiting);
        }
    }

    fn handle(&self, job: RenderJob, queue: QueueKind) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let span = render_span(&job);
        let turn = Turn {
            waiting: self.inner.started(queue),
            tab_at: None,
        };
        let task = self
            .inner
            .jobs
            .spawn(async move { inner.run(job, queue, turn).await }.instrument(span));
        Box::pin(async move {
            if let Err(error) = task.await {
                tracing::error!(%error, "a render job task failed");
            }
        })
    }

    /// A job given up is finished as a failed render, without rendering: logged as failed, and
    /// whoever waits is told (the bots' gateways, a preview's dashboard, a warm's progress).
    fn give_up(&self, job: RenderJob, queue: QueueKind, starts: u64) -> BoxFuture<'static, ()> {
        drop(self.inner.started(queue));
        let inner = self.inner.clone();
        let span = render_span(&job);
        Box::pin(
            async move {
                inner
                    .finish(&job, Err(RenderError::GivenUp(starts)), 0, None)
                    .await;
            }
            .instrument(span),
        )
    }
}

/// The span a job's render (or its giving up) is logged in; the empty fields are filled in as the
/// render goes.
fn render_span(job: &RenderJob) -> tracing::Span {
    tracing::info_span!(
        "render",
        render.url = %job.render_url,
        render.device = %job.device,
        render.purpose = job.purpose.as_str(),
        request.id = job.request_id.as_deref().unwrap_or(""),
        render.duration_ms = field::Empty,
        render.page_ms = field::Empty,
        render.status = field::Empty,
        render.outcome = field::Empty,
        render.browser = field::Empty,
    )
}

/// A render job's place in the line for a tab, carried through its tries.
struct Turn {
    /// Holds background renders back until this render has its tab (a render someone waits for).
    waiting: Option<WaitingRender>,
    /// When the render first got a tab.
    tab_at: Option<UnixMillis>,
}

/// What the render log records of a finished render.
struct Finished {
    outcome: RenderLogOutcome,
    status: Option<u16>,
    reason: Option<String>,
    bytes: u64,
}

impl Finished {
    /// The record of a render whose page was stored or not, as `outcome` says.
    fn from_outcome(outcome: &RenderOutcome, bytes: u64, error_status: Option<u16>) -> Self {
        match outcome {
            RenderOutcome::Stored { status, .. } => Finished {
                outcome: RenderLogOutcome::Stored,
                status: Some(*status),
                reason: None,
                bytes,
            },
            RenderOutcome::Failed { reason } => Finished {
                outcome: RenderLogOutcome::Failed,
                status: error_status,
                reason: Some(reason.clone()),
                bytes: 0,
            },
        }
    }
}

impl Inner {
    fn starting_renders(&self) -> std::sync::MutexGuard<'_, Vec<WaitingRender>> {
        self.starting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hold a job of `queue` has had on background renders since the queue started it.
    fn started(&self, queue: QueueKind) -> Option<WaitingRender> {
        if queue == QueueKind::Render {
            self.starting_renders().pop()
        } else {
            None
        }
    }

    async fn run(&self, job: RenderJob, queue: QueueKind, mut turn: Turn) {
        if self.rendered_meanwhile(&job).await {
            return;
        }
        let started = Instant::now();
        // Whatever comes from the background queue (warming, refreshes of stale pages) gives way
        // to renders someone waits for: to those the worker has started (the pool's priorities),
        // and to those still in the render queue, which a render consumer may be a moment from
        // taking (see `background_checkout`).
        let priority = match queue {
            QueueKind::Render => Priority::Waiting,
            QueueKind::Warm | QueueKind::Parity => Priority::Background,
        };
        let result = match &job.purpose {
            RenderPurpose::Parity { check_id } => self.parity(&job, check_id, &mut turn).await,
            _ => self.render_with_retry(&job, priority, &mut turn).await,
        };
        let render_ms = started.elapsed().as_millis() as u64;
        self.finish(&job, result, render_ms, turn.tab_at).await;
    }

    /// Does what the job's purpose asks with the render's result, and logs it (`tab_at`: when the
    /// render got a tab, if it did).
    async fn finish(
        &self,
        job: &RenderJob,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
        tab_at: Option<UnixMillis>,
    ) {
        let span = tracing::Span::current();
        span.record("render.duration_ms", render_ms);
        if let Ok(rendered) = &result {
            span.record("render.status", rendered.status);
            if let Some(page_ms) = rendered.page_ms {
                span.record("render.page_ms", page_ms);
            }
        }

        let finished = match &job.purpose {
            RenderPurpose::Bot => self.finish_bot(job, result, render_ms).await,
            RenderPurpose::Warm { job_id } => {
                self.finish_warm(job, job_id, result, render_ms).await
            }
            RenderPurpose::Preview { reply_to } => {
                self.finish_preview(job, reply_to, result, render_ms).await
            }
            RenderPurpose::Parity { check_id } => self.finish_parity(job, check_id, result).await,
        };
        match &finished.reason {
            None => {
                span.record("render.outcome", outcome_name(finished.outcome));
                if finished.outcome == RenderLogOutcome::Stored {
                    tracing::info!(
                        render.status = finished.status,
                        render.duration_ms = render_ms,
                        "render stored"
                    );
                } else {
                    tracing::info!(
                        render.status = finished.status,
                        render.duration_ms = render_ms,
                        "render finished; nothing stored"
                    );
                }
            }
            Some(reason) => {
                span.record("render.outcome", "failed");
                tracing::warn!(render.duration_ms = render_ms, %reason, "render failed");
            }
        }
        let outcome = match finished.reason {
            None => finished.outcome,
            Some(_) => RenderLogOutcome::Failed,
        };
        self.metrics.render(
            outcome,
            job.device,
            RenderLogPurpose::from(&job.purpose),
            Duration::from_millis(render_ms),
        );
        self.log_render(job, &finished, render_ms, tab_at).await;
    }

    /// A tab for a background render, by `deadline`. Each time one is free, the render queue is
    /// looked at first: while it holds a job nobody has taken yet (a bot's render a consumer may be
    /// a moment from taking), the tab is left for it, for [`YIELD_TO_QUEUED_RENDERS`] at most (a
    /// render queue that is merely long must not stop warming altogether).
    async fn background_checkout(
        &self,
        deadline: Instant,
        device: kiln_core::DeviceClass,
        affinity: &Affinity,
    ) -> Result<Lease, PoolError> {
        let yield_until = Instant::now() + YIELD_TO_QUEUED_RENDERS;
        loop {
            self.pool
                .wait_for_tab(
                    deadline.saturating_duration_since(Instant::now()),
                    Priority::Background,
                )
                .await?;
            if Instant::now() < yield_until && self.renders_queued().await {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            if let Some(lease) = self
                .pool
                .try_take(device, Priority::Background, Some(affinity))
            {
                // A bot's render may have come while the queue was being asked (a Redis round
                // trip): it gets the tab. Tabs come free often (a render's tab is kept for its
                // domain a moment after it ends), so without this look, every background consumer
                // could win that race.
                if Instant::now() < yield_until
                    && (!self.pool.may_take(Priority::Background) || self.renders_queued().await)
                {
                    lease.give_back();
                    continue;
                }
                return Ok(lease);
            }
        }
    }

    /// Whether the render queue holds a job no consumer has taken yet (no, if it cannot tell).
    async fn renders_queued(&self) -> bool {
        match &self.render_queue {
            Some(queue) => matches!(queue.untaken(QueueKind::Render).await, Ok(n) if n > 0),
            None => false,
        }
    }

    /// Whether a bot's render is not needed any more because the page is fresh in the cache: it was
    /// missing or stale when the job was queued, and another render (a warm, or a refresh whose
    /// lock was released just before this job's gateway took it) stored it since. The waiting
    /// gateways are told and the lock released, as after a render. A warm is always rendered: it is
    /// asked for to replace what is cached.
    async fn rendered_meanwhile(&self, job: &RenderJob) -> bool {
        if job.purpose != RenderPurpose::Bot {
            return false;
        }
        let meta = match self.store.pages.meta(&job.key).await {
            Ok(Some(meta)) if meta.is_fresh(kiln_core::unix_millis_now()) => meta,
            Ok(_) => return false,
            Err(error) => {
                tracing::debug!(error = %kiln_runtime::error_chain(&error), "could not check whether the page is fresh; rendering it");
                return false;
            }
        };
        tracing::info!(
            render.rendered_at = meta.rendered_at,
            "the page was rendered since the job was queued; not rendering it again"
        );
        let outcome = RenderOutcome::Stored {
            status: meta.status,
            render_ms: meta.render_ms,
        };
        self.unlock_and_announce(job, outcome).await;
        true
    }

    /// Stores a successful render; the outcome to announce, and what the log records.
    async fn store_result(
        &self,
        job: &RenderJob,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
    ) -> (RenderOutcome, Finished) {
        match result {
            Ok(rendered) => {
                let status = rendered.status;
                let html = public_html(job, &rendered);
                let bytes = html.len() as u64;
                let outcome = match self.store_page(job, rendered, html, render_ms).await {
                    Ok(()) => RenderOutcome::Stored { status, render_ms },
                    Err(error) => RenderOutcome::Failed {
                        reason: format!(
                            "could not store the page: {}",
                            kiln_runtime::error_chain(&error)
                        ),
                    },
                };
                let finished = Finished::from_outcome(&outcome, bytes, Some(status));
                (outcome, finished)
            }
            Err(error) => {
                let outcome = RenderOutcome::Failed {
                    reason: error.to_string(),
                };
                let finished = Finished::from_outcome(&outcome, 0, error.status());
                (outcome, finished)
            }
        }
    }

    async fn announce(&self, job: &RenderJob, outcome: RenderOutcome) {
        if let Err(error) = self.store.pages.announce_render(&job.key, outcome).await {
            tracing::error!(error = %kiln_runtime::error_chain(&error), "could not announce the render's outcome");
        }
    }

    /// Appends the render to the render log; a failure to do so is only worth a warning.
    async fn log_render(
        &self,
        job: &RenderJob,
        finished: &Finished,
        render_ms: u64,
        tab_at: Option<UnixMillis>,
    ) {
        let entry = RenderLogEntry {
            at: kiln_core::unix_millis_now(),
            tab_at,
            domain_id: job.key.domain_id.clone(),
            tenant_id: job.tenant_id.clone(),
            url: job.page_url.as_str().to_owned(),
            device: job.device,
            purpose: (&job.purpose).into(),
            outcome: finished.outcome,
            status: finished.status,
            reason: finished.reason.clone(),
            duration_ms: render_ms,
            bytes: finished.bytes,
            user_agent: job.user_agent.clone(),
            worker: Some(self.worker_name.clone()),
            via: job.via,
        };
        if let Err(error) = self.store.render_log.append(&entry).await {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not add the render to the render log");
        }
    }

    /// Renders once, and once more (in a fresh tab, on a fresh browser if the browser was to
    /// blame) if the first try failed in a way a second may not: nothing that failed twice is
    /// stored.
    async fn render_with_retry(
        &self,
        job: &RenderJob,
        priority: Priority,
        turn: &mut Turn,
    ) -> Result<Rendered, RenderError> {
        match self.render_once(job, priority, turn).await {
            Err(error) if error.is_worth_retrying() => {
                tracing::warn!(%error, "the render failed; trying once more");
                self.render_once(job, priority, turn).await
            }
            result => result,
        }
    }

    /// A healthy tab for `job` (in the tenant's own proxy's context if it has one), and the
    /// affinity to keep it for afterwards.
    async fn take_tab(
        &self,
        job: &RenderJob,
        priority: Priority,
        turn: &mut Turn,
    ) -> Result<(Lease, Affinity), RenderError> {
        let cap = job_cap(job);
        let min_wait = match priority {
            Priority::Background => MIN_BACKGROUND_CHECKOUT_WAIT,
            Priority::Waiting => MIN_CHECKOUT_WAIT,
        };
        let checkout_deadline = Instant::now() + cap.max(min_wait);
        let proxy = self.tenant_proxies.get(&job.tenant_id);
        let affinity = Affinity::new(
            &job.tenant_id,
            job.page_url.base(),
            &job.render_url,
            proxy.cloned(),
        );
        // The health check before use: a tab whose browser does not answer at once is given back
        // (its browser replaced) and another taken, without spending the render's retry.
        let mut lease = loop {
            let checkout = match priority {
                Priority::Waiting => {
                    self.pool
                        .checkout(
                            checkout_deadline.saturating_duration_since(Instant::now()),
                            job.device,
                            priority,
                            Some(&affinity),
                        )
                        .await
                }
                Priority::Background => {
                    self.background_checkout(checkout_deadline, job.device, &affinity)
                        .await
                }
            };
            // The checkout counted this render as waiting while it waited; it has a tab now, or
            // will not get one.
            turn.waiting = None;
            let mut lease = checkout.map_err(|error| RenderError::NoBrowser(error.to_string()))?;
            // Stamped now, not after the health check (a CDP round trip that takes tens of ms on a
            // loaded machine): the render log says when the render took its tab.
            turn.tab_at.get_or_insert_with(kiln_core::unix_millis_now);
            if lease.is_responsive(HEALTH_CHECK_TIMEOUT).await {
                break lease;
            }
            tracing::warn!(
                render.browser = lease.browser_id(),
                "a browser failed its health check; replacing it"
            );
            lease.mark_broken("the browser failed its health check");
        };
        // A tenant with grants of its own renders in a context whose traffic goes through its own
        // proxy: a warm tab's context uses the browser's, which grants only what everyone has.
        if let Some(proxy) = proxy
            && lease.proxy() != Some(proxy.as_str())
            && let Err(error) = lease.use_proxy(proxy, job.device).await
        {
            lease.mark_broken(format!(
                "could not open a tab for the tenant's proxy: {error}"
            ));
            return Err(RenderError::NoBrowser(error.to_string()));
        }
        Ok((lease, affinity))
    }

    async fn render_once(
        &self,
        job: &RenderJob,
        priority: Priority,
        turn: &mut Turn,
    ) -> Result<Rendered, RenderError> {
        let (mut lease, affinity) = self.take_tab(job, priority, turn).await?;
        tracing::Span::current().record("render.browser", lease.browser_id());
        let cap = job_cap(job);
        let request = self.request(job);
        let dead = lease.browser_dead();
        let mut documents = BTreeSet::new();
        let result = watchdog(
            cap,
            render::render(
                lease.page(),
                lease.prepared(),
                &request,
                &dead,
                &mut documents,
            ),
        )
        .await;
        // A tab whose render went well serves the domain's next render, scrubbed; any other is
        // disposed.
        if result.is_ok() {
            let prepared = Prepared::set_up(job.device, job.blocking);
            lease.keep_for(affinity, documents, prepared);
        }
        blame_browser(&mut lease, result).await
    }

    async fn store_page(
        &self,
        job: &RenderJob,
        rendered: Rendered,
        html: String,
        render_ms: u64,
    ) -> Result<(), kiln_store::StoreError> {
        let entry = PageEntry {
            html: Bytes::from(html),
            meta: PageMeta {
                status: rendered.status,
                headers: rendered.headers,
                url: job.page_url.as_str().to_owned(),
                rendered_at: kiln_core::unix_millis_now(),
                render_ms,
                // Set by the store from the TTLs.
                expires_at: 0,
                fresh_until: 0,
                encoding: kiln_store::ContentEncoding::Identity,
                length: 0,
                etag: String::new(),
            },
        };
        self.store
            .pages
            .put(&job.key, &entry, job.cache_ttl_secs, job.stale_ttl_secs)
            .await
    }
}

/// Runs `work` on a tab under the watchdog: work that outlives `cap` by [`WATCHDOG_MARGIN`] is stuck
/// in a CDP call that will not return, which means the page or the browser hangs.
async fn watchdog<T>(
    cap: Duration,
    work: impl std::future::Future<Output = Result<T, RenderError>>,
) -> Result<T, RenderError> {
    tokio::time::timeout(cap + WATCHDOG_MARGIN, work)
        .await
        .unwrap_or(Err(RenderError::Hung))
}

/// `result` of work on `lease`'s tab, with the browser blamed where it is at fault: a page that
/// never got ready may be the browser's fault, and a browser that no longer answers at all (not
/// just a page busy with its scripts) is replaced now, so a retry gets a fresh one instead of
/// waiting on it.
async fn blame_browser<T>(
    lease: &mut Lease,
    result: Result<T, RenderError>,
) -> Result<T, RenderError> {
    let result = match result {
        Err(RenderError::Timeout { .. }) if !lease.browser_answers(HEALTH_CHECK_TIMEOUT).await => {
            tracing::warn!("the page timed out and its browser does not answer");
            Err(RenderError::Hung)
        }
        result => result,
    };
    if let Err(error) = &result
        && error.is_browser_fault()
    {
        lease.mark_broken(error.to_string());
    }
    result
}

/// The cap on a job's render: what it asks for, within bounds.
fn job_cap(job: &RenderJob) -> Duration {
    Duration::from_millis(job.render_timeout_ms).clamp(MIN_CAP, MAX_CAP)
}

impl Inner {
    /// What to ask of a render for `job`.
    fn request<'a>(&self, job: &'a RenderJob) -> RenderRequest<'a> {
        RenderRequest {
            url: &job.render_url,
            page_url: job.page_url.as_str(),
            device: job.device,
            cap: job_cap(job),
            quiet: self.options.quiet,
            blocking: job.blocking,
            faithful: self.options.faithful,
            user_agent: None,
        }
    }
}

/// The page as bots get it: rendered on the origin, so absolute links to the origin become links
/// to the public host.
fn public_html(job: &RenderJob, rendered: &Rendered) -> String {
    kiln_core::rebase_origin(&rendered.html, job.origin_base(), job.page_url.base())
}

fn outcome_name(outcome: RenderLogOutcome) -> &'static str {
    match outcome {
        RenderLogOutcome::Stored => "stored",
        RenderLogOutcome::Rendered => "rendered",
        RenderLogOutcome::Failed => "failed",
    }
}
