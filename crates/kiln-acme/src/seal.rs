//! Private keys at rest: sealed with ChaCha20-Poly1305 under a key derived from `KILN_ACME_SECRET`,
//! bound to what they belong to (the host, or the ACME account), so that a sealed key copied into
//! another host's record does not open.
//!
//! Format: `v1.` followed by base64url (no padding) of a random 96-bit nonce and the ciphertext with
//! its tag.

use crate::settings::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value does not open: another KILN_ACME_SECRET, or it belongs elsewhere")]
    WrongKey,
    #[error("the system's random number generator failed")]
    Random,
}

/// Seals and opens private keys with the deployment's secret.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

const PREFIX: &str = "v1.";

impl Sealer {
    pub fn new(secret: &Secret) -> Self {
        // The secret is long and random (32 characters at least), so one hash with a label is
        // enough to turn it into a key; the label keeps this key apart from any other use of it.
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"kiln-acme seal v1\0");
        context.update(secret.expose().as_bytes());
        let digest = context.finish();
        let key = UnboundKey::new(&CHACHA20_POLY1305, digest.as_ref())
            .expect("a SHA-256 digest is a ChaCha20-Poly1305 key");
        Sealer {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        }
    }

    /// Seals `plaintext`, bound to `context` (which must be given again to open it).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Opens what [`Sealer::seal`] sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Malformed);
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut data = data.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::WrongKey)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::{SealError, Sealer};
    use crate::settings::Secret;

    /// `sealed` with one character of its nonce or ciphertext changed.
    fn tampered(sealed: &str) -> String {
        let mut chars: Vec<char> = sealed.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    #[test]
    fn opens_only_with_the_same_secret_and_context() {
        let sealer = Sealer::new(&Secret::new("a".repeat(32)));
        let key = b"-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n";
        let sealed = sealer.seal("shop.example.com", key).unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("PRIVATE"), "{sealed}");
        assert_ne!(
            sealed,
            sealer.seal("shop.example.com", key).unwrap(),
            "every seal has its own nonce"
        );
        assert_eq!(sealer.open("shop.example.com", &sealed).unwrap(), key);

        let cases = [
            (
                Sealer::new(&Secret::new("b".repeat(32))),
                "shop.example.com",
                sealed.clone(),
                SealError::WrongKey,
            ),
            (
                Sealer::new(&Secret::new("a".repeat(32))),
                "other.example.com",
                sealed.clone(),
                SealError::WrongKey,
            ),
            (
                Sealer::new(&Secret::new("a".repeat(32))),
                "shop.example.com",
                sealed.replacen("v1.", "v2.", 1),
                SealError::Malformed,
            ),
            (
                Sealer::new(&Secret::new("a".repeat(32))),
                "shop.example.com",
                "v1.AAAA".to_owned(),
                SealError::Malformed,
            ),
            (
                Sealer::new(&Secret::new("a".repeat(32))),
                "shop.example.com",
                tampered(&sealed),
                SealError::WrongKey,
            ),
        ];
        for (sealer, context, sealed, expected) in cases {
            assert_eq!(
                sealer.open(context, &sealed),
                Err(expected),
                "{context} {sealed}"
            );
        }
    }
}
