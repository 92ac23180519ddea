//! Redis access for gateways, workers and the dashboard: page entries, the domain directory, render
//! claims (a render's lock and budget place, see [`RenderClaim`]) and the event channel that
//! announces domain changes and finished renders.
//!
//! Architecture invariant: this is the only crate that knows Kiln's Redis key names (the render
//! queue's keys belong to `kiln-queue`). Every key starts with the deployment prefix (`kiln:` by
//! default), so one Redis can serve several deployments and every test gets its own namespace.
//!
//! Redis may be one server or a Redis Cluster (`redis-cluster://…`, see [`StoreSettings::url`]).
//! A cluster refuses a script, transaction or multi-key command whose keys lie in different hash
//! slots (`CROSSSLOT`), so keys that are used together share a hash tag, the part of the name
//! between the first `{` and the next `}`, which alone decides the slot: one domain's pages, their
//! index, failure markers and render locks are `{prefix}{d:<domain>}:…`, one tenant's render budget
//! `{prefix}{t:<tenant>}:…`, and the usage counters with their batch markers `{prefix}{usage}:…`.
//! Every other key is used on its own and lands wherever its name hashes, which spreads domains and
//! tenants over the cluster's nodes.
//!
//! Every call is bounded by the client's command timeout, and callers on the request path treat any
//! error as a cache miss: an outage of Redis must never turn into an outage of the customer's site.

mod acme;
mod budget;
mod claim;
mod directory;
mod events;
mod failures;
mod gateways;
mod pages;
mod parity;
mod preview;
mod render_log;
mod settings;
mod usage;
mod warm;

pub use acme::{CHALLENGE_TTL, CertificateRecord, CertificateState, CertificateStatus};
pub use budget::{Admission, RenderBudget};
pub use claim::{ClaimOutcome, ReleaseError, RenderClaim};
pub use directory::PublishedDirectory;
pub use events::{StoreEvent, Subscription};
pub use gateways::{CONFIRM_WAIT, Confirmation, GATEWAY_HEARTBEAT, GATEWAY_LIVE_WINDOW};
pub use pages::{ContentEncoding, MAX_LIST_LIMIT, PageEntry, PageListing, PageMeta, PageSummary};
pub use parity::{PARITY_RECENT_MAX, PARITY_TTL_SECS};
pub use preview::{PREVIEW_TTL_SECS, PreviewResult};
pub use render_log::{RENDER_LOG_MAX_LEN, RenderLogEntry, RenderLogOutcome, RenderLogPurpose};
pub use settings::StoreSettings;
pub use usage::{
    DayUsage, USAGE_RETENTION_SECS, UsageBatch, UsageCounts, UsageHour, UsageHours, UsageKind,
    usage_day,
};
pub use warm::{WARM_PROGRESS_TTL_SECS, WarmProgress};

use fred::prelude::*;
use kiln_core::{CacheKey, RenderOutcome};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a Redis command failed")]
    Redis(#[source] fred::error::Error),
    /// A record read from Redis does not decode (`what` names it: "page …", "domain …").
    #[error("the stored {what} is malformed")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be encoded for Redis (`what` names its kind).
    #[error("encoding the {what} for Redis failed")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("compressing a page failed")]
    Compress(#[source] std::io::Error),
    #[error("the task compressing a page failed")]
    CompressTask(#[source] tokio::task::JoinError),
    #[error("the listing cursor is not one this store handed out")]
    InvalidCursor,
}

impl StoreError {
    /// The record `what` read from Redis does not decode, for the reason `source`.
    fn corrupt(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source: source.into(),
        }
    }

    /// For `map_err`: encoding a `what` failed.
    fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| StoreError::Encode { what, source }
    }
}

/// Every Redis error (a timeout included) reaches callers through here, so that it is counted.
impl From<fred::error::Error> for StoreError {
    fn from(error: fred::error::Error) -> Self {
        REDIS_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StoreError::Redis(error)
    }
}

static REDIS_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many Redis commands of the store's have failed in this process (for the
/// `kiln_redis_errors_total` metric). A process-wide count: every `Store` it holds adds to it.
pub fn redis_errors() -> u64 {
    REDIS_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on Kiln's Redis data. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    settings: Arc<StoreSettings>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.settings.prefix)
            .finish()
    }
}

impl Store {
    /// Connects a pool of clients. Commands issued while Redis is unreachable fail after the command
    /// timeout instead of queueing without bound; the pool reconnects in the background.
    pub async fn connect(settings: StoreSettings) -> Result<Self> {
        let pool = settings.builder()?.build_pool(settings.pool_size.max(1))?;
        pool.init().await?;
        Ok(Store {
            pool,
            settings: Arc::new(settings),
        })
    }

    /// `{prefix}{name}`: a key used on its own, in whatever hash slot its name falls in.
    fn key(&self, name: &str) -> String {
        format!("{}{}", self.settings.prefix, name)
    }

    /// `{prefix}{d:<domain>}:{name}`: a key of one domain's cached pages. The hash tag puts every
    /// such key of the domain in one hash slot of a Redis Cluster, so the scripts that change a
    /// page together with its index and failure marker may touch them all.
    fn domain_key(&self, domain_id: &str, name: &str) -> String {
        format!("{}{{d:{domain_id}}}:{name}", self.settings.prefix)
    }

    /// `{prefix}{d:<domain>}:{kind}:{device}:{urlhash}`: the `kind` key (`page`, `failed`,
    /// `lock`) of one cached page, in its domain's hash slot.
    fn page_scoped_key(&self, kind: &str, key: &CacheKey) -> String {
        self.domain_key(
            &key.domain_id,
            &format!("{kind}:{}:{}", key.device, key.url_hash),
        )
    }

    /// `{prefix}{t:<tenant>}:{name}`: a key of one tenant's render budget, all in one hash slot.
    fn tenant_key(&self, tenant_id: &str, name: &str) -> String {
        format!("{}{{t:{tenant_id}}}:{name}", self.settings.prefix)
    }

    fn events_channel(&self) -> String {
        self.key("events")
    }

    /// Round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }

    /// Whether a connection to Redis is up right now: a local read, no round trip. False while the
    /// client is (re)connecting, when a command would only wait for its timeout.
    pub fn is_connected(&self) -> bool {
        self.pool
            .clients()
            .iter()
            .any(|client| client.is_connected())
    }

    // ---- render locks -----------------------------------------------------------------------
    //
    // The gateway and the worker take and release a render's lock through a `RenderClaim`,
    // which keeps the lock and the budget place together; these are what it is built on.

    /// Takes the render lock for `key` if nobody holds it. The lock expires by itself after `ttl`,
    /// so a render whose worker died is taken over by the next request.
    pub async fn try_lock_render(
        &self,
        key: &CacheKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.try_lock(self.page_scoped_key("lock", key), owner, ttl)
            .await
    }

    /// Sets `name` to `owner` for `ttl` unless it exists (`SET NX PX`): whether this call took it.
    pub(crate) async fn try_lock(&self, name: String, owner: &str, ttl: Duration) -> Result<bool> {
        let set: Option<String> = self
            .pool
            .set(
                name,
                owner,
                Some(Expiration::PX(ttl.as_millis() as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Whether someone holds the render lock for `key`: a render of the page is under way.
    pub async fn render_locked(&self, key: &CacheKey) -> Result<bool> {
        let exists: u32 = self.pool.exists(self.page_scoped_key("lock", key)).await?;
        Ok(exists > 0)
    }

    /// Releases the render lock for `key`, whoever took it: the render it guarded is over.
    pub async fn release_render_lock(&self, key: &CacheKey) -> Result<()> {
        let _: u32 = self.pool.del(self.page_scoped_key("lock", key)).await?;
        Ok(())
    }

    // ---- events -----------------------------------------------------------------------------

    /// Announces the outcome of a render to every gateway waiting for `key`.
    pub async fn announce_render(&self, key: &CacheKey, outcome: RenderOutcome) -> Result<()> {
        self.publish(&StoreEvent::Rendered {
            page_key: key.page_key(),
            outcome,
        })
        .await
    }

    /// Tells every gateway that pages of `domain_id` were purged (all of them, when `page_keys` is
    /// empty). An error fails the purge (which may be repeated): the pages are gone from Redis,
    /// but gateways may still serve them from memory (for at most their in-memory lifetime), so
    /// the purge must not be reported done.
    pub(crate) async fn announce_purge(
        &self,
        domain_id: &str,
        page_keys: Vec<String>,
    ) -> Result<()> {
        self.publish(&StoreEvent::Purged {
            domain_id: domain_id.to_owned(),
            page_keys,
        })
        .await
    }

    async fn publish(&self, event: &StoreEvent) -> Result<()> {
        let json = serde_json::to_string(event).map_err(StoreError::encode("event"))?;
        let _: u64 = self
            .pool
            .next()
            .publish(self.events_channel(), json)
            .await?;
        Ok(())
    }

    /// Subscribes to the event channel. The subscription survives reconnects and reports them, so the
    /// subscriber can resynchronise whatever it mirrors.
    pub async fn subscribe(&self) -> Result<Subscription> {
        events::subscribe(&self.settings, self.events_channel()).await
    }
}
