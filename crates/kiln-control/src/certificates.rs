//! Where a domain's TLS certificate stands, as `kiln-acme` records it in Redis.

use crate::App;
use crate::db::DomainRecord;
use kiln_store::StoreError;

pub use kiln_store::{CertificateState, CertificateStatus};

/// The certificate status of `domain`, or `None` before one was ever requested.
pub async fn status(
    app: &App,
    domain: &DomainRecord,
) -> Result<Option<CertificateStatus>, StoreError> {
    app.store.certificates().status(&domain.host).await
}
