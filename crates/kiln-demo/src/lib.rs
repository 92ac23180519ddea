//! The demo origin: serves the single-page app in `examples/demo` (an empty HTML shell whose
//! JavaScript fetches products from `/api/...` and builds the page), exactly like a customer's static
//! host plus API would. It counts the page loads it serves so tests can prove a cache hit never
//! reached the origin.
//!
//! Architecture invariant: it is a customer's site, not part of Kiln: no platform crate depends on
//! it (only the tests, the benchmarks and `scripts/run-local.sh` start it), and it knows nothing of
//! Kiln beyond what any origin sees.

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_runtime::env::Vars;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `KILN_DEMO_LISTEN` (default `127.0.0.1:5173`).
    pub listen: SocketAddr,
    /// `KILN_DEMO_DIR`: the app's files (default: `examples/demo` in this repository).
    pub dir: PathBuf,
    /// `KILN_DEMO_API_DELAY_MS`: artificial API latency, like a real backend's (default 150).
    pub api_delay: Duration,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let vars = Vars::from_env();
        Ok(Settings {
            listen: vars.addr("KILN_DEMO_LISTEN", "127.0.0.1:5173")?,
            dir: vars
                .get("KILN_DEMO_DIR")?
                .map_or_else(Self::bundled_dir, PathBuf::from),
            api_delay: vars.duration_ms("KILN_DEMO_API_DELAY_MS", 150, ..)?,
        })
    }

    /// The demo shipped in this repository.
    pub fn bundled_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo"))
    }
}

struct Demo {
    index: String,
    products: Vec<Value>,
    api_delay: Duration,
    page_loads: AtomicU64,
}

/// Counts of what the demo origin served.
#[derive(Clone)]
pub struct Counters(Arc<Demo>);

impl Counters {
    /// How many HTML pages (app shells) were served.
    pub fn page_loads(&self) -> u64 {
        self.0.page_loads.load(Ordering::SeqCst)
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    demo: Arc<Demo>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let index = tokio::fs::read_to_string(settings.dir.join("index.html"))
            .await
            .with_context(|| format!("failed to read {}/index.html", settings.dir.display()))?;
        let products = tokio::fs::read_to_string(settings.dir.join("products.json"))
            .await
            .with_context(|| format!("failed to read {}/products.json", settings.dir.display()))?;
        let products: Vec<Value> =
            serde_json::from_str(&products).context("products.json is not a JSON array")?;
        let demo = Arc::new(Demo {
            index,
            products,
            api_delay: settings.api_delay,
            page_loads: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/api/products", get(list))
            .route("/api/products/{id}", get(one))
            .nest_service("/static", ServeDir::new(settings.dir.join("static")))
            .fallback(shell)
            .with_state(Arc::clone(&demo));
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        Ok(Application {
            listener,
            router,
            demo,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub fn counters(&self) -> Counters {
        Counters(Arc::clone(&self.demo))
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

async fn shell(State(demo): State<Arc<Demo>>) -> Response {
    demo.page_loads.fetch_add(1, Ordering::SeqCst);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        demo.index.clone(),
    )
        .into_response()
}

async fn list(State(demo): State<Arc<Demo>>) -> Response {
    tokio::time::sleep(demo.api_delay).await;
    Json(demo.products.clone()).into_response()
}

async fn one(State(demo): State<Arc<Demo>>, Path(id): Path<String>) -> Response {
    tokio::time::sleep(demo.api_delay).await;
    let found = demo
        .products
        .iter()
        .find(|p| p.get("id").and_then(Value::as_u64).map(|n| n.to_string()) == Some(id.clone()));
    match found {
        Some(product) => Json(product.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "not found"})),
        )
            .into_response(),
    }
}
