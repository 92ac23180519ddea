//! Per-client rate limits on the bot path: each domain's `bot_rate_per_second` and
//! `bot_rate_burst`, per client address (`kiln_core::client_ip`: behind the edge, the address the
//! edge saw, so a forged `X-Forwarded-For` never buys a fresh allowance); and the render service's
//! per-token limits ([`TokenLimits`]).
//!
//! Built on governor, the GCRA limiter behind tower_governor: tower_governor's layer applies one
//! quota to a whole service, and here each domain has its own, changed at any time from the
//! dashboard. So the gateway keeps one keyed limiter per domain, rebuilt when its quota changes, and
//! forgets addresses whose allowance is full again every [`RETAIN_EVERY`].

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use kiln_core::DomainConfig;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How often addresses with a full allowance are forgotten, so that memory follows the clients of
/// the last minute, not of all time.
pub const RETAIN_EVERY: Duration = Duration::from_secs(60);
/// The most domains with a limiter at once (a domain's limiter is rebuilt if it was dropped).
const MAX_DOMAINS: u64 = 100_000;

/// The bot path's limiters, by domain.
pub struct BotLimits {
    by_domain: moka::sync::Cache<String, Arc<DomainLimiter>>,
}

struct DomainLimiter {
    per_second: u64,
    burst: u64,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for BotLimits {
    fn default() -> Self {
        BotLimits {
            by_domain: moka::sync::Cache::new(MAX_DOMAINS),
        }
    }
}

impl BotLimits {
    /// Counts a bot request from `client` to `domain`: `Err(wait)` if it is over the domain's
    /// limit, with how long until it would not be.
    pub fn check(&self, domain: &DomainConfig, client: IpAddr) -> Result<(), Duration> {
        let (per_second, burst) = (
            domain.settings.bot_rate_per_second,
            domain.settings.bot_rate_burst,
        );
        let Some(quota) = quota(per_second, burst) else {
            return Ok(());
        };
        let limiter = match self.by_domain.get(&domain.id) {
            Some(limiter) if limiter.per_second == per_second && limiter.burst == burst => limiter,
            _ => {
                let limiter = Arc::new(DomainLimiter {
                    per_second,
                    burst,
                    limiter: RateLimiter::keyed(quota),
                });
                self.by_domain.insert(domain.id.clone(), limiter.clone());
                limiter
            }
        };
        limiter
            .limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets the addresses whose allowance is full again.
    pub fn retain_recent(&self) {
        for (_, limiter) in self.by_domain.iter() {
            limiter.limiter.retain_recent();
            limiter.limiter.shrink_to_fit();
        }
    }
}

/// The render service's limiters, by service token: each token's own rate and burst, or the
/// gateway's (`KILN_SERVICE_TOKEN_RATE`, `KILN_SERVICE_TOKEN_BURST`).
pub struct TokenLimits {
    by_token: moka::sync::Cache<String, Arc<TokenLimiter>>,
    default_rate: u32,
    default_burst: u32,
}

struct TokenLimiter {
    quota: (u32, u32),
    limiter: DefaultDirectRateLimiter,
}

impl TokenLimits {
    pub fn new(default_rate: u32, default_burst: u32) -> Self {
        TokenLimits {
            // Tokens unused for a while are dropped, with their allowance full again by then.
            by_token: moka::sync::Cache::builder()
                .max_capacity(MAX_DOMAINS)
                .time_to_idle(RETAIN_EVERY)
                .build(),
            default_rate,
            default_burst,
        }
    }

    /// Counts a request made with `token`: `Err(wait)` if it is over the token's limit, with how
    /// long until it would not be.
    pub fn check(&self, token: &kiln_store::ServiceToken) -> Result<(), Duration> {
        let wanted = (
            token.rate_per_second.unwrap_or(self.default_rate),
            token.burst.unwrap_or(self.default_burst),
        );
        let Some(quota) = quota(u64::from(wanted.0), u64::from(wanted.1)) else {
            return Ok(());
        };
        let limiter = match self.by_token.get(&token.id) {
            Some(limiter) if limiter.quota == wanted => limiter,
            _ => {
                let limiter = Arc::new(TokenLimiter {
                    quota: wanted,
                    limiter: RateLimiter::direct(quota),
                });
                self.by_token.insert(token.id.clone(), limiter.clone());
                limiter
            }
        };
        limiter
            .limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The quota for a domain's settings; none when the limit is off (a rate of 0).
fn quota(per_second: u64, burst: u64) -> Option<Quota> {
    let clamp = |n: u64| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX).max(1));
    let rate = NonZeroU32::new(u32::try_from(per_second).unwrap_or(u32::MAX))?;
    Some(Quota::per_second(rate).allow_burst(clamp(burst)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::{DomainSettings, Hostname};

    fn domain(per_second: u64, burst: u64) -> DomainConfig {
        DomainConfig {
            id: "d1".into(),
            tenant_id: "t1".into(),
            host: Hostname::parse("shop.test").unwrap(),
            origin: "http://127.0.0.1:1".into(),
            verified: true,
            settings: DomainSettings {
                bot_rate_per_second: per_second,
                bot_rate_burst: burst,
                ..DomainSettings::default()
            },
            service_only: false,
        }
    }

    fn token(id: &str, rate: Option<u32>, burst: Option<u32>) -> kiln_store::ServiceToken {
        kiln_store::ServiceToken {
            id: id.into(),
            tenant_id: "t1".into(),
            rate_per_second: rate,
            burst,
        }
    }

    #[test]
    fn each_token_gets_its_own_burst_then_its_rate() {
        let limits = TokenLimits::new(2, 3);
        let plain = token("k1", None, None);
        for _ in 0..3 {
            assert!(limits.check(&plain).is_ok());
        }
        let wait = limits.check(&plain).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(
            limits.check(&token("k2", None, None)).is_ok(),
            "another token has its own"
        );

        // A token's own quota beats the default, and a changed one applies at once.
        let generous = token("k1", Some(100), Some(20));
        for _ in 0..20 {
            assert!(limits.check(&generous).is_ok());
        }
        assert!(limits.check(&generous).is_err());
    }

    #[test]
    fn each_address_gets_the_burst_then_the_rate() {
        let limits = BotLimits::default();
        let shop = domain(2, 10);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.check(&shop, a).is_ok());
        }
        let wait = limits.check(&shop, a).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(
            limits.check(&shop, b).is_ok(),
            "another address has its own"
        );

        // A changed quota applies at once, with a fresh allowance.
        let stricter = domain(1, 1);
        assert!(limits.check(&stricter, a).is_ok());
        assert!(limits.check(&stricter, a).is_err());

        // A rate of 0 is no limit.
        let open = domain(0, 1);
        for _ in 0..100 {
            assert!(limits.check(&open, a).is_ok());
        }
    }
}
