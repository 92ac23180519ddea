//! Redis access for gateways, workers and the dashboard: page entries, the domain directory, render
//! claims (a render's lock and budget place, see [`RenderClaim`]) and the event channel that
//! announces domain changes and finished renders.
//!
//! Every operation belongs to a role view ([`Pages`], [`Directory`], [`Events`], [`Certificates`],
//! [`Challenges`], [`RenderLog`], [`Usage`], [`ServiceTokens`], [`Health`]) taken from the one connection pool a
//! [`Store`] is, and each program keeps only the views its role needs, so that what it may do to
//! Redis shows in its types.
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
//! `{prefix}{t:<tenant>}:…`, and each of the 64 shards of a day's usage counters with its batch
//! markers `{prefix}{usage:<day>:<shard>}…`.
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
mod service_tokens;
mod settings;
mod usage;
mod warm;

pub use acme::{
    CHALLENGE_TTL, CertificateRecord, CertificateState, CertificateStatus, Certificates, Challenges,
};
pub use budget::{Admission, RenderBudget};
pub use claim::{ClaimOutcome, ReleaseError, RenderClaim};
pub use directory::{
    CHANGE_LOG, Directory, DirectoryChanges, DirectoryVersion, PUBLISH_BATCH, Published,
    PublishedDirectory,
};
pub use events::{Events, StoreEvent, Subscription};
pub use gateways::{CONFIRM_WAIT, Confirmation, GATEWAY_HEARTBEAT, GATEWAY_LIVE_WINDOW};
pub use pages::{
    ContentEncoding, MAX_LIST_LIMIT, PageEntry, PageListing, PageMeta, PageSummary, Pages,
};
pub use parity::{PARITY_RECENT_MAX, PARITY_TTL_SECS};
pub use preview::{PREVIEW_TTL_SECS, PreviewResult};
pub use render_log::{
    RENDER_LOG_MAX_LEN, RenderLog, RenderLogEntry, RenderLogOutcome, RenderLogPurpose,
};
pub use service_tokens::{ServiceToken, ServiceTokens, token_hash};
pub use settings::StoreSettings;
pub use usage::{
    DayUsage, USAGE_RETENTION_SECS, USAGE_SHARDS, Usage, UsageBatch, UsageCounts, UsageHour,
    UsageHours, UsageKind, usage_day,
};
pub use warm::{WARM_PROGRESS_TTL_SECS, WarmProgress};

use fred::prelude::*;
use kiln_core::CacheKey;
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
    /// A full publish of the directory found part of what it wrote gone before it could put it in
    /// place (Redis restarted meanwhile): the directory is as it was; publish again.
    #[error("a full publish of the directory lost part of what it wrote (Redis restarted?)")]
    PublishInterrupted,
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

/// One pool of connections to Kiln's Redis data, and the views a program takes of it. Cheap to
/// clone.
///
/// Nothing is read or written through the store itself: every operation belongs to one of its
/// views, each of which serves one role, and a program keeps only the views its role needs
/// (ARCHITECTURE.md, "Who sees what in Redis"):
///
/// * [`Pages`]: the page cache, its failure markers and the render claims on its pages (with the
///   tenants' render budgets), and the announcements of finished renders.
/// * [`Directory`]: the domains published for the gateways.
/// * [`Events`]: the event channel, and the gateways' word that they applied what was published.
/// * [`Certificates`]: the certificates, their status and the ACME account (kiln-acme's).
/// * [`Challenges`]: the HTTP-01 challenges kiln-acme answers through the gateways.
/// * [`RenderLog`]: what renders report back, the log of every render and the results of warms,
///   previews and parity checks.
/// * [`Usage`]: the per-domain usage counters.
/// * [`ServiceTokens`]: the render service's tokens (hashed), and when each was last used.
/// * [`Health`]: whether Redis answers, for readiness checks.
///
/// Every view shares the one pool: taking one costs a clone of two `Arc`s, and a view can be kept
/// for as long as the program runs.
#[derive(Clone)]
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.conn.settings.prefix)
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
            conn: Connection {
                pool,
                settings: Arc::new(settings),
            },
        })
    }

    pub fn pages(&self) -> Pages {
        Pages::new(self.conn.clone())
    }

    pub fn directory(&self) -> Directory {
        Directory::new(self.conn.clone())
    }

    pub fn events(&self) -> Events {
        Events::new(self.conn.clone())
    }

    pub fn certificates(&self) -> Certificates {
        Certificates::new(self.conn.clone())
    }

    pub fn challenges(&self) -> Challenges {
        Challenges::new(self.conn.clone())
    }

    pub fn render_log(&self) -> RenderLog {
        RenderLog::new(self.conn.clone())
    }

    pub fn usage(&self) -> Usage {
        Usage::new(self.conn.clone())
    }

    pub fn service_tokens(&self) -> ServiceTokens {
        ServiceTokens::new(self.conn.clone())
    }

    pub fn health(&self) -> Health {
        Health::new(self.conn.clone())
    }
}

/// Declares a view of the store: a named handle on the shared [`Connection`], cheap to clone,
/// whose operations are written in the module of its role.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            pub(crate) conn: $crate::Connection,
        }

        impl $name {
            pub(crate) fn new(conn: $crate::Connection) -> Self {
                $name { conn }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("prefix", &self.conn.settings.prefix)
                    .finish()
            }
        }
    };
}
pub(crate) use view;

view! {
    /// Whether Redis answers: the view a readiness check holds.
    Health
}

impl Health {
    /// Round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.conn.pool.ping(None).await?;
        Ok(())
    }

    /// Whether a connection to Redis is up right now: a local read, no round trip. False while the
    /// client is (re)connecting, when a command would only wait for its timeout.
    pub fn is_connected(&self) -> bool {
        self.conn
            .pool
            .clients()
            .iter()
            .any(|client| client.is_connected())
    }
}

/// The pool every view shares, and the key names: what the views are written with, never handed
/// out.
#[derive(Clone)]
pub(crate) struct Connection {
    pool: Pool,
    settings: Arc<StoreSettings>,
}

impl Connection {
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

    /// Sets `name` to `owner` for `ttl` unless it exists (`SET NX PX`): whether this call took it.
    async fn try_lock(&self, name: String, owner: &str, ttl: Duration) -> Result<bool> {
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

    /// Publishes `event` on the event channel, for every subscriber ([`Events::subscribe`]).
    async fn publish(&self, event: &StoreEvent) -> Result<()> {
        let json = serde_json::to_string(event).map_err(StoreError::encode("event"))?;
        let _: u64 = self
            .pool
            .next()
            .publish(self.events_channel(), json)
            .await?;
        Ok(())
    }
}
