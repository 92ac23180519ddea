//! Is a request that claims to come from a crawler really the crawler's? Checked the ways the
//! crawlers' operators publish (see `kiln_core::crawlers`): the address in the crawler's published
//! ranges, or forward-confirmed reverse DNS: the address's PTR name is in one of the crawler's
//! domains, and that name's A/AAAA records include the address. (The PTR record alone proves
//! nothing: whoever controls an address's reverse zone can make it say `googlebot.com`.)
//!
//! Verdicts are kept per crawler and address ([`VERIFIED_TTL`], [`IMPOSTOR_TTL`], and only
//! [`UNKNOWN_TTL`] for a DNS failure), concurrent checks of one address share one lookup, and at
//! most [`MAX_LOOKUPS`] lookups run at once: a flood of forged User-Agents from many addresses costs
//! a bounded amount of DNS, and what is over the bound is answered "unknown" at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use kiln_core::{Crawler, CrawlerRanges};
use moka::Expiry;
use moka::future::Cache;
use tokio::sync::Semaphore;

use crate::error::VerifyError;
use crate::verification::Answer;
use crate::verifier::{VerifierSettings, addresses, ask_fqdn, resolver_setup};

/// How long a verified address stays verified.
pub const VERIFIED_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// How long an address found not to be the crawler's stays so.
pub const IMPOSTOR_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a verdict of "could not tell" (DNS failed) is kept before DNS is asked again.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(30);
/// The most lookups under way at once.
pub const MAX_LOOKUPS: usize = 64;
/// The most verdicts kept.
const MAX_VERDICTS: u64 = 100_000;
/// At most this many of an address's PTR names in the crawler's domains are looked up forward.
const MAX_NAMES_CHECKED: usize = 3;

/// What is known of a request's claim to be a crawler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The address is the crawler's: in its published ranges, or by forward-confirmed reverse DNS
    /// (`by` is then the confirmed name).
    Verified { by: String },
    /// The address is not the crawler's.
    Impostor { reason: String },
    /// It could not be told: DNS failed, was too slow, or too many lookups were under way.
    Unknown { reason: String },
    /// Kiln cannot check: the crawler publishes only IP ranges and none were loaded, or the address
    /// is not a public one (a request from the operator's own network, which no crawler's DNS
    /// covers).
    Unverifiable { reason: String },
}

impl Verdict {
    /// The name logs use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Impostor { .. } => "impostor",
            Verdict::Unknown { .. } => "unknown",
            Verdict::Unverifiable { .. } => "unverifiable",
        }
    }
}

/// Checks crawlers' claims. Cheap to clone: clones share the cache and the resolver.
#[derive(Clone)]
pub struct CrawlerVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    ranges: CrawlerRanges,
    verdicts: Cache<(&'static str, IpAddr), Verdict>,
    lookups: Arc<Semaphore>,
}

impl std::fmt::Debug for CrawlerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrawlerVerifier")
            .field("ranges", &self.inner.ranges)
            .finish_non_exhaustive()
    }
}

/// Each verdict is kept as long as its kind says.
struct VerdictExpiry;

impl Expiry<(&'static str, IpAddr), Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &(&'static str, IpAddr),
        verdict: &Verdict,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            Verdict::Verified { .. } => VERIFIED_TTL,
            Verdict::Impostor { .. } => IMPOSTOR_TTL,
            Verdict::Unknown { .. } | Verdict::Unverifiable { .. } => UNKNOWN_TTL,
        })
    }
}

impl CrawlerVerifier {
    /// A verifier asking the DNS server of `settings` (or the system's), with the published
    /// `ranges` loaded.
    pub fn new(settings: &VerifierSettings, ranges: CrawlerRanges) -> Result<Self, VerifyError> {
        let (config, options) = resolver_setup(settings)?;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(VerifyError::Resolver)?;
        Ok(CrawlerVerifier {
            inner: Arc::new(Inner {
                resolver,
                ranges,
                verdicts: Cache::builder()
                    .max_capacity(MAX_VERDICTS)
                    .expire_after(VerdictExpiry)
                    .build(),
                lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
            }),
        })
    }

    /// Whether `ip` belongs to `crawler`. Waits `budget` at most: a lookup that takes longer goes
    /// on in the background (its verdict is kept for the next request) and this one gets
    /// [`Verdict::Unknown`].
    pub async fn verify(&self, crawler: &'static Crawler, ip: IpAddr, budget: Duration) -> Verdict {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !kiln_core::is_public_ip(ip) {
            return Verdict::Unverifiable {
                reason: format!("{ip} is not a public address"),
            };
        }
        if self.inner.ranges.contains(crawler, ip) {
            return Verdict::Verified {
                by: format!("{}'s published ranges", crawler.name),
            };
        }
        if crawler.dns_domains.is_empty() {
            return if self.inner.ranges.has(crawler) {
                Verdict::Impostor {
                    reason: format!("not in {}'s published ranges", crawler.name),
                }
            } else {
                Verdict::Unverifiable {
                    reason: format!(
                        "{} publishes only IP ranges, and none were loaded",
                        crawler.name
                    ),
                }
            };
        }
        let key = (crawler.name, ip);
        if let Some(verdict) = self.inner.verdicts.get(&key).await {
            return verdict;
        }
        let Ok(permit) = self.inner.lookups.clone().try_acquire_owned() else {
            return Verdict::Unknown {
                reason: format!("{MAX_LOOKUPS} lookups are under way already"),
            };
        };
        // On a task of its own, so that a lookup outliving the budget still ends in a kept verdict.
        let inner = self.inner.clone();
        let lookup = tokio::spawn(async move {
            let verdict = inner
                .verdicts
                .get_with(key, async {
                    let verdict = forward_confirmed(&inner.resolver, crawler, ip).await;
                    if let Verdict::Impostor { reason } = &verdict {
                        tracing::info!(crawler = crawler.name, client.ip = %ip, %reason, "a request claimed to be a crawler and is not");
                    }
                    verdict
                })
                .await;
            drop(permit);
            verdict
        });
        if budget.is_zero() {
            // Not left to the timer: it rounds up to its next millisecond tick, and a lookup on this
            // machine can end within it.
            return Verdict::Unknown {
                reason: "DNS took longer than 0 ms".into(),
            };
        }
        match tokio::time::timeout(budget, lookup).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(error)) => Verdict::Unknown {
                reason: format!("the lookup failed: {error}"),
            },
            Err(_) => Verdict::Unknown {
                reason: format!("DNS took longer than {} ms", budget.as_millis()),
            },
        }
    }
}

/// Forward-confirmed reverse DNS: the PTR names of `ip` in the crawler's domains, and whether one
/// of them resolves back to `ip`.
async fn forward_confirmed(
    resolver: &TokioResolver,
    crawler: &'static Crawler,
    ip: IpAddr,
) -> Verdict {
    let names = match ask_fqdn(resolver, Name::from(ip), RecordType::PTR).await {
        Answer::Found { records } => records
            .into_iter()
            .filter_map(|data| match data {
                RData::PTR(ptr) => Some(ptr.0.to_ascii()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        Answer::NoRecords | Answer::NoSuchName => Vec::new(),
        Answer::Failed { failure } => {
            return Verdict::Unknown {
                reason: format!("the reverse lookup of {ip} failed: {failure}"),
            };
        }
    };
    if names.is_empty() {
        return Verdict::Impostor {
            reason: format!("{ip} has no reverse DNS name"),
        };
    }
    let owned: Vec<String> = names
        .iter()
        .filter(|name| crawler.owns_hostname(name))
        .take(MAX_NAMES_CHECKED)
        .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    if owned.is_empty() {
        return Verdict::Impostor {
            reason: format!(
                "the reverse DNS name of {ip} ({}) is not in {}",
                names.join(", "),
                crawler.dns_domains.join(" or ")
            ),
        };
    }
    let mut failure = None;
    for name in &owned {
        match addresses(resolver, name).await {
            Answer::Found { records } if records.contains(&ip) => {
                return Verdict::Verified { by: name.clone() };
            }
            Answer::Failed { failure: f } => failure = Some(format!("{name}: {f}")),
            _ => {}
        }
    }
    match failure {
        Some(failure) => Verdict::Unknown {
            reason: format!("the forward lookup failed ({failure})"),
        },
        None => Verdict::Impostor {
            reason: format!("{} does not resolve to {ip}", owned.join(", ")),
        },
    }
}
