//! Rate limits: per client address on signing up and logging in (shared by the API and the web
//! forms), per (account, address) pair and per account on log-in failures, and per caller (API key
//! or user) on every authenticated request; and the client address they key on.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kiln_core::AllowedNets;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The address a request came from: behind a reverse proxy in `KILN_TRUSTED_PROXIES`, the rightmost
/// `X-Forwarded-For` hop that is not itself a trusted proxy; otherwise the peer. (The leftmost entry
/// is whatever the client wrote, so trusting it would give each forged value a fresh rate-limit
/// bucket.)
pub use kiln_core::request_client_ip as client_ip;

/// tower_governor's key: the client address as [`client_ip`] sees it.
#[derive(Clone, Debug)]
pub struct ClientIpKey {
    pub trusted: AllowedNets,
}

impl tower_governor::key_extractor::KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(
        &self,
        req: &axum::http::Request<T>,
    ) -> Result<Self::Key, tower_governor::GovernorError> {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)?;
        Ok(client_ip(peer, req.headers(), &self.trusted))
    }
}

/// A rate limit per key, in memory (governor's keyed limiter): `Err(seconds to wait)` once a key
/// has used its burst. Cheap to clone: clones share the buckets. Made without a quota, it lets
/// everything through.
#[derive(Clone)]
pub struct KeyedLimiter<K: std::hash::Hash + Eq + Clone> {
    limiter: Option<std::sync::Arc<DefaultKeyedRateLimiter<K>>>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Option<Quota>) -> Self {
        KeyedLimiter {
            limiter: quota.map(|quota| std::sync::Arc::new(RateLimiter::keyed(quota))),
        }
    }

    /// `Err(seconds to wait)` when `key` has used up its allowance.
    pub fn check(&self, key: impl Into<K>) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key.into()).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        })
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// Log-in attempts, beside the per-address limit tower_governor applies to the auth endpoints.
///
/// Keyed by account (e-mail address) *and* client address, so that someone who knows an address
/// and guesses from their own machine uses up only their own attempts: the owner, from another
/// address, still logs in. Across addresses, an account's failed attempts have a ceiling, which
/// slows a guesser spread over many addresses; it applies only to addresses that have already
/// failed against the account, so a correct password from an address with no failures always
/// passes (each new address gets one guess before the ceiling applies to it too).
/// Password changes (by a logged-in user) have a per-account limit of their own.
#[derive(Clone)]
pub struct AccountLimiter {
    /// Attempts per (account, address): ten at once, then one every 30 seconds.
    pairs: KeyedLimiter<(String, IpAddr)>,
    /// Failed attempts per account from every address: fifty at once, then one every 10 seconds.
    accounts: KeyedLimiter<String>,
    /// Password changes per account: ten at once, then one every 30 seconds.
    password_changes: KeyedLimiter<String>,
    /// When each (account, address) pair last failed, for [`FAILURES_KEPT`].
    failed: std::sync::Arc<std::sync::Mutex<HashMap<(String, IpAddr), Instant>>>,
}

/// How long an address that failed to log in to an account is held to the account's ceiling.
const FAILURES_KEPT: Duration = Duration::from_secs(60 * 60);

/// The most failed pairs remembered. Past it (an attack from a great many addresses), every
/// address is held to the accounts' ceilings until old failures are forgotten.
const MAX_FAILED_PAIRS: usize = 100_000;

impl AccountLimiter {
    pub fn log_in_attempts() -> Self {
        let quota = |period: u64, burst: u32| {
            Quota::with_period(Duration::from_secs(period))
                .expect("the period is not zero")
                .allow_burst(NonZeroU32::new(burst).expect("the burst is not zero"))
        };
        AccountLimiter {
            pairs: KeyedLimiter::new(Some(quota(30, 10))),
            accounts: KeyedLimiter::new(Some(quota(10, 50))),
            password_changes: KeyedLimiter::new(Some(quota(30, 10))),
            failed: Default::default(),
        }
    }

    fn has_failed(&self, email: &str, ip: IpAddr) -> bool {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.len() >= MAX_FAILED_PAIRS || failed.contains_key(&(email.to_owned(), ip))
    }

    /// Before the password is checked: `Err(seconds to wait)` when `ip` has used its attempts at
    /// `email`, or has failed at it before while the account's ceiling is reached.
    pub fn check_log_in(&self, email: &str, ip: IpAddr) -> Result<(), u64> {
        self.pairs.check((email.to_owned(), ip))?;
        if self.has_failed(email, ip) {
            self.accounts.check(email.to_owned())?;
        }
        Ok(())
    }

    /// After the password was checked: a failure is remembered against the pair and counts
    /// towards the account's ceiling (a repeated one was counted by [`Self::check_log_in`]); a
    /// success forgets the pair's failures.
    pub fn log_in_ended(&self, email: &str, ip: IpAddr, succeeded: bool) {
        let pair = (email.to_owned(), ip);
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if succeeded {
            failed.remove(&pair);
            return;
        }
        let first = !failed.contains_key(&pair);
        if failed.len() < MAX_FAILED_PAIRS || !first {
            failed.insert(pair, Instant::now());
        }
        drop(failed);
        if first {
            let _ = self.accounts.check(email.to_owned());
        }
    }

    /// Before a logged-in user's password change is checked.
    pub fn check_password_change(&self, email: &str) -> Result<(), u64> {
        self.password_changes.check(email.to_owned())
    }

    /// Forgets buckets that are full again and failures older than [`FAILURES_KEPT`].
    pub fn retain_recent(&self) {
        self.pairs.retain_recent();
        self.accounts.retain_recent();
        self.password_changes.retain_recent();
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, at| at.elapsed() < FAILURES_KEPT);
    }
}

/// Requests per caller (the API key's or the user's id): each API key, and each logged-in user, has
/// a bucket of its own, so one tenant's runaway script cannot crowd out the API for others (nor
/// another key of its own). Checked once the caller is known, before the handler runs.
pub type CallerLimiter = KeyedLimiter<Uuid>;

impl CallerLimiter {
    /// `per_second` requests a second after a burst of `burst`; `per_second` 0 turns the limit off.
    pub fn per_caller(per_second: u32, burst: u32) -> Self {
        KeyedLimiter::new(NonZeroU32::new(per_second).map(|rate| {
            Quota::per_second(rate)
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
        }))
    }
}

/// Per-address limits on signing up and logging in, shared by the REST API and the web forms.
pub type AddressLimits = tower_governor::governor::GovernorConfig<
    ClientIpKey,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
>;

/// Sign-up and log-in are limited per client address (a burst of 20, then one every 3 s); log-in
/// is also limited per account (see [`AccountLimiter`]). Every authenticated request is limited
/// per API key or user (see [`CallerLimiter`]). The limiters forget clients whose buckets are
/// full again, once a minute, so memory stays bounded.
pub fn address_limits(
    trusted_proxies: kiln_core::AllowedNets,
    accounts: AccountLimiter,
    callers: CallerLimiter,
) -> Arc<AddressLimits> {
    let limits = tower_governor::governor::GovernorConfigBuilder::default()
        .key_extractor(ClientIpKey {
            trusted: trusted_proxies,
        })
        .period(std::time::Duration::from_secs(3))
        .burst_size(20)
        .finish()
        .expect("the rate limit's period and burst are not zero");
    let limits = Arc::new(limits);
    let limiter = limits.limiter().clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            ticker.tick().await;
            limiter.retain_recent();
            accounts.retain_recent();
            callers.retain_recent();
        }
    });
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn client_ip_trusts_forwarded_headers_only_from_trusted_proxies() {
        let trusted = AllowedNets::parse("10.0.0.0/8").unwrap();
        let check = |peer: &str, xff: Option<&str>, expected: &str| {
            let mut headers = HeaderMap::new();
            if let Some(xff) = xff {
                headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
            }
            assert_eq!(
                client_ip(peer.parse().unwrap(), &headers, &trusted),
                expected.parse::<IpAddr>().unwrap(),
                "{peer} {xff:?}"
            );
        };
        check("203.0.113.9", Some("1.2.3.4"), "203.0.113.9");
        check("10.0.0.2", Some("1.2.3.4"), "1.2.3.4");
        check("10.0.0.2", Some("6.6.6.6, 1.2.3.4"), "1.2.3.4");
        check("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.0.0.7"), "1.2.3.4");
        check("10.0.0.2", Some("garbage"), "10.0.0.2");
        check("10.0.0.2", None, "10.0.0.2");
    }

    #[test]
    fn log_ins_are_limited_per_account_and_address_and_failures_per_account() {
        let limiter = AccountLimiter::log_in_attempts();
        let (attacker, owner): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            assert!(limiter.check_log_in("a@example.com", attacker).is_ok());
            limiter.log_in_ended("a@example.com", attacker, false);
        }
        let wait = limiter.check_log_in("a@example.com", attacker).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        // Another address, and another account, each have attempts of their own.
        assert!(limiter.check_log_in("a@example.com", owner).is_ok());
        assert!(limiter.check_log_in("b@example.com", attacker).is_ok());

        // Fifty failures from anywhere reach the account's ceiling: an address that failed before
        // is held to it, one that did not is not.
        for i in 0..40u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            assert!(limiter.check_log_in("a@example.com", ip).is_ok());
            limiter.log_in_ended("a@example.com", ip, false);
        }
        let failed = IpAddr::from([198, 51, 100, 0]);
        assert!(limiter.check_log_in("a@example.com", failed).is_err());
        assert!(limiter.check_log_in("a@example.com", owner).is_ok());
        // A success forgets the address's failures.
        limiter.log_in_ended("a@example.com", failed, true);
        assert!(limiter.check_log_in("a@example.com", failed).is_ok());
    }
}
