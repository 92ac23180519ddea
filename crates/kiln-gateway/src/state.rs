//! Everything a request handler needs, shared behind one `Arc`.

use crate::directory::Directory;
use crate::hot::HotCache;
use crate::proxy::OriginClient;
use crate::usage::Usage;
use crate::waiters::Waiters;
use kiln_core::AllowedNets;
use kiln_queue::RenderQueue;
use kiln_store::{Challenges, Events, Health, Pages, ServiceTokens, Store};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub type AppState = Arc<App>;

pub struct App {
    pub store: StoreViews,
    pub queue: RenderQueue,
    pub directory: Directory,
    pub waiters: Arc<Waiters>,
    pub origin: OriginClient,
    /// Bot responses counted since the last flush to Redis.
    pub usage: Usage,
    /// The hottest pages in memory.
    pub hot: HotCache,
    /// Whether the event subscription is up (connected): the in-memory pages are only used, and
    /// bots only wait for renders, while it is, since only events tell of purges and renders.
    pub events_live: AtomicBool,
    /// Whether the event subscription has been up at least once: until then the gateway is not
    /// ready, since every bot would get the origin's page. (A later interruption does not make it
    /// unready: people's traffic must not go with it.)
    pub events_started: AtomicBool,
    /// This gateway's id among the gateways registered in Redis, under which it answers purges'
    /// checkpoints (`kiln_store::Events::confirm`).
    pub instance: String,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: AllowedNets,
    /// Each domain's per-address limit on bot requests.
    pub bot_limits: crate::limits::BotLimits,
    /// Checks requests claiming to be crawlers (none when turned off).
    pub crawlers: Option<kiln_verify::CrawlerVerifier>,
    /// How long a crawler's request waits for the check of a new address.
    pub verify_wait: Duration,
    /// How many bot renders a tenant may have under way, and start a minute.
    pub render_budget: kiln_store::RenderBudget,
    /// How many renders may wait in the queue before bots stop queueing more (0: no limit).
    pub max_queued_renders: u64,
    /// The largest request body accepted.
    pub max_body_bytes: u64,
    /// What `/metrics` on the admin port reports.
    pub metrics: Arc<crate::metrics::GatewayMetrics>,
    /// The render service's host name (`KILN_SERVICE_HOST`), none when the service is off.
    pub service_host: Option<kiln_core::Hostname>,
    /// The render service's limits, per token.
    pub token_limits: crate::limits::TokenLimits,
    /// The tokens whose use this gateway recorded in Redis within the last minute, so that a busy
    /// token costs one write a minute.
    pub token_uses: moka::sync::Cache<String, ()>,
}

/// The views of Kiln's Redis data the gateway works with (see `kiln_store::Store`): it reads,
/// claims and (on a refresh's failure) marks pages, reads the domain directory and the ACME
/// challenges, follows the event channel and adds to the usage counters. Certificates, the render
/// log and what the control plane writes are not its business, and it holds no view of them. It
/// reads the render service's tokens (and notes their use).
#[derive(Clone, Debug)]
pub struct StoreViews {
    pub pages: Pages,
    pub directory: kiln_store::Directory,
    pub challenges: Challenges,
    pub events: Events,
    pub usage: kiln_store::Usage,
    pub service_tokens: ServiceTokens,
    pub health: Health,
}

impl StoreViews {
    pub fn of(store: &Store) -> Self {
        StoreViews {
            pages: store.pages(),
            directory: store.directory(),
            challenges: store.challenges(),
            events: store.events(),
            usage: store.usage(),
            service_tokens: store.service_tokens(),
            health: store.health(),
        }
    }
}
