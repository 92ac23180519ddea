//! The browser pool: a fixed number of Chromium processes, each keeping a few fresh browser contexts
//! ("tabs") open ahead of demand, so that a render starts on a blank page at once instead of paying
//! the ~0.3 s Chromium takes to create a context and a page.
//!
//! A render gets a tab in a browser context that holds nothing a page has left. A domain's first
//! render takes a warm tab in a fresh context. When a render has gone well, its tab is kept for the
//! next render of the same [`Affinity`] (one tenant's domain, through one egress proxy), scrubbed
//! first (see [`scrub`]): the page's scripts stopped and the tab on `about:blank`, then its
//! cookies, the storage of every origin whose document it loaded (local and session storage,
//! IndexedDB, Cache Storage, service workers, ...), its permissions, history and `window.name`
//! cleared, and its HTTP cache too if the page had cookies (a response cached then may have been
//! made for them). The next
//! render of the domain then reuses the renderer process and the cacheable scripts and styles of
//! the last one instead of paying for a context, a process and their download and compilation
//! again: less than half the CPU (ARCHITECTURE.md, "The browser"). A render whose page loaded a
//! document from another origin (a frame) is not kept: its context is disposed, as is every tab of
//! a render that failed, and a kept tab unused for [`PARKED_TTL`]. Contexts are never shared
//! between tenants or domains, nor by two renders at once. A browser is replaced
//! by a fresh process after `recycle_after` renders or as soon as anything about it goes wrong (a
//! CDP or transport error, a hung or crashed page, the process exiting); the old process finishes
//! the renders it has, then its whole process group is terminated and its profile deleted.
//!
//! Each browser slot is run by a supervisor task, which launches (retrying with backoff), keeps the
//! warm tabs topped up, and hands the process over to a retirement task when it must go.

use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, CloseParams, ResetPermissionsParams,
};
use chromiumoxide::cdp::browser_protocol::dom_storage::{self, StorageId};
use chromiumoxide::cdp::browser_protocol::emulation::SetScriptExecutionDisabledParams;
use chromiumoxide::cdp::browser_protocol::network::ClearBrowserCacheParams;
use chromiumoxide::cdp::browser_protocol::page::{NavigateParams, ResetNavigationHistoryParams};
use chromiumoxide::cdp::browser_protocol::storage::{
    ClearCookiesParams, ClearDataForOriginParams, GetCookiesParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::process::{ChromeProcess, become_subreaper, group_memory_bytes, sweep_orphans};
use crate::render::{self, Prepared};
use kiln_core::{DeviceClass, ResourceBlocking};

/// How long Chromium may take to start and announce its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// chromiumoxide fails a CDP command that gets no answer for this long. Renders have their own,
/// shorter watchdog; this bounds the pool's own commands.
const CDP_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Creating a context and a page takes ~0.3 s; far longer means the browser is in trouble.
const TAB_CREATE_TIMEOUT: Duration = Duration::from_secs(10);
const TAB_DISPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many tabs are being created at once per browser, so that a fresh browser is not
/// flooded with requests while it is still starting.
const MAX_PARALLEL_CREATES: usize = 2;
/// Backoff between failed launches (and after browsers that die young).
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A browser that has to be replaced sooner than this after its start counts as a failed launch.
const MIN_HEALTHY_LIFETIME: Duration = Duration::from_secs(5);
/// How long a retiring browser waits for its in-flight renders. Each render has a watchdog of its
/// own, so this is only a backstop.
const MAX_DRAIN: Duration = Duration::from_secs(120);
/// How often a browser's memory is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long SIGTERM has before SIGKILL follows.
const TERMINATE_GRACE: Duration = Duration::from_secs(3);
/// A tab kept for its domain's next render is disposed after this long unused.
const PARKED_TTL: Duration = Duration::from_secs(30);
/// Scrubbing a tab for its domain's next render takes a few milliseconds; far longer and it is
/// disposed instead.
const SCRUB_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pool needs to know.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub chrome_path: PathBuf,
    pub browsers: usize,
    pub tabs_per_browser: usize,
    pub recycle_after: u64,
    /// A browser older than this is replaced.
    pub recycle_age: Duration,
    /// A browser whose processes use more memory than this (proportional set size) is replaced.
    pub recycle_memory_mb: u64,
    /// Extra Chromium arguments (the egress proxy's).
    pub extra_args: Vec<String>,
    /// Where per-browser profile directories are created.
    pub profile_dir: PathBuf,
    /// Each browser's DevTools address is added here while the browser lives, so that the egress
    /// proxies refuse it: a page that reached it could drive the browser.
    pub devtools_refusals: kiln_egress::Refusals,
    /// Whether tabs are set up for faithful snapshots (`KILN_RENDER_FIDELITY`, see `render`).
    pub faithful: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no browser had a free tab within {0:?}")]
    Unavailable(Duration),
    #[error("the browser pool is shutting down")]
    ShuttingDown,
}

/// The renders that may use one browser context one after another: one tenant's renders of one
/// site (the public domain and the origin it renders), through one egress proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    pub tenant: String,
    pub site: String,
    /// The tenant's own egress proxy, if it has one (see [`Lease::use_proxy`]).
    pub proxy: Option<String>,
}

impl Affinity {
    /// The affinity of `tenant`'s render of `render_url` (on its origin) for the public page base
    /// `page_base` (scheme and host bots asked for), through `proxy`.
    pub fn new(tenant: &str, page_base: &str, render_url: &str, proxy: Option<String>) -> Self {
        let origin = url::Url::parse(render_url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_else(|_| render_url.to_owned());
        Affinity {
            tenant: tenant.to_owned(),
            site: format!("{page_base} {origin}"),
            proxy,
        }
    }
}

/// A handle on the pool. Cheap to clone.
#[derive(Clone)]
pub struct BrowserPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BrowserPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPool")
            .field("browsers", &self.inner.settings.browsers)
            .finish()
    }
}

struct Inner {
    settings: PoolSettings,
    /// The browser currently serving each slot, if one is up.
    slots: Vec<Mutex<Option<Arc<Instance>>>>,
    /// Woken whenever a warm tab becomes available, or a waiting render stops waiting.
    tab_ready: Notify,
    /// Checkouts of [`Priority::Waiting`] that are waiting for a tab: while there are any,
    /// background checkouts take none.
    waiting: AtomicUsize,
    shutdown: CancellationToken,
    /// Supervisors, tab creations and disposals, retirements: everything shutdown must wait for.
    tasks: TaskTracker,
    next_browser_id: AtomicU64,
    /// Slots whose healthy browser was retired by a routine recycle (renders, age, memory) and whose
    /// replacement is launching: the worker is still able to render, just a moment later.
    replacing: AtomicUsize,
    cursor: AtomicUsize,
    /// Browsers replaced so far, by [`RecycleReason`].
    recycled: [AtomicU64; RecycleReason::ALL.len()],
}

/// Why a browser was replaced, as the `kiln_browser_recycles_total` metric names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecycleReason {
    /// It served its share of renders (`KILN_WORKER_RECYCLE_AFTER`).
    Renders,
    /// It reached its age limit.
    Age,
    /// It used more memory than allowed.
    Memory,
    /// Its process or connection died.
    Crashed,
    /// It stopped answering, or a render in it hung or failed at the protocol level.
    Unresponsive,
}

impl RecycleReason {
    pub const ALL: [RecycleReason; 5] = [
        RecycleReason::Renders,
        RecycleReason::Age,
        RecycleReason::Memory,
        RecycleReason::Crashed,
        RecycleReason::Unresponsive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecycleReason::Renders => "renders",
            RecycleReason::Age => "age",
            RecycleReason::Memory => "memory",
            RecycleReason::Crashed => "crashed",
            RecycleReason::Unresponsive => "unresponsive",
        }
    }
}

/// One Chromium process and its connection.
struct Instance {
    id: u64,
    started: Instant,
    browser: Browser,
    process: ChromeProcess,
    handler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    state: Mutex<InstanceState>,
    /// Wakes the supervisor (or, once retiring, the retirement task) after any state change.
    changed: Notify,
    /// Cancelled when the CDP connection is lost or the process exits.
    dead: CancellationToken,
    /// Cancelled when the retirement starts closing the browser: connection errors are expected.
    closing: CancellationToken,
    /// The memory (PSS) its processes used when last measured.
    memory_bytes: AtomicU64,
    /// Keeps the DevTools address refused by the egress proxies while the instance lives.
    _devtools: DevtoolsRefusal,
    /// Whether its tabs are set up for faithful snapshots.
    faithful: bool,
}

/// A browser's DevTools address in the egress proxies' refusals, taken out when dropped.
struct DevtoolsRefusal {
    refusals: kiln_egress::Refusals,
    addr: Option<std::net::SocketAddr>,
}

impl DevtoolsRefusal {
    fn new(refusals: &kiln_egress::Refusals, ws_url: &str) -> Self {
        // ws://127.0.0.1:PORT/devtools/browser/ID
        let addr = ws_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse().ok());
        match addr {
            Some(addr) => refusals.insert(addr),
            None => tracing::warn!(ws_url, "could not read the browser's DevTools address"),
        }
        DevtoolsRefusal {
            refusals: refusals.clone(),
            addr,
        }
    }
}

impl Drop for DevtoolsRefusal {
    fn drop(&mut self) {
        if let Some(addr) = self.addr {
            self.refusals.remove(addr);
        }
    }
}

#[derive(Default)]
struct InstanceState {
    warm: Vec<Tab>,
    /// Tabs kept for their domain's next render, oldest first.
    parked: Vec<Parked>,
    creating: usize,
    /// Tabs being created for mobile renders (the others are for desktop).
    creating_mobile: usize,
    in_use: usize,
    /// Tabs handed out so far.
    renders: u64,
    /// Why this browser must be replaced, once something went wrong.
    broken: Option<String>,
    /// Set when the supervisor has let go of this browser: no more tabs are handed out.
    retiring: bool,
}

/// A page in a browser context of its own, set up ahead of demand for one device class.
struct Tab {
    context: BrowserContextId,
    page: Page,
    prepared: Prepared,
    /// The egress proxy the context was created with, if not the browser's.
    proxy: Option<String>,
}

/// A scrubbed tab waiting for the next render of its affinity.
struct Parked {
    affinity: Affinity,
    tab: Tab,
    since: Instant,
}

/// What a lease's render left in its tab, for keeping the tab for the next render of its affinity.
struct Reuse {
    affinity: Affinity,
    documents: BTreeSet<String>,
    prepared: Prepared,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind (every update is
    // a single assignment), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who asks for a tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A render someone waits for: a bot's, a preview.
    Waiting,
    /// Work nobody waits for (cache warming, refreshes of stale pages): it takes a tab only when no
    /// waiting render wants one, so it delays a bot's render by one render at most (the one it
    /// started before the bot came).
    Background,
}

/// Counts a render someone waits for in [`Inner::waiting`] while it lives: background checkouts
/// take no tab meanwhile. When it ends (the render has a tab, or needs none), they look again.
pub struct WaitingRender(Arc<Inner>);

impl WaitingRender {
    fn new(inner: Arc<Inner>) -> Self {
        inner.waiting.fetch_add(1, Ordering::AcqRel);
        WaitingRender(inner)
    }
}

impl Drop for WaitingRender {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tab_ready.notify_waiters();
        }
    }
}

impl BrowserPool {
    /// Starts the pool. Browsers launch in the background; [`alive_browsers`](Self::alive_browsers)
    /// tells when one is up, and [`checkout`](Self::checkout) waits for a tab.
    pub fn start(settings: PoolSettings) -> Self {
        become_subreaper();
        let orphans = sweep_orphans(&settings.profile_dir);
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "cleared browsers left behind by a worker that died"
            );
        }
        let slots = (0..settings.browsers.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let inner = Arc::new(Inner {
            settings,
            slots,
            tab_ready: Notify::new(),
            waiting: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_browser_id: AtomicU64::new(1),
            replacing: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            recycled: Default::default(),
        });
        for slot in 0..inner.slots.len() {
            inner.tasks.spawn(supervise(inner.clone(), slot));
        }
        BrowserPool { inner }
    }

    /// How many browsers are up and healthy, counting one a routine recycle is replacing (a
    /// browser retired after its share of renders, its age or its memory, whose successor is
    /// launching): readiness must not flap with every recycle. A crashed or broken browser is not
    /// counted until its replacement is up.
    pub fn alive_browsers(&self) -> usize {
        self.running_browsers() + self.inner.replacing.load(Ordering::Acquire)
    }

    /// How many browsers are up and healthy right now.
    pub fn running_browsers(&self) -> usize {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .filter(|instance| {
                !instance.dead.is_cancelled() && lock(&instance.state).broken.is_none()
            })
            .count()
    }

    /// Warm tabs ready for renders, over all browsers.
    pub fn warm_tabs(&self) -> usize {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .map(|instance| lock(&instance.state).warm.len())
            .sum()
    }

    /// Tabs kept for their domain's next render, over all browsers.
    pub fn tabs_kept(&self) -> usize {
        self.instances()
            .map(|instance| lock(&instance.state).parked.len())
            .sum()
    }

    /// Renders holding a tab now, over all browsers.
    pub fn tabs_in_use(&self) -> usize {
        self.instances()
            .map(|instance| lock(&instance.state).in_use)
            .sum()
    }

    /// How many renders the browsers up now can hold at once.
    pub fn tab_capacity(&self) -> usize {
        self.alive_browsers() * self.inner.settings.tabs_per_browser.max(1)
    }

    /// The memory (PSS) of every browser process of the pool, as last measured (each browser is
    /// measured on its health check's schedule).
    pub fn memory_bytes(&self) -> u64 {
        self.instances()
            .map(|instance| instance.memory_bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// How many browsers have been replaced for `reason` since the pool started.
    pub fn recycled(&self, reason: RecycleReason) -> u64 {
        self.inner.recycled[reason as usize].load(Ordering::Relaxed)
    }

    fn instances(&self) -> impl Iterator<Item = Arc<Instance>> + '_ {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| lock(slot).clone())
    }

    /// The main process ids of the browsers currently serving, for diagnostics and tests.
    pub fn browser_pids(&self) -> Vec<u32> {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| lock(slot).as_ref().map(|i| i.process.pid()))
            .collect()
    }

    /// Holds background checkouts back for a render someone waits for, from the moment its job is
    /// taken, before the job's first look at the cache: a background render must not take the tab
    /// in between. Drop it once the render has its tab (its own checkout counts it from then on).
    pub fn expect_waiting_render(&self) -> WaitingRender {
        WaitingRender::new(self.inner.clone())
    }

    /// Takes a tab kept for `affinity`, or else a warm tab, set up for `device` if one is, waiting
    /// up to `wait` for any. A checkout of [`Priority::Background`] takes no tab while one of
    /// [`Priority::Waiting`] waits for one.
    pub async fn checkout(
        &self,
        wait: Duration,
        device: DeviceClass,
        priority: Priority,
        affinity: Option<&Affinity>,
    ) -> Result<Lease, PoolError> {
        let _waiting =
            (priority == Priority::Waiting).then(|| WaitingRender::new(self.inner.clone()));
        self.wait_until(wait, || self.try_take(device, priority, affinity))
            .await
    }

    /// Waits up to `wait` until a tab could be taken at `priority`, taking none: for a caller that
    /// checks something else first and then calls [`try_take`](Self::try_take).
    pub async fn wait_for_tab(&self, wait: Duration, priority: Priority) -> Result<(), PoolError> {
        self.wait_until(wait, || {
            (self.may_take(priority) && self.has_warm_tab()).then_some(())
        })
        .await
    }

    /// Looks with `look` each time a tab becomes ready (or a waiting render stops waiting), up to
    /// `wait`, until it finds something.
    async fn wait_until<T>(
        &self,
        wait: Duration,
        mut look: impl FnMut() -> Option<T>,
    ) -> Result<T, PoolError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.inner.tab_ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so that a tab arriving in between still wakes us.
            notified.as_mut().enable();
            if self.inner.shutdown.is_cancelled() {
                return Err(PoolError::ShuttingDown);
            }
            if let Some(found) = look() {
                return Ok(found);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Err(PoolError::Unavailable(wait)),
                _ = self.inner.shutdown.cancelled() => return Err(PoolError::ShuttingDown),
            }
        }
    }

    /// Takes a tab at once if one is free to `priority` (see [`checkout`](Self::checkout)).
    pub fn try_take(
        &self,
        device: DeviceClass,
        priority: Priority,
        affinity: Option<&Affinity>,
    ) -> Option<Lease> {
        if self.may_take(priority) {
            self.try_checkout(device, affinity)
        } else {
            None
        }
    }

    /// Whether a checkout at `priority` may take a tab now.
    pub fn may_take(&self, priority: Priority) -> bool {
        match priority {
            Priority::Waiting => true,
            Priority::Background => self.inner.waiting.load(Ordering::Acquire) == 0,
        }
    }

    fn has_warm_tab(&self) -> bool {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .any(|instance| {
                let state = lock(&instance.state);
                instance.accepting(&state, self.inner.settings.recycle_after)
                    && !state.warm.is_empty()
            })
    }

    fn try_checkout(&self, device: DeviceClass, affinity: Option<&Affinity>) -> Option<Lease> {
        let start = self.inner.cursor.fetch_add(1, Ordering::Relaxed);
        // The domain's own kept tab first (one set up for the device if there is one); then a warm
        // tab already set up for the device; any warm tab otherwise (the render sets it up).
        if let Some(affinity) = affinity {
            let lease = self.take_first(start, |state| {
                let mine = |parked: &Parked| parked.affinity == *affinity;
                let found = state
                    .parked
                    .iter()
                    .rposition(|p| mine(p) && p.tab.prepared.device == Some(device))
                    .or_else(|| state.parked.iter().rposition(mine))?;
                Some((state.parked.remove(found).tab, Some(affinity.clone())))
            });
            if lease.is_some() {
                return lease;
            }
        }
        for matching in [true, false] {
            let lease = self.take_first(start, |state| {
                let found = state
                    .warm
                    .iter()
                    .rposition(|tab| !matching || tab.prepared.device == Some(device))?;
                Some((state.warm.remove(found), None))
            });
            if lease.is_some() {
                return lease;
            }
        }
        None
    }

    /// Lends the first tab `pick` takes out of a browser taking renders, looking at the browsers
    /// from slot `start` on. `pick` also says which affinity the tab was kept for, if it was.
    fn take_first(
        &self,
        start: usize,
        mut pick: impl FnMut(&mut InstanceState) -> Option<(Tab, Option<Affinity>)>,
    ) -> Option<Lease> {
        let slots = &self.inner.slots;
        for i in 0..slots.len() {
            let Some(instance) = lock(&slots[(start + i) % slots.len()]).clone() else {
                continue;
            };
            let (tab, kept_for) = {
                let mut state = lock(&instance.state);
                if !instance.accepting(&state, self.inner.settings.recycle_after) {
                    continue;
                }
                let Some(taken) = pick(&mut state) else {
                    continue;
                };
                state.in_use += 1;
                state.renders += 1;
                taken
            };
            // The supervisor replaces a warm tab (or retires the browser once it has served
            // enough).
            instance.changed.notify_one();
            return Some(Lease {
                inner: self.inner.clone(),
                instance,
                tab: Some(tab),
                broken: None,
                reuse: None,
                kept_for,
            });
        }
        None
    }

    /// Stops launching, waits for every browser to finish its in-flight renders, then closes them
    /// all and makes sure their processes are gone.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// A tab lent to one render. Dropping it disposes the tab's browser context in the background;
/// call [`mark_broken`](Self::mark_broken) first if the browser misbehaved, so that it is replaced.
pub struct Lease {
    inner: Arc<Inner>,
    instance: Arc<Instance>,
    tab: Option<Tab>,
    broken: Option<String>,
    /// Set by [`keep_for`](Self::keep_for): the tab is scrubbed and kept instead of disposed.
    reuse: Option<Reuse>,
    /// The affinity the tab was kept for, if it was taken from the kept tabs.
    kept_for: Option<Affinity>,
}

impl Lease {
    pub fn page(&self) -> &Page {
        // The tab is only taken out in `drop`.
        &self
            .tab
            .as_ref()
            .expect("a lease holds its tab until dropped")
            .page
    }

    /// What the tab has been set up for.
    pub fn prepared(&self) -> Prepared {
        self.tab
            .as_ref()
            .expect("a lease holds its tab until dropped")
            .prepared
    }

    /// The id of the browser this tab belongs to, for logs.
    pub fn browser_id(&self) -> u64 {
        self.instance.id
    }

    /// Cancelled if the browser dies while the tab is in use.
    pub fn browser_dead(&self) -> CancellationToken {
        self.instance.dead.clone()
    }

    /// Another page in the tab's browser context, for a load that must start afresh (a parity
    /// check's, see `crate::parity`): chromiumoxide lets a page navigate only once its previous
    /// navigation has finished by its reckoning, which a page with a frame that never loads (a
    /// lazy or refused one) never does. Close it when done; disposing of the context closes it
    /// too, so never keep a lease that opened pages for its domain.
    pub async fn open_page(&self) -> Result<Page, CdpError> {
        let tab = self
            .tab
            .as_ref()
            .expect("a lease holds its tab until dropped");
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(tab.context.clone())
            .build()
            .map_err(CdpError::msg)?;
        tokio::time::timeout(TAB_CREATE_TIMEOUT, self.instance.browser.new_page(params))
            .await
            .map_err(|_| {
                CdpError::msg(format!(
                    "opening a page took longer than {TAB_CREATE_TIMEOUT:?}"
                ))
            })?
    }

    /// Whether the tab's renderer answers a trivial evaluation within `timeout` (about a
    /// millisecond when healthy).
    pub async fn is_responsive(&self, timeout: Duration) -> bool {
        if self.instance.dead.is_cancelled() {
            return false;
        }
        let probe = self.page().execute(EvaluateParams::new("1"));
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(_)))
    }

    /// Whether the browser itself (not this tab's page, which may just be busy) answers within
    /// `timeout`.
    pub async fn browser_answers(&self, timeout: Duration) -> bool {
        if self.instance.dead.is_cancelled() {
            return false;
        }
        let probe = self.instance.browser.version();
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(_)))
    }

    /// Replaces the tab with one in a fresh browser context whose traffic goes through `proxy`
    /// (an egress proxy's URL) instead of the browser's own, set up for `device`. The old context
    /// is disposed.
    pub async fn use_proxy(&mut self, proxy: &str, device: DeviceClass) -> Result<(), CdpError> {
        let tab = tokio::time::timeout(
            TAB_CREATE_TIMEOUT,
            self.instance.new_tab_with(device, Some(proxy)),
        )
        .await
        .map_err(|_| {
            CdpError::msg(format!(
                "opening a tab took longer than {TAB_CREATE_TIMEOUT:?}"
            ))
        })??;
        if let Some(old) = self.tab.replace(tab) {
            let _ = self
                .instance
                .browser
                .execute(DisposeBrowserContextParams::new(old.context))
                .await;
        }
        Ok(())
    }

    /// Has the browser replaced once this lease is returned.
    pub fn mark_broken(&mut self, reason: impl Into<String>) {
        self.broken = Some(reason.into());
    }

    /// Returns the tab unused, to where it was taken from (the warm tabs, or the tabs kept for its
    /// domain), as if it had never been taken.
    pub fn give_back(mut self) {
        let Some(tab) = self.tab.take() else { return };
        {
            let mut state = lock(&self.instance.state);
            state.in_use = state.in_use.saturating_sub(1);
            state.renders = state.renders.saturating_sub(1);
            match self.kept_for.take() {
                Some(affinity) => state.parked.push(Parked {
                    affinity,
                    tab,
                    since: Instant::now(),
                }),
                None => state.warm.push(tab),
            }
        }
        self.instance.changed.notify_one();
        self.inner.tab_ready.notify_waiters();
    }

    /// The egress proxy the tab's context uses, if not the browser's own.
    pub fn proxy(&self) -> Option<&str> {
        self.tab.as_ref()?.proxy.as_deref()
    }

    /// Keeps the tab for the next render of `affinity` once the lease is returned, scrubbed of what
    /// the render's page left: `documents` are the origins whose documents it loaded, and
    /// `prepared` what the render set the tab up for. Only a tab whose page loaded documents of one
    /// origin is kept: another origin's frame could leave storage behind under keys a later page
    /// of the domain might read, so such a tab is disposed as usual.
    pub fn keep_for(
        &mut self,
        affinity: Affinity,
        documents: BTreeSet<String>,
        prepared: Prepared,
    ) {
        if documents.len() == 1 {
            self.reuse = Some(Reuse {
                affinity,
                documents,
                prepared,
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(tab) = self.tab.take() else { return };
        let broken = self.broken.take();
        let healthy = broken.is_none() && !self.instance.dead.is_cancelled();
        {
            let mut state = lock(&self.instance.state);
            state.in_use = state.in_use.saturating_sub(1);
            if let Some(reason) = broken {
                state.broken.get_or_insert(reason);
            }
        }
        self.instance.changed.notify_one();
        // A broken browser is about to be killed with all its contexts; a healthy one keeps this
        // render's tab for its domain, scrubbed, or disposes its context, which closes its page and
        // deletes its cookies, storage and cache.
        if healthy && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let instance = self.instance.clone();
            match self.reuse.take() {
                Some(reuse) => {
                    let inner = self.inner.clone();
                    self.inner
                        .tasks
                        .spawn_on(park(inner, instance, tab, reuse), &runtime);
                }
                None => {
                    self.inner
                        .tasks
                        .spawn_on(dispose(instance, tab.context), &runtime);
                }
            }
        }
    }
}

/// Disposes a tab's browser context (its page, cookies, storage and cache go with it). A browser
/// that cannot do that is replaced.
async fn dispose(instance: Arc<Instance>, context: BrowserContextId) {
    let dispose = instance
        .browser
        .execute(DisposeBrowserContextParams::new(context));
    let failure = match tokio::time::timeout(TAB_DISPOSE_TIMEOUT, dispose).await {
        Ok(Ok(_)) => return,
        Ok(Err(error)) => format!("could not dispose a browser context: {error}"),
        Err(_) => "disposing a browser context timed out".to_owned(),
    };
    instance.break_with(failure);
}

/// Scrubs a tab whose render went well and keeps it for the next render of its affinity, or
/// disposes it if scrubbing fails or the browser takes no more renders.
async fn park(inner: Arc<Inner>, instance: Arc<Instance>, mut tab: Tab, reuse: Reuse) {
    let started = Instant::now();
    let scrubbed = tokio::time::timeout(SCRUB_TIMEOUT, scrub(&instance, &tab, &reuse.documents))
        .await
        .map_err(|_| CdpError::Timeout)
        .and_then(|result| result);
    if let Err(error) = &scrubbed {
        tracing::debug!(browser.id = instance.id, %error, "could not scrub a tab; disposing it");
    }
    // The contexts to dispose: this tab's if it cannot be kept, or the kept tabs it displaces.
    let to_dispose = {
        let mut state = lock(&instance.state);
        if scrubbed.is_err() || !instance.accepting(&state, inner.settings.recycle_after) {
            vec![tab.context]
        } else {
            // At most one kept tab per render slot: the oldest goes first.
            let mut evicted = Vec::new();
            while state.parked.len() >= inner.settings.tabs_per_browser.max(1) {
                evicted.push(state.parked.remove(0).tab.context);
            }
            tab.prepared = reuse.prepared;
            tracing::debug!(
                browser.id = instance.id,
                site = %reuse.affinity.site,
                scrub_ms = started.elapsed().as_millis() as u64,
                "tab kept for the domain's next render"
            );
            state.parked.push(Parked {
                affinity: reuse.affinity,
                tab,
                since: Instant::now(),
            });
            evicted
        }
    };
    instance.changed.notify_one();
    inner.tab_ready.notify_waiters();
    for context in to_dispose {
        dispose(instance.clone(), context).await;
    }
}

/// Leaves nothing of the last page in a tab: the page's scripts are switched off and its session
/// storage (the tab's) cleared, the page is replaced by `about:blank`, then `window.name`, the
/// context's cookies, every storage of the origins whose documents it loaded (`documents`), the
/// tab's history and the context's permissions are cleared, and the context's HTTP cache too if
/// the page had cookies: responses cached with them may have been made for them.
async fn scrub(
    instance: &Instance,
    tab: &Tab,
    documents: &BTreeSet<String>,
) -> Result<(), CdpError> {
    let page = &tab.page;
    // No script of the page runs from here on (no timer, no unload handler writing storage on its
    // way out), while its session storage, which belongs to the tab, is cleared: it can only be
    // reached through a frame of its origin.
    page.execute(SetScriptExecutionDisabledParams::new(true))
        .await?;
    page.execute(dom_storage::EnableParams::default()).await?;
    for origin in documents {
        page.execute(dom_storage::ClearParams::new(StorageId {
            security_origin: Some(origin.clone()),
            storage_key: None,
            is_local_storage: false,
        }))
        .await?;
    }
    page.execute(NavigateParams::new("about:blank")).await?;
    page.execute(SetScriptExecutionDisabledParams::new(false))
        .await?;
    // The window's name outlives its documents within a site; `about:blank` runs no page script.
    page.execute(EvaluateParams::new("window.name = ''"))
        .await?;
    let cookies = instance
        .browser
        .execute(GetCookiesParams {
            browser_context_id: Some(tab.context.clone()),
        })
        .await?;
    let had_cookies = !cookies.result.cookies.is_empty();
    instance
        .browser
        .execute(ClearCookiesParams {
            browser_context_id: Some(tab.context.clone()),
        })
        .await?;
    for origin in documents {
        page.execute(ClearDataForOriginParams::new(origin.clone(), "all"))
            .await?;
    }
    if had_cookies {
        page.execute(ClearBrowserCacheParams::default()).await?;
    }
    page.execute(ResetNavigationHistoryParams::default())
        .await?;
    instance
        .browser
        .execute(ResetPermissionsParams {
            browser_context_id: Some(tab.context.clone()),
        })
        .await?;
    Ok(())
}

impl Instance {
    async fn launch(settings: &PoolSettings, id: u64) -> anyhow::Result<Arc<Instance>> {
        let (process, ws_url) = ChromeProcess::launch(
            &settings.chrome_path,
            &settings.profile_dir,
            &settings.extra_args,
            LAUNCH_TIMEOUT,
        )
        .await?;
        let devtools = DevtoolsRefusal::new(&settings.devtools_refusals, &ws_url);
        let config = HandlerConfig {
            // Certificate errors stay errors: a render must not be steered by a forged origin.
            ignore_https_errors: false,
            ignore_invalid_messages: true,
            // Each render sets its own viewport for its device class.
            viewport: None,
            context_ids: Vec::new(),
            request_timeout: CDP_COMMAND_TIMEOUT,
            request_intercept: false,
            cache_enabled: true,
        };
        let (browser, mut handler) = match Browser::connect_with_config(ws_url, config).await {
            Ok(connected) => connected,
            Err(error) => {
                if let Err(error) = process.terminate(TERMINATE_GRACE).await {
                    tracing::error!(browser.id = id, %error, "could not take down a browser that failed to connect");
                }
                process.remove_profile().await;
                return Err(anyhow::Error::new(error)
                    .context("could not connect to chromium's DevTools endpoint"));
            }
        };

        let dead = CancellationToken::new();
        let closing = CancellationToken::new();
        // The handler drives the whole connection: it must be polled for anything to move. It stops
        // at the first error, since a broken connection is a broken browser.
        let handler_task = tokio::spawn({
            let dead_on_exit = dead.clone().drop_guard();
            let closing = closing.clone();
            async move {
                let _dead_on_exit = dead_on_exit;
                while let Some(event) = handler.next().await {
                    if let Err(error) = event {
                        if closing.is_cancelled() {
                            tracing::debug!(browser.id = id, %error, "the CDP connection closed");
                        } else {
                            tracing::warn!(browser.id = id, %error, "the CDP connection failed");
                        }
                        break;
                    }
                }
            }
        });
        tokio::spawn({
            let dead = dead.clone();
            let exited = process.exited();
            async move {
                tokio::select! {
                    _ = exited.cancelled() => dead.cancel(),
                    _ = dead.cancelled() => {}
                }
            }
        });

        Ok(Arc::new(Instance {
            id,
            started: Instant::now(),
            browser,
            process,
            handler: Mutex::new(Some(handler_task)),
            state: Mutex::new(InstanceState::default()),
            changed: Notify::new(),
            dead,
            closing,
            memory_bytes: AtomicU64::new(0),
            _devtools: devtools,
            faithful: settings.faithful,
        }))
    }

    fn accepting(&self, state: &InstanceState, recycle_after: u64) -> bool {
        !state.retiring
            && state.broken.is_none()
            && state.renders < recycle_after
            && !self.dead.is_cancelled()
    }

    fn break_with(&self, reason: String) {
        lock(&self.state).broken.get_or_insert(reason);
        self.changed.notify_one();
    }

    async fn new_tab(&self, device: DeviceClass) -> Result<Tab, CdpError> {
        self.new_tab_with(device, None).await
    }

    /// A tab in a fresh context; with `proxy`, the context's traffic goes through that proxy
    /// (loopback included, as with the browser's own) instead of the browser's.
    async fn new_tab_with(
        &self,
        device: DeviceClass,
        proxy: Option<&str>,
    ) -> Result<Tab, CdpError> {
        let mut params = CreateBrowserContextParams::default();
        if let Some(proxy) = proxy {
            params.proxy_server = Some(proxy.to_owned());
            params.proxy_bypass_list = Some("<-loopback>".to_owned());
        }
        let context = self
            .browser
            .execute(params)
            .await?
            .result
            .browser_context_id;
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .map_err(CdpError::msg)?;
        let opened = match self.browser.new_page(params).await {
            Ok(page) => render::prepare(
                &page,
                Prepared::default(),
                device,
                &ResourceBlocking::default(),
                self.faithful,
            )
            .await
            .map(|prepared| (page, prepared))
            .map_err(|e| CdpError::msg(e.to_string())),
            Err(error) => Err(error),
        };
        match opened {
            Ok((page, prepared)) => Ok(Tab {
                context,
                page,
                prepared,
                proxy: proxy.map(str::to_owned),
            }),
            Err(error) => {
                let _ = self
                    .browser
                    .execute(DisposeBrowserContextParams::new(context))
                    .await;
                Err(error)
            }
        }
    }
}

/// Runs one browser slot until shutdown: launch, serve, retire, launch again.
async fn supervise(inner: Arc<Inner>, slot: usize) {
    let mut backoff = INITIAL_BACKOFF;
    let mut failures = 0u32;
    // Whether this slot's last browser was retired by a routine recycle and counts in
    // `replacing` until its successor is up (or fails to start).
    let mut replacing = false;
    let stop_replacing = |replacing: &mut bool| {
        if std::mem::take(replacing) {
            inner.replacing.fetch_sub(1, Ordering::AcqRel);
        }
    };
    while !inner.shutdown.is_cancelled() {
        let id = inner.next_browser_id.fetch_add(1, Ordering::Relaxed);
        let launched = Instance::launch(&inner.settings, id).await;
        if let Ok(instance) = &launched {
            // In the slot before `replacing` drops, so that the count never dips in between.
            *lock(&inner.slots[slot]) = Some(instance.clone());
        }
        stop_replacing(&mut replacing);
        let failure = match launched {
            Ok(instance) => {
                tracing::info!(
                    browser.id = id,
                    browser.pid = instance.process.pid(),
                    slot,
                    "browser started"
                );
                let reason = serve(&inner, &instance).await;
                lock(&instance.state).retiring = true;
                if matches!(
                    reason,
                    Retirement::Recycle | Retirement::Aged | Retirement::Memory(_)
                ) && !inner.shutdown.is_cancelled()
                {
                    // Counted before the slot empties, so that readiness never sees neither.
                    inner.replacing.fetch_add(1, Ordering::AcqRel);
                    replacing = true;
                }
                *lock(&inner.slots[slot]) = None;
                let lived = instance.started.elapsed();
                if let Some(why) = reason.recycle_reason() {
                    inner.recycled[why as usize].fetch_add(1, Ordering::Relaxed);
                }
                let failed = matches!(reason, Retirement::Dead | Retirement::Broken(_));
                inner.tasks.spawn(retire(instance, reason.to_string()));
                (failed && lived < MIN_HEALTHY_LIFETIME)
                    .then(|| format!("browser {id} failed after {lived:?}: {reason}"))
            }
            Err(error) => Some(format!("{error:#}")),
        };
        match failure {
            None => {
                backoff = INITIAL_BACKOFF;
                failures = 0;
            }
            Some(error) => {
                failures += 1;
                tracing::error!(slot, failures, retry_in_ms = backoff.as_millis() as u64, %error, "could not start a browser");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    stop_replacing(&mut replacing);
}

enum Retirement {
    Recycle,
    Aged,
    Memory(u64),
    Shutdown,
    Dead,
    Broken(String),
}

impl Retirement {
    /// How the metrics count it (a shutdown replaces nothing).
    fn recycle_reason(&self) -> Option<RecycleReason> {
        match self {
            Retirement::Recycle => Some(RecycleReason::Renders),
            Retirement::Aged => Some(RecycleReason::Age),
            Retirement::Memory(_) => Some(RecycleReason::Memory),
            Retirement::Shutdown => None,
            Retirement::Dead => Some(RecycleReason::Crashed),
            Retirement::Broken(_) => Some(RecycleReason::Unresponsive),
        }
    }
}

impl std::fmt::Display for Retirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retirement::Recycle => f.write_str("served its share of renders"),
            Retirement::Aged => f.write_str("reached its age limit"),
            Retirement::Memory(mb) => write!(f, "uses {mb} MB, above its memory limit"),
            Retirement::Shutdown => f.write_str("the worker is shutting down"),
            Retirement::Dead => f.write_str("the browser process or its connection is gone"),
            Retirement::Broken(reason) => write!(f, "{reason}"),
        }
    }
}

/// Keeps a browser's warm tabs topped up until it has to go, and says why it has to.
async fn serve(inner: &Arc<Inner>, instance: &Arc<Instance>) -> Retirement {
    let tabs = inner.settings.tabs_per_browser.max(1);
    // Memory is checked on this schedule however busy the browser is.
    let mut next_health = Instant::now() + HEALTH_INTERVAL;
    // `None` for an age limit too far away to represent: never.
    let aged_at = instance.started.checked_add(inner.settings.recycle_age);
    loop {
        let changed = instance.changed.notified();
        let next_expiry: Option<Instant>;
        {
            let mut state = lock(&instance.state);
            if inner.shutdown.is_cancelled() {
                return Retirement::Shutdown;
            }
            if instance.dead.is_cancelled() {
                return Retirement::Dead;
            }
            if let Some(reason) = &state.broken {
                return Retirement::Broken(reason.clone());
            }
            if state.renders >= inner.settings.recycle_after {
                return Retirement::Recycle;
            }
            if instance.started.elapsed() >= inner.settings.recycle_age {
                return Retirement::Aged;
            }
            // Kept tabs unused for too long go (the oldest are first).
            let now = Instant::now();
            while state
                .parked
                .first()
                .is_some_and(|parked| now >= parked.since + PARKED_TTL)
            {
                let expired = state.parked.remove(0).tab.context;
                inner.tasks.spawn(dispose(instance.clone(), expired));
            }
            next_expiry = state.parked.first().map(|parked| parked.since + PARKED_TTL);
            // One warm tab per render slot not in use, and always at least one spare, so that the
            // next render finds a tab ready even while all the others are busy.
            let target = tabs.saturating_sub(state.in_use).max(1);
            let missing = target
                .saturating_sub(state.warm.len() + state.creating)
                .min(MAX_PARALLEL_CREATES.saturating_sub(state.creating));
            for _ in 0..missing {
                // Both device classes kept warm, evenly: Google crawls mobile-first, others desktop.
                let mobile = state.creating_mobile
                    + state
                        .warm
                        .iter()
                        .filter(|t| t.prepared.device == Some(DeviceClass::Mobile))
                        .count();
                let desktop = state.creating + state.warm.len() - mobile;
                let device = if mobile < desktop {
                    DeviceClass::Mobile
                } else {
                    DeviceClass::Desktop
                };
                state.creating += 1;
                if device == DeviceClass::Mobile {
                    state.creating_mobile += 1;
                }
                inner
                    .tasks
                    .spawn(create_tab(inner.clone(), instance.clone(), device));
            }
        }
        tokio::select! {
            _ = changed => {}
            _ = instance.dead.cancelled() => {}
            _ = inner.shutdown.cancelled() => {}
            // The age limit and kept tabs' expiries are checked at the top of the loop: wake for the
            // first of them on time.
            _ = async {
                match aged_at.into_iter().chain(next_expiry).min() {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tokio::time::sleep_until(next_health) => {
                next_health = Instant::now() + HEALTH_INTERVAL;
                let limit = inner.settings.recycle_memory_mb.saturating_mul(1024 * 1024);
                let pid = instance.process.pid();
                let used = tokio::task::spawn_blocking(move || group_memory_bytes(pid))
                    .await
                    .unwrap_or(0);
                instance.memory_bytes.store(used, Ordering::Relaxed);
                if used > limit {
                    return Retirement::Memory(used / (1024 * 1024));
                }
            }
        }
    }
}

async fn create_tab(inner: Arc<Inner>, instance: Arc<Instance>, device: DeviceClass) {
    let started = Instant::now();
    let created = tokio::time::timeout(TAB_CREATE_TIMEOUT, instance.new_tab(device)).await;
    let mut state = lock(&instance.state);
    state.creating = state.creating.saturating_sub(1);
    if device == DeviceClass::Mobile {
        state.creating_mobile = state.creating_mobile.saturating_sub(1);
    }
    match created {
        Ok(Ok(tab)) => {
            tracing::trace!(
                browser.id = instance.id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "warm tab ready"
            );
            // A tab for a retiring browser is simply dropped: it dies with the process.
            if instance.accepting(&state, inner.settings.recycle_after) {
                state.warm.push(tab);
                drop(state);
                inner.tab_ready.notify_waiters();
            }
        }
        Ok(Err(error)) => {
            state
                .broken
                .get_or_insert(format!("could not open a tab: {error}"));
        }
        Err(_) => {
            state.broken.get_or_insert(format!(
                "opening a tab took longer than {TAB_CREATE_TIMEOUT:?}"
            ));
        }
    }
    instance.changed.notify_one();
}

/// Lets a browser finish its renders, then closes it and takes its process group down.
async fn retire(instance: Arc<Instance>, reason: String) {
    let renders = lock(&instance.state).renders;
    tracing::info!(browser.id = instance.id, browser.renders = renders, %reason, "retiring browser");
    let drain_deadline = Instant::now() + MAX_DRAIN;
    loop {
        let changed = instance.changed.notified();
        if lock(&instance.state).in_use == 0 {
            break;
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(drain_deadline) => {
                tracing::error!(browser.id = instance.id, "renders still running after {MAX_DRAIN:?}; closing the browser anyway");
                break;
            }
        }
    }
    {
        let mut state = lock(&instance.state);
        state.warm.clear();
        state.parked.clear();
    }

    // A polite close first, so that Chromium shuts down in order; the group is signalled either way.
    instance.closing.cancel();
    let exited = instance.process.exited();
    if !instance.dead.is_cancelled() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            instance.browser.execute(CloseParams::default()),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), exited.cancelled()).await;
    }
    match instance.process.terminate(TERMINATE_GRACE).await {
        Ok(()) => tracing::info!(
            browser.id = instance.id,
            browser.pid = instance.process.pid(),
            "browser processes exited"
        ),
        Err(error) => {
            tracing::error!(browser.id = instance.id, %error, "browser processes survived termination")
        }
    }
    if let Some(handler) = lock(&instance.handler).take() {
        handler.abort();
    }
    instance.process.remove_profile().await;
}
