//! Kiln's render worker: takes render jobs from the queue, renders them in headless Chromium, stores
//! the pages in Redis and announces each outcome to the waiting gateways.
//!
//! Architecture invariant: the worker talks to Redis only through `kiln-store` and `kiln-queue`, and
//! to Chromium only through the pool. A render never touches a browser context another render used,
//! and every Chromium process the worker starts is gone (reaped, profile deleted) by the time
//! [`Application::run_until_stopped`] returns.

pub mod admin;
pub mod blocking;
pub mod handler;
pub mod output;
pub mod pool;
mod process;
pub mod render;
pub mod settings;

pub use handler::RenderHandler;
pub use pool::{BrowserPool, PoolSettings};
pub use process::group_memory_bytes;
pub use render::{RenderError, Rendered};
pub use settings::{LogFormat, Settings};

use anyhow::Context;
use kiln_egress::{EgressProxy, EgressSettings};
use kiln_store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the queue consumer waits before restarting after a failure, at first and at most.
const QUEUE_RESTART_BACKOFF: Duration = Duration::from_millis(500);
const QUEUE_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A consumer that ran this long before failing starts the backoff over.
const QUEUE_HEALTHY_RUN: Duration = Duration::from_secs(30);

/// A built worker, ready to run.
pub struct Application {
    settings: Settings,
    store: Store,
    pool: BrowserPool,
    egress: EgressProxy,
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
        // Every connection Chromium makes goes through the egress proxy, which refuses anything
        // outside the public internet and the operator's allowed networks.
        let egress = EgressProxy::start(EgressSettings {
            allowed: settings.allowed_private_nets.clone(),
            ..EgressSettings::default()
        })
        .await
        .context("failed to start the egress proxy")?;
        let mut pool_settings = settings.pool_settings();
        pool_settings.extra_args.extend(egress.chromium_args());
        let pool = BrowserPool::start(pool_settings);
        tracing::info!(
            worker.name = %settings.worker_name,
            admin.port = admin_port,
            egress.proxy = %egress.proxy_url(),
            browsers = settings.browsers,
            tabs_per_browser = settings.tabs_per_browser,
            "worker started"
        );
        Ok(Application {
            settings,
            store,
            pool,
            egress,
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
    /// processes are gone. Redis outages do not stop the worker: the queue consumer is restarted
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
            admin_listener,
            ..
        } = self;
        let stop = CancellationToken::new();
        let admin_state = admin::AdminState::new(store.clone(), pool.clone());

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

        let handler = RenderHandler::new(pool.clone(), store, settings.render_quiet);
        let queue_settings = settings.queue_settings();
        // The consumer stops when Redis goes away; it is restarted (with backoff) until shutdown,
        // under a new name each time: jobs the old consumer held are then orphaned, and re-queued
        // by the queue's heartbeat check instead of being left to a consumer that is gone.
        let mut backoff = QUEUE_RESTART_BACKOFF;
        for attempt in 0u64.. {
            let name = match attempt {
                0 => settings.worker_name.clone(),
                n => format!("{}.{n}", settings.worker_name),
            };
            let started = tokio::time::Instant::now();
            let consumed = kiln_queue::run_worker(
                &queue_settings,
                &name,
                settings.concurrency(),
                Arc::new(handler.clone()),
                stop.clone().cancelled_owned(),
            )
            .await;
            if stop.is_cancelled() {
                if let Err(error) = consumed {
                    tracing::warn!(%error, "the queue consumer stopped with an error during shutdown");
                }
                break;
            }
            if started.elapsed() > QUEUE_HEALTHY_RUN {
                backoff = QUEUE_RESTART_BACKOFF;
            }
            match consumed {
                Ok(()) => tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "the queue consumer stopped; restarting it"
                ),
                Err(error) => {
                    tracing::error!(%error, retry_in_ms = backoff.as_millis() as u64, "the queue consumer failed; restarting it")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(QUEUE_MAX_BACKOFF);
        }
        stop.cancel();

        handler.wait_idle().await;
        pool.shutdown().await;
        egress.shutdown().await;
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the admin server failed"),
            Err(error) => tracing::error!(%error, "the admin server task failed"),
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}
