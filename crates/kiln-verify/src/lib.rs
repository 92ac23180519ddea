//! Domain ownership verification: before Kiln renders a customer's hostname for bots, DNS must show
//! that the customer controls it, by a CNAME to Kiln's edge, a TXT record holding the domain's token,
//! or (for apex domains) addresses that are all the edge's.
//!
//! [`Verifier::check`] asks DNS afresh every time and never fails: a DNS outage is a finding, so the
//! answer is "not verified, because the lookup failed", never "no record".
//!
//! Crawler verification: [`CrawlerVerifier::verify`] tells whether a request claiming to be
//! Googlebot (or another crawler that publishes how to check) comes from one of the crawler's
//! addresses, by forward-confirmed reverse DNS or the crawler's published ranges.
//!
//! Architecture invariants: DNS is the only IO here, always bounded by a timeout; a lookup that
//! fails is never read as an answer (a domain is "not verified, the lookup failed", a crawler
//! "unknown", never an impostor), and only a crawler's verdict is cached, never a domain's.

mod crawler;
mod error;
mod verification;
mod verifier;

pub use crawler::{CrawlerVerifier, IMPOSTOR_TTL, MAX_LOOKUPS, UNKNOWN_TTL, VERIFIED_TTL, Verdict};
pub use error::VerifyError;
pub use verification::{
    Answer, Findings, LookupFailure, Method, Verification, canonical_name, challenge_name,
};
pub use verifier::{Verifier, VerifierSettings};
