//! The gateway's in-memory mirror of the published domains, so that resolving a `Host` costs no
//! Redis round trip. It is loaded at start and read whole again after every full publish; between
//! those it is kept up to date by the directory's version (see `kiln_store::Directory`): a
//! domain-change event, a reconnect and the periodic safety net each ask Redis what changed since
//! the version the mirror holds (one small script, which answers "nothing" when nothing did) and
//! apply that, so a missed event is made up for without reading 80 MB every 30 s. The whole
//! directory is read again only when the changes cannot be told (a full publish, Redis lost the
//! version, more changes than its log keeps). A re-read never drops a domain because Redis lost
//! the directory (see [`Directory::reload`]).
//!
//! Each domain's path rules and bot patterns are compiled here, once per published version, so that
//! requests only match against them.

use kiln_core::{BotAgents, DomainConfig, Hostname, PathRules};
use kiln_runtime::metrics::prometheus_client::metrics::counter::Counter;
use kiln_store::DirectoryVersion;
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

/// The mirror, and the version of the published directory it holds.
#[derive(Default)]
pub struct Directory {
    domains: RwLock<HashMap<Hostname, Arc<Domain>>>,
    loaded: AtomicBool,
    /// The published directory's version the mirror holds, if it is known; held for the whole
    /// of each read or update, so that they take turns.
    version: tokio::sync::Mutex<Option<DirectoryVersion>>,
    /// Counts the whole directory's reads (`kiln_gateway_directory_reads_total`).
    reads: Counter,
}

impl Directory {
    /// An empty mirror counting its full reads on `reads`.
    pub fn new(reads: Counter) -> Self {
        Directory {
            reads,
            ..Directory::default()
        }
    }

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

    /// Reads the whole directory. Replaces the mirror with what Redis holds when that is the
    /// complete directory (as the dashboard published it whole). An incomplete one (see
    /// [`kiln_store::PublishedDirectory`]) is what a Redis that lost its data holds: at most the
    /// domains published one by one since, none at all at first. Its domains are taken, but the
    /// known domains it lacks are kept and served until the dashboard publishes the whole directory
    /// again, which it does by itself within seconds. Removals still take effect meanwhile: they
    /// come one by one, as events and in the directory's changes.
    pub async fn reload(&self, published: &kiln_store::Directory) -> kiln_store::Result<usize> {
        let mut version = self.version.lock().await;
        self.read_whole(published, &mut version).await
    }

    /// Brings the mirror up to date with the published directory: applies what changed since the
    /// version it holds, or reads the whole directory when that cannot be told (no version held
    /// yet, a full publish since, Redis lost the version, too many changes). Costs one small
    /// script when nothing changed: what the gateway does after a reconnect and every
    /// `KILN_GATEWAY_DIRECTORY_RESYNC_MS`, in case an event was missed.
    pub async fn sync(&self, published: &kiln_store::Directory) -> kiln_store::Result<()> {
        let mut version = self.version.lock().await;
        if version.is_some() {
            let changes = published.changes_since(version.as_ref(), None).await?;
            if self.apply(changes, &mut version) {
                return Ok(());
            }
        }
        self.read_whole(published, &mut version).await.map(drop)
    }

    /// An event said `host` changed: applies it, and every other change since the version held
    /// (one script). When those cannot be told only `host` is applied, and the version is
    /// forgotten, so that the next [`Directory::sync`] reads the whole directory.
    pub async fn refresh(
        &self,
        published: &kiln_store::Directory,
        host: &str,
    ) -> kiln_store::Result<()> {
        let Ok(host) = Hostname::parse(host) else {
            return Ok(());
        };
        let mut version = self.version.lock().await;
        let changes = published
            .changes_since(version.as_ref(), Some(&host))
            .await?;
        self.apply(changes, &mut version);
        Ok(())
    }

    async fn read_whole(
        &self,
        published: &kiln_store::Directory,
        version: &mut Option<DirectoryVersion>,
    ) -> kiln_store::Result<usize> {
        self.reads.inc();
        let published = published.read().await?;
        let mut domains: HashMap<Hostname, Arc<Domain>> = {
            // A re-read mostly finds what is already here: keep those domains as compiled.
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
        *version = published.version;
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    /// Applies changed domains (compiled before the lock is taken, so requests never wait for a
    /// domain's patterns) and takes their version: whether it is known (else every change since
    /// could not be told, and the version is forgotten).
    fn apply(
        &self,
        changes: kiln_store::DirectoryChanges,
        version: &mut Option<DirectoryVersion>,
    ) -> bool {
        if !changes.domains.is_empty() {
            let compiled: Vec<(Hostname, Option<Arc<Domain>>)> = {
                let current = self.domains.read().unwrap_or_else(PoisonError::into_inner);
                changes
                    .domains
                    .into_iter()
                    .map(|(host, config)| {
                        let domain = config.map(|config| match current.get(&host) {
                            Some(known) if known.config == config => Arc::clone(known),
                            _ => Arc::new(Domain::new(config)),
                        });
                        (host, domain)
                    })
                    .collect()
            };
            let mut domains = self.domains.write().unwrap_or_else(PoisonError::into_inner);
            for (host, domain) in compiled {
                match domain {
                    Some(domain) => domains.insert(host, domain),
                    None => domains.remove(&host),
                };
            }
        }
        *version = changes.version;
        version.is_some()
    }
}
