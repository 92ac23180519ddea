//! The dashboard's HTTP service (`kiln-dashboard serve`): the REST API under `/api/v1`, health and
//! readiness endpoints, and the web dashboard's pages at the root.

use crate::metrics::DashboardMetrics;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use futures::FutureExt;
use kiln_control::accounts::SessionKeys;
use kiln_control::sitemaps::SitemapFetcher;
use kiln_control::{App, Settings, activity, cache, directory, domains};
use kiln_frontdoor::limits::{self, AccountLimiter, CallerLimiter};
use secrecy::ExposeSecret;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the render log and usage counters are copied from Redis into Postgres (and expired
/// renders deleted, when due).
const COPY_INTERVAL: Duration = Duration::from_secs(5);

/// How long each readiness check may take before it counts as failed.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dashboard ready to serve: connected, migrated, domains republished and the port bound.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    /// The admin port (`/metrics`, `/healthz`, `/readyz`), unless turned off.
    admin: Option<(TcpListener, Router)>,
}

#[derive(Clone)]
struct AppState(Arc<App>);

impl Application {
    /// Connects to Postgres and Redis, applies migrations, republishes every domain to Redis (so that
    /// restarting the dashboard repairs a Redis that lost its data; from then on it repairs it by
    /// itself, see [`directory::keep_published`]) and binds `settings.listen`.
    /// Port 0 picks a free port; see [`Application::port`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let app = App::connect(&settings).await?;
        app.db
            .migrate()
            .await
            .context("failed to apply the database migrations")?;
        directory::publish_all(&app)
            .await
            .context("failed to republish the domains to Redis")?;
        let secret = settings.session_secret.as_ref().context(
            "KILN_SESSION_SECRET is not set; the dashboard signs session cookies with it \
             (generate one with `openssl rand -base64 48`)",
        )?;
        let cname_target = settings.cname_target.clone().context(
            "KILN_CNAME_TARGET is not set; name the hostname customers point their domains' CNAME \
             records at, e.g. edge.kiln.example.com",
        )?;
        let queue_settings = kiln_queue::QueueSettings::new(
            settings.queue_redis_url.expose_secret(),
            settings.redis_prefix.clone(),
            Duration::from_secs(2),
        );
        let queue = kiln_queue::RenderQueue::connect(&queue_settings)
            .await
            .context(
                "failed to connect to the render queue (KILN_QUEUE_REDIS_URL or KILN_REDIS_URL)",
            )?;
        let verifier = kiln_verify::Verifier::new(&kiln_verify::VerifierSettings {
            nameserver: settings.dns_server,
            ..Default::default()
        })
        .context("failed to set up the DNS resolver for domain verification (KILN_DNS_SERVER)")?;
        let abandoned = app
            .db
            .fail_abandoned_warm_jobs(cache::ABANDONED_WARM_SECS)
            .await
            .context("failed to tidy up interrupted warm jobs")?;
        if abandoned > 0 {
            tracing::warn!(
                warm.failed = abandoned,
                "marked warm jobs interrupted by a stop as failed"
            );
        }
        let account_limiter = AccountLimiter::log_in_attempts();
        let caller_limiter =
            CallerLimiter::per_caller(settings.api_rate_per_second, settings.api_rate_burst);
        let address_limits = limits::address_limits(
            settings.trusted_proxies.clone(),
            account_limiter.clone(),
            caller_limiter.clone(),
        );
        let ctx = Arc::new(kiln_frontdoor::Context {
            app: app.clone(),
            sessions: SessionKeys::new(secret, settings.session_ttl),
            secure_cookies: settings.public_url.scheme() == "https",
            verifier,
            cname_target,
            queue,
            account_limiter,
            caller_limiter,
            address_limits,
            csrf: kiln_frontdoor::csrf::CsrfKey::derive(secret),
            trusted_proxies: settings.trusted_proxies.clone(),
            sitemaps: SitemapFetcher::new(app.allowed_nets.clone())
                .context("failed to build the sitemap HTTP client")?,
        });
        tokio::spawn(activity::run_copier(
            app.clone(),
            COPY_INTERVAL,
            settings.render_log_retention_days,
        ));
        tokio::spawn(directory::keep_published(
            app.clone(),
            directory::CHECK_EVERY,
        ));
        tokio::spawn(domains::run_background_verifier(
            app.clone(),
            ctx.verifier.clone(),
            ctx.cname_target.clone(),
        ));

        let listener = TcpListener::bind(settings.listen).await.with_context(|| {
            format!(
                "failed to listen on {} (KILN_DASHBOARD_LISTEN)",
                settings.listen
            )
        })?;
        let address = listener
            .local_addr()
            .context("failed to read the bound address")?;
        let metrics = Arc::new(DashboardMetrics::new());
        let state = AppState(Arc::new(app));
        let admin = match settings.admin_listen {
            Some(admin_listen) => {
                let admin_listener = TcpListener::bind(admin_listen).await.with_context(|| {
                    format!("failed to listen on {admin_listen} (KILN_DASHBOARD_ADMIN_LISTEN)")
                })?;
                Some((
                    admin_listener,
                    admin_router(state.clone(), Arc::clone(&metrics)),
                ))
            }
            None => None,
        };
        Ok(Application {
            listener,
            address,
            router: router(state, ctx, metrics),
            admin,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The admin port, if there is one.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
            .map(|address| address.port())
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(kiln_runtime::shutdown_signal()).await
    }

    /// Serves until `stop` completes, then finishes the requests in flight.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(http.address = %self.address, "dashboard listening");
        let stop = stop.shared();
        let admin = async {
            match self.admin {
                Some((listener, router)) => axum::serve(listener, router)
                    .with_graceful_shutdown(stop.clone())
                    .await
                    .context("the admin server failed"),
                None => Ok(()),
            }
        };
        let main = async {
            axum::serve(
                self.listener,
                self.router
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.clone())
            .await
            .context("the HTTP server failed")
        };
        let (main, admin) = tokio::join!(main, admin);
        main?;
        admin?;
        tracing::info!("dashboard stopped");
        Ok(())
    }
}

fn router(state: AppState, ctx: kiln_frontdoor::Ctx, metrics: Arc<DashboardMetrics>) -> Router {
    let https = ctx.secure_cookies;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .nest(kiln_api::PREFIX, kiln_api::router(ctx.clone()))
        .merge(kiln_web::router(ctx))
        .layer(axum::middleware::from_fn_with_state(
            https,
            kiln_web::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::count,
        ))
}

/// The admin port: monitoring only, never users' traffic.
fn admin_router(state: AppState, metrics: Arc<DashboardMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            kiln_runtime::metrics::CONTENT_TYPE,
                        )],
                        body,
                    )
                }
            }),
        )
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: Postgres and Redis both answer. The body names each dependency's state, e.g.
/// `{"postgres":"ok","redis":"failed: ..."}`.
async fn readyz(State(AppState(app)): State<AppState>) -> impl IntoResponse {
    let redis = app.store.health();
    let (postgres, redis) = tokio::join!(
        check("postgres", app.db.ping()),
        check("redis", redis.ping()),
    );
    let status = if postgres.is_none() && redis.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let describe = |failure: Option<String>| {
        failure.map_or_else(|| "ok".to_owned(), |e| format!("failed: {e}"))
    };
    let body = serde_json::json!({ "postgres": describe(postgres), "redis": describe(redis) });
    (status, Json(body))
}

/// Runs one readiness check; `None` if it passed, or why it failed.
async fn check<E: std::error::Error>(
    name: &str,
    probe: impl Future<Output = Result<(), E>>,
) -> Option<String> {
    let failure = match tokio::time::timeout(READY_CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => return None,
        Ok(Err(error)) => kiln_control::error_chain(&error),
        Err(_) => format!("no answer within {} ms", READY_CHECK_TIMEOUT.as_millis()),
    };
    tracing::warn!(ready.check = name, error = %failure, "readiness check failed");
    Some(failure)
}
