//! The gateway: the edge-facing HTTP service. Bots get rendered pages from the cache (rendering on a
//! miss through the queue); people are proxied to the customer's origin untouched.
//!
//! Architecture invariant: the gateway is stateless and never talks to Postgres or Chromium. What it
//! knows about domains comes from Redis, mirrored in memory.

mod acme;
mod admin;
mod bot;
mod directory;
mod error;
mod guard;
mod hot;
mod limits;
mod linger;
mod log_context;
mod metrics;
mod proxy;
mod representation;
mod routes;
mod serve;
mod service;
pub mod settings;
mod state;
mod usage;
mod waiters;

pub use settings::Settings;

use anyhow::Context;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kiln_queue::{QueueSettings, RenderQueue};
use kiln_store::{Store, StoreEvent, StoreSettings};
use state::{App, AppState};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often usage counts are written to Redis.
const USAGE_FLUSH: Duration = Duration::from_secs(1);

pub struct Application {
    listener: TcpListener,
    admin_listener: TcpListener,
    app: AppState,
    header_timeout: Duration,
    /// How often the domain directory is brought up to date (its changes since the version held
    /// asked for), in case an event was missed.
    directory_resync: Duration,
}

impl Application {
    /// Connects to Redis, loads the domain directory and binds both ports (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // The bot classifier's patterns are compiled once, off the runtime's threads (it is CPU
        // work), before anything is served.
        tokio::task::spawn_blocking(kiln_core::BotClassifier::shared)
            .await
            .context("compiling the bot patterns failed")?;
        let mut store_settings = StoreSettings::new(&settings.redis_url, &settings.redis_prefix);
        store_settings.command_timeout = settings.redis_timeout;
        let store = Store::connect(store_settings)
            .await
            .context("failed to connect to redis")?;
        let queue = RenderQueue::connect(&QueueSettings::new(
            &settings.queue_redis_url,
            &settings.redis_prefix,
            settings.redis_timeout,
        ))
        .await
        .context("failed to connect to the render queue")?;
        let crawlers = if settings.verify_crawlers {
            let verifier = kiln_verify::CrawlerVerifier::new(
                &kiln_verify::VerifierSettings {
                    nameserver: settings.dns_server,
                    timeout: settings.dns_timeout,
                },
                settings.crawler_ranges.clone(),
            )
            .context(
                "could not set up the crawler checks' DNS resolver (set KILN_DNS_SERVER, or \
                 KILN_GATEWAY_VERIFY_CRAWLERS=false to turn the checks off)",
            )?;
            for (crawler, networks) in settings.crawler_ranges.counts() {
                tracing::info!(crawler, networks, "crawler ranges loaded");
            }
            let unchecked: Vec<_> = kiln_core::crawlers::CRAWLERS
                .iter()
                .filter(|c| c.dns_domains.is_empty() && !settings.crawler_ranges.has(c))
                .map(|c| c.name)
                .collect();
            if !unchecked.is_empty() {
                tracing::info!(
                    crawlers = unchecked.join(", "),
                    "these crawlers publish only IP ranges and none were loaded \
                     (KILN_GATEWAY_CRAWLER_RANGES): their requests are not checked"
                );
            }
            Some(verifier)
        } else {
            tracing::warn!("crawler checks are off: anyone claiming to be Googlebot gets renders");
            None
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let admin_listener = TcpListener::bind(settings.admin_listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.admin_listen))?;
        // Kiln's own endpoints, which no origin may be, whatever KILN_ALLOWED_PRIVATE_NETS grants.
        let platform = kiln_runtime::platform::platform_endpoints(
            &[listener.local_addr()?, admin_listener.local_addr()?],
            &[&settings.redis_url, &settings.queue_redis_url],
            &settings.platform_addrs,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let origin_policy = settings
            .allowed_private_nets
            .clone()
            .with_platform(platform);
        for grant in origin_policy.portless_grants() {
            tracing::warn!(
                %grant,
                "KILN_ALLOWED_PRIVATE_NETS opens every port of this network: name the origins' ports"
            );
        }
        let metrics = Arc::new(metrics::GatewayMetrics::new());
        let app = Arc::new(App {
            store: state::StoreViews::of(&store),
            queue,
            directory: directory::Directory::new(metrics.directory_reads()),
            waiters: Default::default(),
            usage: Default::default(),
            hot: hot::HotCache::new(settings.hot_cache_bytes),
            events_live: Default::default(),
            events_started: Default::default(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            trusted_proxies: settings.trusted_proxies.clone(),
            bot_limits: Default::default(),
            crawlers,
            verify_wait: settings.verify_wait,
            render_budget: settings.render_budget,
            max_queued_renders: settings.max_queued_renders,
            max_body_bytes: settings.max_body_bytes,
            metrics,
            origin: proxy::OriginClient::new(
                origin_policy,
                settings.origin_connect_timeout,
                settings.origin_response_timeout,
            ),
            service_host: settings.service_host.clone(),
            token_limits: limits::TokenLimits::new(
                settings.service_token_rate,
                settings.service_token_burst,
            ),
            token_uses: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(service::RECORD_USE_EVERY)
                .build(),
        });
        let domains = app
            .directory
            .reload(&app.store.directory)
            .await
            .context("failed to load the domain directory")?;
        tracing::info!(domains, "domain directory loaded");

        Ok(Application {
            listener,
            admin_listener,
            app,
            header_timeout: settings.header_timeout,
            directory_resync: settings.directory_resync,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown: Shared<BoxFuture<'static, ()>> = shutdown.boxed().shared();
        let events = tokio::spawn(follow_events(Arc::clone(&self.app), self.directory_resync));
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&self.app)));
        let (stop_usage, usage_stopped) = tokio::sync::oneshot::channel();
        let usage = tokio::spawn(flush_usage(Arc::clone(&self.app), usage_stopped));
        let limits = tokio::spawn({
            let app = Arc::clone(&self.app);
            async move {
                let mut every = tokio::time::interval(limits::RETAIN_EVERY);
                loop {
                    every.tick().await;
                    app.bot_limits.retain_recent();
                }
            }
        });

        let app = Arc::clone(&self.app);
        let main = serve::serve(
            self.listener,
            move |req, peer| routes::handle(Arc::clone(&app), peer, req),
            self.header_timeout,
            Arc::clone(&self.app.metrics),
            shutdown.clone(),
        );
        let admin = axum::serve(self.admin_listener, admin::router(Arc::clone(&self.app)))
            .with_graceful_shutdown(shutdown.clone());
        // Compiled by `build`, before any request.
        let bots = kiln_core::BotClassifier::shared();
        tracing::info!(
            bots.version = bots.version(),
            bots.patterns = bots.len(),
            "gateway ready"
        );
        let ((), result) = tokio::join!(main, admin.into_future());
        events.abort();
        heartbeat.abort();
        limits.abort();
        // Purges need not wait for a gateway that is gone.
        if let Err(error) = self
            .app
            .store
            .events
            .deregister_gateway(&self.app.instance)
            .await
        {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not deregister; purges wait for this gateway until its registration lapses");
        }
        // The last requests have been answered: write their counts before going.
        let _ = stop_usage.send(());
        let _ = usage.await;
        result.context("the gateway server failed")?;
        Ok(())
    }
}

/// Applies domain changes and render announcements from the event channel, resubscribing forever.
async fn follow_events(app: AppState, directory_resync: Duration) {
    loop {
        match app.store.events.subscribe().await {
            Ok(mut subscription) => {
                // Registered before pages are served from memory again, so that purges wait for
                // this gateway from then on.
                register(&app).await;
                // Anything published before the subscription took effect is picked up here; pages
                // kept in memory while no events arrived may be outdated.
                app.hot.invalidate_all();
                app.events_live
                    .store(true, std::sync::atomic::Ordering::Release);
                app.events_started
                    .store(true, std::sync::atomic::Ordering::Release);
                sync_directory(&app).await;
                let mut resync = tokio::time::interval(directory_resync);
                resync.tick().await;
                loop {
                    tokio::select! {
                        event = subscription.next() => match event {
                            Some(StoreEvent::Rendered { page_key, outcome }) => {
                                app.hot.invalidate(&page_key);
                                app.waiters.complete(&page_key, outcome);
                            }
                            Some(StoreEvent::Purged { domain_id, page_keys }) => {
                                if page_keys.is_empty() {
                                    app.hot.invalidate_domain(&domain_id);
                                } else {
                                    for page_key in &page_keys {
                                        app.hot.invalidate(page_key);
                                    }
                                }
                            }
                            // Every event before it has been applied (this loop takes them in
                            // order): a purge waiting for the gateways may answer.
                            Some(StoreEvent::Checkpoint { id }) => {
                                let app = Arc::clone(&app);
                                tokio::spawn(async move {
                                    if let Err(error) = app.store.events.acknowledge_checkpoint(&id, &app.instance).await {
                                        tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not confirm a purge");
                                    }
                                });
                            }
                            Some(StoreEvent::DomainChanged { host }) => {
                                if let Err(error) = app.directory.refresh(&app.store.directory, &host).await {
                                    tracing::warn!(error = %kiln_runtime::error_chain(&error), domain.host = %host, "could not refresh a domain");
                                }
                            }
                            Some(StoreEvent::DirectoryPublished) => {
                                if let Err(error) = app.directory.reload(&app.store.directory).await {
                                    tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not reload the domain directory");
                                }
                            }
                            Some(StoreEvent::Resync) => {
                                app.hot.invalidate_all();
                                app.events_live
                                    .store(true, std::sync::atomic::Ordering::Release);
                                sync_directory(&app).await;
                            }
                            Some(StoreEvent::Interrupted) => {
                                if app.events_live.swap(false, std::sync::atomic::Ordering::AcqRel) {
                                    tracing::warn!("the event subscription was interrupted; bots get the origin's pages until it is back");
                                }
                                app.waiters.fail_all("the event channel is interrupted");
                            }
                            None => break,
                        },
                        _ = resync.tick() => sync_directory(&app).await,
                    }
                }
                // Without events nothing would tell the in-memory pages apart from purged ones,
                // and no render would be announced to the bots waiting.
                app.events_live
                    .store(false, std::sync::atomic::Ordering::Release);
                app.waiters.fail_all("the event subscription closed");
                tracing::warn!("event subscription closed; resubscribing");
            }
            Err(error) => {
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not subscribe to events; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Registers this gateway with the ones a purge waits for (`kiln_store::Events::confirm`).
async fn register(app: &AppState) {
    if let Err(error) = app.store.events.register_gateway(&app.instance).await {
        tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not register with the gateways purges wait for");
    }
}

/// Renews the registration every [`kiln_store::GATEWAY_HEARTBEAT`] while events arrive (without
/// them, purges could not be applied, and pages are not served from memory while Redis answers).
async fn heartbeat(app: AppState) {
    let mut every = tokio::time::interval(kiln_store::GATEWAY_HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if app.events_live.load(std::sync::atomic::Ordering::Acquire) {
            register(&app).await;
        }
    }
}

// A gateway cut off from Redis serves the pages it holds until they lapse: purges must wait for
// it (and report it) at least that long after its last heartbeat.
const _: () = assert!(
    hot::MAX_LIFETIME.as_millis() + 2 * kiln_store::GATEWAY_HEARTBEAT.as_millis()
        < kiln_store::GATEWAY_LIVE_WINDOW.as_millis()
);

/// Writes usage counts every [`USAGE_FLUSH`] until `stop`, then once more. A flush is never cut
/// short: the stop is only looked at between flushes, so no taken batch is lost.
async fn flush_usage(app: AppState, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(USAGE_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        match app.usage.flush(&app.store.usage).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("usage counts are being written again");
            }
            Ok(()) => {}
            // Said once per outage, not once a second; the counts wait in memory meanwhile.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not write usage counts; keeping them for later");
            }
            Err(_) => {}
        }
    }
    if let Err(error) = app.usage.flush(&app.store.usage).await {
        tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not write the last usage counts");
    }
}

/// Brings the domain directory up to date: what changed since the version held, or all of it.
async fn sync_directory(app: &AppState) {
    if let Err(error) = app.directory.sync(&app.store.directory).await {
        tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not bring the domain directory up to date");
    }
}

/// The `kiln-gateway` program: reads the settings from the environment, sets up logging and runs
/// until SIGINT/SIGTERM.
pub async fn run_from_env() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    kiln_runtime::Logs::new(settings.log_format).init();
    let app = Application::build(settings).await?;
    app.run_until_stopped(kiln_runtime::shutdown_signal()).await
}
