//! Kiln's render worker: takes render jobs from the queues, renders them in headless Chromium, stores
//! the pages in Redis and announces each outcome to the waiting gateways (or, for a preview, replies
//! to the dashboard), and logs every render.
//!
//! Three queue consumers share one browser pool: the render queue's (bots and previews) with one
//! slot per tab, the warm queue's with `KILN_WORKER_WARM_CONCURRENCY` slots and the parity queue's
//! with `KILN_WORKER_PARITY_CONCURRENCY`, so cache warming and parity checks never take more than
//! those few tabs however many of them wait.
//!
//! Architecture invariant: the worker talks to Redis only through `kiln-store` and `kiln-queue`, and
//! to Chromium only through the pool. A render never touches a browser context another render used,
//! and every Chromium process the worker starts is gone (reaped, profile deleted) by the time
//! [`Application::run_until_stopped`] returns.

pub mod admin;
pub mod blocking;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod handler;
pub mod metrics;
pub mod output;
pub mod parity;
pub mod pool;
mod process;
pub mod render;
pub mod settings;

pub use handler::{RenderHandler, RenderOptions};
pub use pool::{BrowserPool, PoolSettings, Priority};
pub use process::group_memory_bytes;
pub use render::{RenderError, Rendered};
pub use settings::{LogFormat, Settings};

use anyhow::Context;
use kiln_egress::{EgressProxy, EgressSettings};
use kiln_queue::{QueueKind, QueueSettings, RenderQueue};
use kiln_store::{Health, Store};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the queue consumer waits before restarting after a failure, at first and at most.
const QUEUE_RESTART_BACKOFF: Duration = Duration::from_millis(500);
const QUEUE_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a consumer waiting to restart looks whether Redis is back.
const REDIS_PROBE: Duration = Duration::from_millis(200);
/// A consumer that ran this long before failing starts the backoff over.
const QUEUE_HEALTHY_RUN: Duration = Duration::from_secs(30);

/// A built worker, ready to run.
pub struct Application {
    settings: Settings,
    store: Store,
    pool: BrowserPool,
    egress: EgressProxy,
    /// The egress proxies of tenants with grants of their own, by tenant id.
    tenant_proxies: HashMap<String, EgressProxy>,
    admin_listener: TcpListener,
    admin_port: u16,
}

impl Application {
    /// Connects to Redis, binds the admin port and starts launching browsers (in the background:
    /// `/readyz` tells when one is up).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect(settings.store_settings())
            .await
            .context("failed to connect to redis")?;
        let admin_listener = TcpListener::bind(settings.admin_listen)
            .await
            .with_context(|| {
                format!("failed to bind the admin address {}", settings.admin_listen)
            })?;
        let admin_port = admin_listener
            .local_addr()
            .context("failed to read the admin address")?
            .port();
        // Every connection Chromium makes goes through an egress proxy, which refuses Kiln's own
        // services and anything outside the public internet and what the operator granted. The
        // browsers' own proxy applies the grants for every tenant; each tenant with grants of its
        // own has a proxy of its own, which its renders' browser contexts use instead.
        let platform = kiln_runtime::platform::platform_endpoints(
            &[admin_listener.local_addr()?],
            &[&settings.redis_url, &settings.queue_redis_url],
            &settings.platform_addrs,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let policy = settings
            .allowed_private_nets
            .clone()
            .with_platform(platform);
        let tenants: Vec<String> = policy
            .tenants_with_grants()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let scopes = std::iter::once(None).chain(tenants.iter().map(|t| Some(t.as_str())));
        // Every browser's DevTools address, while it lives: refused by every proxy.
        let devtools = kiln_egress::Refusals::default();
        let mut proxies = EgressProxy::start_group(
            scopes
                .map(|tenant| EgressSettings {
                    policy: policy.for_tenant(tenant),
                    refusals: devtools.clone(),
                    ..EgressSettings::default()
                })
                .collect(),
        )
        .await
        .context("failed to start the egress proxies")?;
        let egress = proxies.remove(0);
        let tenant_proxies: HashMap<String, EgressProxy> =
            tenants.into_iter().zip(proxies).collect();
        let mut pool_settings = settings.pool_settings();
        pool_settings.extra_args.extend(egress.chromium_args());
        pool_settings.devtools_refusals = devtools;
        let pool = BrowserPool::start(pool_settings);
        tracing::info!(
            worker.name = %settings.worker_name,
            admin.port = admin_port,
            egress.proxy = %egress.proxy_url(),
            egress.tenant_proxies = tenant_proxies.len(),
            browsers = settings.browsers,
            tabs_per_browser = settings.tabs_per_browser,
            warm_concurrency = settings.warm_concurrency,
            "worker started"
        );
        Ok(Application {
            settings,
            store,
            pool,
            egress,
            tenant_proxies,
            admin_listener,
            admin_port,
        })
    }

    /// The port the admin server listens on (useful when the settings asked for port 0).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The browser pool, for diagnostics.
    pub fn pool(&self) -> &BrowserPool {
        &self.pool
    }

    /// Takes jobs until `shutdown` completes; then stops taking jobs, lets the renders in flight
    /// finish (each is bounded by its cap and watchdog), closes every browser and returns once their
    /// processes are gone. Redis outages do not stop the worker: the queue consumers are restarted
    /// until shutdown.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            settings,
            store,
            pool,
            egress,
            tenant_proxies,
            admin_listener,
            ..
        } = self;
        let stop = CancellationToken::new();
        let queue_settings = settings.queue_settings();
        let render_queue = match RenderQueue::connect(&queue_settings).await {
            Ok(queue) => Some(queue),
            Err(error) => {
                tracing::warn!(%error, "cannot see the render queue; background renders will not wait for queued ones");
                None
            }
        };
        let metrics = Arc::new(metrics::WorkerMetrics::new(&pool));
        let admin_state = admin::AdminState::new(
            store.health(),
            pool.clone(),
            Arc::clone(&metrics),
            render_queue.clone(),
        );

        let admin = tokio::spawn(
            axum::serve(admin_listener, admin::router(admin_state.clone()))
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        tokio::spawn({
            let stop = stop.clone();
            let admin_state = admin_state.clone();
            async move {
                tokio::select! {
                    _ = shutdown => tracing::info!("shutting down: no new jobs; finishing the renders in flight"),
                    _ = stop.cancelled() => {}
                }
                admin_state.set_stopping();
                stop.cancel();
            }
        });

        let handler = RenderHandler::new(
            pool.clone(),
            handler::StoreViews::of(&store),
            settings.worker_name.clone(),
            RenderOptions {
                quiet: settings.render_quiet,
                faithful: settings.render_fidelity,
            },
            render_queue,
            metrics,
            tenant_proxies
                .iter()
                .map(|(tenant, proxy)| (tenant.clone(), proxy.proxy_url()))
                .collect(),
        );
        // Each consumer runs as a task of its own. apalis fetches from Redis whenever its task is
        // woken, for whatever reason: two consumers joined in one task woke each other with every
        // fetch and, idle, fetched thousands of times a second between them.
        let spawn_consumer = |kind: QueueKind, name: String, concurrency: usize| {
            tokio::spawn(consume(
                queue_settings.clone(),
                kind,
                name,
                concurrency,
                handler.clone(),
                store.health(),
                stop.clone(),
            ))
        };
        let render = spawn_consumer(
            QueueKind::Render,
            settings.worker_name.clone(),
            settings.concurrency(),
        );
        let warm = if settings.warm_concurrency == 0 {
            tracing::info!("KILN_WORKER_WARM_CONCURRENCY is 0: not taking warm jobs");
            None
        } else {
            Some(spawn_consumer(
                QueueKind::Warm,
                format!("{}.warm", settings.worker_name),
                settings.warm_concurrency,
            ))
        };
        let parity = if settings.parity_concurrency == 0 {
            tracing::info!("KILN_WORKER_PARITY_CONCURRENCY is 0: not taking parity checks");
            None
        } else {
            Some(spawn_consumer(
                QueueKind::Parity,
                format!("{}.parity", settings.worker_name),
                settings.parity_concurrency,
            ))
        };
        for consumer in std::iter::once(render).chain(warm).chain(parity) {
            if let Err(error) = consumer.await {
                // Half a worker would look healthy while taking only one queue's jobs: stop.
                tracing::error!(%error, "a queue consumer task failed; stopping the worker");
                stop.cancel();
            }
        }
        stop.cancel();

        handler.wait_idle().await;
        pool.shutdown().await;
        egress.shutdown().await;
        for proxy in tenant_proxies.into_values() {
            proxy.shutdown().await;
        }
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the admin server failed"),
            Err(error) => tracing::error!(%error, "the admin server task failed"),
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Runs a consumer of the queue `kind` until `stop` is cancelled. The consumer stops when Redis goes
/// away; it is restarted (with backoff) until then, under a new name each time: jobs the old
/// consumer held are then orphaned, and re-queued by the queue's heartbeat check instead of being
/// left to a consumer that is gone.
async fn consume(
    settings: QueueSettings,
    kind: QueueKind,
    base_name: String,
    concurrency: usize,
    handler: RenderHandler,
    redis: Health,
    stop: CancellationToken,
) {
    let mut backoff = QUEUE_RESTART_BACKOFF;
    for attempt in 0u64.. {
        let name = match attempt {
            0 => base_name.clone(),
            n => format!("{base_name}.{n}"),
        };
        let started = tokio::time::Instant::now();
        let consumed = kiln_queue::run_worker(
            &settings,
            kind,
            &name,
            concurrency,
            Arc::new(handler.clone()),
            stop.clone().cancelled_owned(),
        )
        .await;
        if stop.is_cancelled() {
            if let Err(error) = consumed {
                tracing::warn!(queue = kind.as_str(), %error, "the queue consumer stopped with an error during shutdown");
            }
            return;
        }
        if started.elapsed() > QUEUE_HEALTHY_RUN {
            backoff = QUEUE_RESTART_BACKOFF;
        }
        match consumed {
            Ok(()) => tracing::warn!(
                queue = kind.as_str(),
                retry_in_ms = backoff.as_millis() as u64,
                "the queue consumer stopped; restarting it"
            ),
            Err(error) => {
                tracing::error!(queue = kind.as_str(), %error, retry_in_ms = backoff.as_millis() as u64, "the queue consumer failed; restarting it")
            }
        }
        if !sit_out(backoff, &redis, &stop).await {
            return;
        }
        backoff = (backoff * 2).min(QUEUE_MAX_BACKOFF);
    }
}

/// Waits out a consumer's restart `backoff`, or less: once Redis, found down, answers again, the
/// consumer starts again at once rather than sitting out a backoff grown during the outage. (A
/// consumer that fails while Redis answers waits the whole backoff.) False if `stop` came first.
async fn sit_out(backoff: Duration, redis: &Health, stop: &CancellationToken) -> bool {
    let until = tokio::time::Instant::now() + backoff;
    let mut redis_was_down = false;
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep((until - now).min(REDIS_PROBE)) => {}
            _ = stop.cancelled() => return false,
        }
        match redis.ping().await {
            Ok(()) if redis_was_down => return true,
            Ok(()) => {}
            Err(_) => redis_was_down = true,
        }
    }
}

/// chromiumoxide warns about every CDP message its protocol definitions do not know, which newer
/// Chromium versions send on every render; those warnings are silenced unless `RUST_LOG` names
/// chromiumoxide.
const QUIET_LOGS: &[&str] = &["chromiumoxide::handler=error"];

/// The `kiln-worker` program: reads the settings from the environment, sets up logging and runs
/// until SIGINT/SIGTERM.
pub async fn run_from_env() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    kiln_runtime::Logs {
        quiet: QUIET_LOGS,
        ..kiln_runtime::Logs::new(settings.log_format)
    }
    .init();
    let app = Application::build(settings).await?;
    app.run_until_stopped(kiln_runtime::shutdown_signal()).await
}
