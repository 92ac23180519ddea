//! CSRF tokens for the dashboard's forms.
//!
//! A logged-in user's forms carry `HMAC(key, "session" ‖ session id)`: no extra storage, valid for
//! exactly as long as the session, and unguessable without the dashboard's secret. Before logging
//! in there is no session, so the log-in and sign-up forms use the double-submit pattern: a random
//! `kiln_csrf` cookie, and `HMAC(key, "visitor" ‖ cookie)` in the form (which stops log-in CSRF,
//! where another site logs a victim into the attacker's account).
//!
//! The key is derived from `KILN_SESSION_SECRET`, so every dashboard replica agrees on it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The cookie that ties a visitor's log-in and sign-up forms to their browser.
pub const VISITOR_COOKIE: &str = "kiln_csrf";

#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// Derives the key from the session secret (a different key from the one that signs sessions).
    pub fn derive(secret: &SecretString) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"kiln dashboard csrf v1");
        CsrfKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, kind: &[u8], value: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(kind);
        mac.update(b"\0");
        mac.update(value);
        mac
    }

    fn token(&self, kind: &[u8], value: &[u8]) -> String {
        hex::encode(self.mac(kind, value).finalize().into_bytes())
    }

    /// Compares in constant time.
    fn verify(&self, kind: &[u8], value: &[u8], token: &str) -> bool {
        match hex::decode(token.trim()) {
            Ok(bytes) => self.mac(kind, value).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    pub fn for_session(&self, session_id: Uuid) -> String {
        self.token(b"session", session_id.as_bytes())
    }

    pub fn verify_session(&self, session_id: Uuid, token: &str) -> bool {
        self.verify(b"session", session_id.as_bytes(), token)
    }

    pub fn for_visitor(&self, cookie: &str) -> String {
        self.token(b"visitor", cookie.as_bytes())
    }

    pub fn verify_visitor(&self, cookie: &str, token: &str) -> bool {
        !cookie.is_empty() && self.verify(b"visitor", cookie.as_bytes(), token)
    }
}

/// A fresh random value for the visitor cookie.
pub fn new_visitor_value() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> CsrfKey {
        CsrfKey::derive(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_session_token_is_valid_for_its_session_only() {
        let key = key("0123456789abcdef0123456789abcdef");
        let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let token = key.for_session(mine);
        assert!(key.verify_session(mine, &token));
        assert!(!key.verify_session(theirs, &token));
        assert!(!key.verify_session(mine, ""));
        assert!(!key.verify_session(mine, "not hex"));
        assert!(!key.verify_session(mine, &token[..20]));
    }

    #[test]
    fn tokens_depend_on_the_secret_and_the_kind() {
        let a = key("0123456789abcdef0123456789abcdef");
        let b = key("fedcba9876543210fedcba9876543210");
        let id = Uuid::new_v4();
        assert!(!b.verify_session(id, &a.for_session(id)));
        let cookie = new_visitor_value();
        let token = a.for_visitor(&cookie);
        assert!(a.verify_visitor(&cookie, &token));
        assert!(!a.verify_visitor(&new_visitor_value(), &token));
        assert!(!a.verify_visitor("", &a.for_visitor("")));
        // A visitor token never passes as a session token for the same bytes.
        assert!(!a.verify_session(id, &a.for_visitor(&String::from_utf8_lossy(id.as_bytes()))));
    }
}
