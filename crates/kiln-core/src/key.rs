//! Cache keys: one per (domain, device class, normalised URL).

use crate::{DeviceClass, NormalizedUrl};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies one cached render. The URL is hashed so keys have a bounded length whatever the URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    pub domain_id: String,
    pub device: DeviceClass,
    pub url_hash: String,
}

impl CacheKey {
    pub fn new(domain_id: &str, device: DeviceClass, url: &NormalizedUrl) -> Self {
        let digest = Sha256::digest(url.as_str().as_bytes());
        CacheKey {
            domain_id: domain_id.to_owned(),
            device,
            // 128 bits: collisions are out of reach while keys stay short.
            url_hash: hex::encode(&digest[..16]),
        }
    }

    /// The page's name, e.g. `page:<domain>:mobile:<hash>`: how events, the gateways' in-memory
    /// cache and render budgets refer to it. Where it is kept in Redis is `kiln-store`'s business
    /// (under the domain's hash tag, not under this name).
    pub fn page_key(&self) -> String {
        // Pushed, not `format!`ed: the gateway names the page on every bot request.
        let device = self.device.as_str();
        let mut key = String::with_capacity(
            "page:::".len() + self.domain_id.len() + device.len() + self.url_hash.len(),
        );
        for part in ["page:", &self.domain_id, ":", device, ":", &self.url_hash] {
            key.push_str(part);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_domains_devices_and_urls() {
        let a = NormalizedUrl::from_stored("https://a.com/x".into());
        let b = NormalizedUrl::from_stored("https://a.com/y".into());
        let base = CacheKey::new("d1", DeviceClass::Desktop, &a);
        assert_eq!(base, CacheKey::new("d1", DeviceClass::Desktop, &a));
        assert_ne!(base, CacheKey::new("d2", DeviceClass::Desktop, &a));
        assert_ne!(base, CacheKey::new("d1", DeviceClass::Mobile, &a));
        assert_ne!(base, CacheKey::new("d1", DeviceClass::Desktop, &b));
        assert!(base.page_key().starts_with("page:d1:desktop:"));
        assert_eq!(base.url_hash.len(), 32);
    }
}
