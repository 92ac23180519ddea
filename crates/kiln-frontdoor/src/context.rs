//! What every handler of both front ends works with: the control plane's handles and the
//! services and limits around them.

use crate::limits::{AccountLimiter, AddressLimits, CallerLimiter};
use kiln_control::App;
use kiln_control::accounts::SessionKeys;
use kiln_control::sitemaps::SitemapFetcher;
use kiln_core::{AllowedNets, Hostname};
use kiln_queue::RenderQueue;
use kiln_verify::Verifier;
use std::sync::Arc;

/// The front ends' shared state. Cheap to clone.
pub type Ctx = Arc<Context>;

pub struct Context {
    pub app: App,
    pub sessions: SessionKeys,
    /// Whether cookies get `Secure` (the dashboard's public URL is https).
    pub secure_cookies: bool,
    pub verifier: Verifier,
    /// What customers point their CNAME records at.
    pub cname_target: Hostname,
    pub queue: RenderQueue,
    pub account_limiter: AccountLimiter,
    /// Requests per API key and per logged-in user.
    pub caller_limiter: CallerLimiter,
    pub trusted_proxies: AllowedNets,
    pub sitemaps: SitemapFetcher,
    /// Per-address limits on signing up and logging in (the API's and the web forms').
    pub address_limits: Arc<AddressLimits>,
    /// Signs the web dashboard's CSRF tokens.
    pub csrf: crate::csrf::CsrfKey,
}
