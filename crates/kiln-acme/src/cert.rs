//! What Kiln reads from an issued certificate chain (the leaf's expiry and fingerprint), and the
//! edge's fallback certificate.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the chain holds no PEM certificate")]
    Empty,
    #[error("the chain's PEM is malformed: {0}")]
    Pem(String),
    #[error("the leaf certificate does not parse: {0}")]
    X509(String),
}

/// The facts Kiln keeps about a chain's leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafInfo {
    /// SHA-256 of the leaf's DER, lowercase hex.
    pub fingerprint: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The DNS names it is valid for.
    pub dns_names: Vec<String>,
}

/// Reads the first certificate of a PEM chain (the leaf, as ACME servers send it).
pub fn leaf_info(chain_pem: &str) -> Result<LeafInfo, CertError> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or(CertError::Empty)?
        .map_err(|e| CertError::Pem(e.to_string()))?;
    der_info(&leaf)
}

/// The facts about one DER certificate.
pub fn der_info(der: &[u8]) -> Result<LeafInfo, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::X509(e.to_string()))?;
    let dns_names = cert
        .subject_alternative_name()
        .map_err(|e| CertError::X509(e.to_string()))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    Ok(LeafInfo {
        fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
    })
}

/// A self-signed certificate and key (one PEM holding both), for TLS handshakes that name no host
/// the edge has a certificate for: the handshake completes, and the browser shows a certificate
/// error instead of a connection error. It claims no real name.
pub fn fallback_pem() -> Result<String, rcgen::Error> {
    let certified = rcgen::generate_simple_self_signed(vec!["kiln-default.invalid".to_owned()])?;
    Ok(format!(
        "{}{}",
        certified.cert.pem(),
        certified.signing_key.serialize_pem()
    ))
}

#[cfg(test)]
mod tests {
    use super::{CertError, fallback_pem, leaf_info};

    #[test]
    fn reads_the_leaf_of_a_chain() {
        let pem = fallback_pem().unwrap();
        let info = leaf_info(&pem).unwrap();
        assert_eq!(info.dns_names, ["kiln-default.invalid"]);
        assert_eq!(info.fingerprint.len(), 64);
        assert!(info.not_after > info.not_before);
        // A second certificate after the leaf (an intermediate) does not change what is read.
        let other = fallback_pem().unwrap();
        assert_eq!(leaf_info(&format!("{pem}{other}")).unwrap(), info);

        assert!(matches!(leaf_info(""), Err(CertError::Empty)));
        assert!(matches!(
            leaf_info("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(CertError::X509(_))
        ));
    }
}
