//! Kiln's domain vocabulary: hostnames, normalised URLs, cache keys, device classes, render jobs and
//! per-domain settings.
//!
//! Architecture invariant: this crate does no IO and depends on no async runtime, Redis or database
//! crate. Everything else in the workspace depends on it, so it must stay cheap to compile and easy to
//! test with plain tables of inputs and outputs.

pub mod asset;
pub mod bots;
pub mod crawlers;
pub mod device;
pub mod domain;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod headers;
pub mod host;
pub mod job;
pub mod key;
pub mod net;
pub mod parity;
pub mod policy;
pub mod rules;
pub mod url;

pub use asset::is_asset_path;
pub use bots::{BotClassifier, BotFamily};
pub use crawlers::{Crawler, CrawlerRanges, RangesError};
pub use device::DeviceClass;
pub use domain::{DomainConfig, DomainSettings, ResourceBlocking, SettingsError};
pub use headers::{HOP_BY_HOP, connection_tokens, strip_hop_by_hop};
pub use host::{Hostname, HostnameError};
pub use job::{RenderJob, RenderOutcome, RenderVia};
pub use key::CacheKey;
pub use net::{AllowedNets, NetError, client_ip, is_public_ip, request_client_ip};
pub use policy::{EgressPolicy, Grant, GrantScope, OPERATOR_TENANT_ID, PolicyError, Refusal};
pub use rules::{BotAgents, PathPattern, PathRules};
pub use url::{NormalizedUrl, UrlError, rebase_origin};

/// Milliseconds since the Unix epoch, the one time format used in stored records and jobs.
pub type UnixMillis = u64;

/// The current time as [`UnixMillis`] (0 if the clock is before 1970).
pub fn unix_millis_now() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as UnixMillis)
}
