//! The gateway's in-memory mirror of the published domains, so that resolving a `Host` costs no
//! Redis round trip. It is loaded at start, updated by domain-change events and fully re-read after
//! a reconnect and periodically, in case an event was missed.

use kiln_core::{DomainConfig, Hostname};
use kiln_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct Directory {
    domains: RwLock<HashMap<Hostname, Arc<DomainConfig>>>,
    loaded: AtomicBool,
}

impl Directory {
    pub fn get(&self, host: &Hostname) -> Option<Arc<DomainConfig>> {
        self.domains
            .read()
            .expect("directory lock poisoned")
            .get(host)
            .cloned()
    }

    /// Whether the directory has been read from Redis at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub async fn reload(&self, store: &Store) -> kiln_store::Result<usize> {
        let all = store.all_domains().await?;
        let count = all.len();
        let all = all
            .into_iter()
            .map(|(host, domain)| (host, Arc::new(domain)))
            .collect();
        *self.domains.write().expect("directory lock poisoned") = all;
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    pub async fn refresh(&self, store: &Store, host: &str) -> kiln_store::Result<()> {
        let Ok(host) = Hostname::parse(host) else {
            return Ok(());
        };
        let domain = store.get_domain(&host).await?;
        let mut domains = self.domains.write().expect("directory lock poisoned");
        match domain {
            Some(domain) => domains.insert(host, Arc::new(domain)),
            None => domains.remove(&host),
        };
        Ok(())
    }
}
