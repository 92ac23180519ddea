//! Why a verifier, of domains or of crawlers, could not be set up: its DNS settings or the
//! system's DNS configuration. Failed lookups are not errors: they are findings of a
//! [`Verification`](crate::Verification).

use hickory_resolver::net::NetError;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the DNS timeout must be longer than zero")]
    ZeroTimeout,
    #[error("failed to read the system DNS configuration (/etc/resolv.conf)")]
    SystemConfig(#[source] NetError),
    #[error("failed to set up the DNS resolver")]
    Resolver(#[source] NetError),
}
