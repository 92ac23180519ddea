//! The gateway's in-memory mirror of the published domains, so that resolving a `Host` costs no
//! Redis round trip. It is loaded at start, updated by domain-change events and fully re-read after
//! a reconnect and periodically, in case an event was missed. A re-read never drops a domain
//! because Redis lost the directory (see [`Directory::reload`]).
//!
//! Each domain's path rules and bot patterns are compiled here, once per published version, so that
//! requests only match against them.

use kiln_core::{BotAgents, DomainConfig, Hostname, PathRules};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

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
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .cloned()
    }

    /// Whether the directory has been read from Redis at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Replaces the directory with what Redis holds when that is the complete directory (as the
    /// dashboard published it whole). An incomplete one (see [`kiln_store::PublishedDirectory`])
    /// is what a Redis that lost its data holds: at most the domains published one by one since,
    /// none at all at first. Its domains are taken, but the known domains it lacks are kept and
    /// served until the dashboard publishes the whole directory again, which it does by itself
    /// within seconds. Removals still take effect meanwhile: they come one by one, as events.
    pub async fn reload(&self, published: &kiln_store::Directory) -> kiln_store::Result<usize> {
        let published = published.read().await?;
        let mut domains: HashMap<Hostname, Arc<Domain>> = {
            // A periodic re-read mostly finds what is already here: keep those domains as compiled.
            let current = self.domains.read().unwrap_or_else(PoisonError::into_inner);
            published
                .domains
                .into_iter()
                .map(|(host, config)| {
                    let domain = match current.get(&host) {
                        Some(known) if known.config == config => Arc::clone(known),
                        _ => Arc::new(Domain::new(config)),
                    };
                    (host, domain)
                })
                .collect()
        };
        let mut domains_guard = self.domains.write().unwrap_or_else(PoisonError::into_inner);
        if !published.complete {
            let mut kept = 0;
            for (host, domain) in domains_guard.iter() {
                if !domains.contains_key(host) {
                    domains.insert(host.clone(), Arc::clone(domain));
                    kept += 1;
                }
            }
            if kept > 0 {
                tracing::warn!(
                    domains.kept = kept,
                    "Redis holds an incomplete domain directory (it lost its data?); keeping the domains it lacks until the dashboard publishes them again"
                );
            }
        }
        let count = domains.len();
        *domains_guard = domains;
        drop(domains_guard);
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    pub async fn refresh(
        &self,
        published: &kiln_store::Directory,
        host: &str,
    ) -> kiln_store::Result<()> {
        let Ok(host) = Hostname::parse(host) else {
            return Ok(());
        };
        // Compiled before the lock is taken, so requests never wait for a domain's patterns.
        let domain = published.get(&host).await?.map(Domain::new);
        let mut domains = self.domains.write().unwrap_or_else(PoisonError::into_inner);
        match domain {
            Some(domain) => domains.insert(host, Arc::new(domain)),
            None => domains.remove(&host),
        };
        Ok(())
    }
}
