//! The gateway's in-memory mirror of the published domains, so that resolving a `Host` costs no
//! Redis round trip. It is loaded at start, updated by domain-change events and fully re-read after
//! a reconnect and periodically, in case an event was missed.
//!
//! Each domain's path rules and bot patterns are compiled here, once per published version, so that
//! requests only match against them.

use kiln_core::{BotAgents, DomainConfig, Hostname, PathRules};
use kiln_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A published domain with its settings compiled for matching.
#[derive(Debug)]
pub struct Domain {
    pub config: DomainConfig,
    /// Which paths are rendered for bots (`include_paths`, `exclude_paths`).
    pub paths: PathRules,
    /// The domain's own bot User-Agent patterns (`bot_user_agents`).
    pub bot_agents: BotAgents,
}

impl Domain {
    pub fn new(config: DomainConfig) -> Self {
        Domain {
            paths: config.settings.path_rules(),
            bot_agents: config.settings.bot_agents(),
            config,
        }
    }
}

#[derive(Default)]
pub struct Directory {
    domains: RwLock<HashMap<Hostname, Arc<Domain>>>,
    loaded: AtomicBool,
}

impl Directory {
    pub fn get(&self, host: &Hostname) -> Option<Arc<Domain>> {
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

    /// Replaces the directory with what Redis holds, except that an empty Redis never empties a
    /// directory that has domains: that is a Redis that lost its data (restarted without
    /// persistence, flushed), not a platform whose every domain was removed (removals come one by
    /// one, as events). The known domains keep being served until the dashboard publishes again.
    pub async fn reload(&self, store: &Store) -> kiln_store::Result<usize> {
        let all = store.all_domains().await?;
        let count = all.len();
        if all.is_empty() {
            let known = self.domains.read().expect("directory lock poisoned").len();
            if known > 0 {
                tracing::warn!(
                    domains.known = known,
                    "Redis has no domains; it lost its data? keeping the domains known until they are published again"
                );
                return Ok(known);
            }
        }
        // A periodic re-read mostly finds what is already here: keep those domains as compiled.
        let all = {
            let current = self.domains.read().expect("directory lock poisoned");
            all.into_iter()
                .map(|(host, config)| {
                    let domain = match current.get(&host) {
                        Some(known) if known.config == config => Arc::clone(known),
                        _ => Arc::new(Domain::new(config)),
                    };
                    (host, domain)
                })
                .collect()
        };
        *self.domains.write().expect("directory lock poisoned") = all;
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    pub async fn refresh(&self, store: &Store, host: &str) -> kiln_store::Result<()> {
        let Ok(host) = Hostname::parse(host) else {
            return Ok(());
        };
        // Compiled before the lock is taken, so requests never wait for a domain's patterns.
        let domain = store.get_domain(&host).await?.map(Domain::new);
        let mut domains = self.domains.write().expect("directory lock poisoned");
        match domain {
            Some(domain) => domains.insert(host, Arc::new(domain)),
            None => domains.remove(&host),
        };
        Ok(())
    }
}
