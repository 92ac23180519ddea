//! The published domain directory: one hash, hostname → `DomainConfig` JSON, that gateways mirror
//! in memory and the certificate manager works from. The dashboard is its only writer, and Postgres
//! its truth.
//!
//! A Redis that restarts without persistence (or is flushed, or evicts the hash) comes back
//! without it, and the next single domain the dashboard publishes would then make a directory of
//! one. So the hash also holds a mark, the field [`COMPLETE_FIELD`], written only by a full
//! publish ([`Directory::publish`]) in the same command as every domain: a directory that
//! has the mark holds every published domain, and one without it holds only those changed since
//! Redis lost its data. Readers that mirror the whole directory must not drop domains because an
//! unmarked one lacks them (domains removed one by one are announced by events), and the dashboard
//! publishes the whole directory again as soon as it sees the mark missing.

use crate::{Result, StoreError, StoreEvent};
use fred::prelude::*;
use fred::types::scan::Scanner;
use futures::StreamExt;
use kiln_core::{DomainConfig, Hostname};
use std::collections::HashMap;

/// The directory hash's field that marks it complete, holding when the full publish was made (Unix
/// milliseconds). No hostname contains `#`, so it never names a domain.
const COMPLETE_FIELD: &str = "#complete";

/// How many fields one command of a directory read asks for (`HSCAN … COUNT`): about 80 KB of
/// domains, a fraction of a millisecond of Redis's time.
const READ_PAGE: u32 = 128;

/// The published directory as one read found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishedDirectory {
    /// Every domain the hash holds, by hostname.
    pub domains: HashMap<Hostname, DomainConfig>,
    /// Whether these are all the published domains (the hash has the mark of a full publish).
    /// When false Redis lost the directory, and what it holds now are only the domains published
    /// one by one since: a domain missing from it may still be published.
    pub complete: bool,
}

crate::view! {
    /// The domains published for the gateways (`{prefix}domains`), written by the control plane
    /// and read by the gateways and kiln-acme.
    Directory
}

impl Directory {
    fn directory_key(&self) -> String {
        self.conn.key("domains")
    }

    /// Publishes a domain's configuration for gateways and workers, and tells them it changed.
    pub async fn put(&self, domain: &DomainConfig) -> Result<()> {
        let json = serde_json::to_string(domain).map_err(StoreError::encode("domain"))?;
        let _: () = self
            .conn
            .pool
            .hset(self.directory_key(), (domain.host.as_str(), json))
            .await?;
        self.conn
            .publish(&StoreEvent::DomainChanged {
                host: domain.host.to_string(),
            })
            .await
    }

    /// Withdraws a domain; gateways stop serving it within a moment.
    pub async fn remove(&self, host: &Hostname) -> Result<bool> {
        let removed: u32 = self
            .conn
            .pool
            .hdel(self.directory_key(), host.as_str())
            .await?;
        self.conn
            .publish(&StoreEvent::DomainChanged {
                host: host.to_string(),
            })
            .await?;
        Ok(removed > 0)
    }

    pub async fn get(&self, host: &Hostname) -> Result<Option<DomainConfig>> {
        let json: Option<String> = self
            .conn
            .pool
            .hget(self.directory_key(), host.as_str())
            .await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::corrupt(format!("domain {host}"), e))
        })
        .transpose()
    }

    /// Publishes the whole directory, `domains` (every registered domain), and marks it complete,
    /// all in one command: a Redis that restarts meanwhile holds either all of it or none of it.
    /// Domains the hash holds besides these are left to the caller to withdraw. Then tells
    /// gateways to read the directory again.
    pub async fn publish(&self, domains: &[DomainConfig]) -> Result<()> {
        let mut fields = Vec::with_capacity(domains.len() + 1);
        for domain in domains {
            let json = serde_json::to_string(domain).map_err(StoreError::encode("domain"))?;
            fields.push((domain.host.to_string(), json));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        fields.push((COMPLETE_FIELD.to_owned(), now.to_string()));
        let _: () = self.conn.pool.hset(self.directory_key(), fields).await?;
        self.conn.publish(&StoreEvent::DirectoryPublished).await
    }

    /// Whether the directory holds the mark of a full publish: false once Redis lost its data.
    pub async fn is_complete(&self) -> Result<bool> {
        Ok(self
            .conn
            .pool
            .hexists(self.directory_key(), COMPLETE_FIELD)
            .await?)
    }

    /// The published directory and whether it is complete. Malformed records are skipped with a
    /// warning so that one bad record cannot take every domain down.
    ///
    /// Read a page at a time (`HSCAN`, [`READ_PAGE`] fields a command), not with one `HGETALL`: at
    /// 100,000 domains the hash is some 80 MB, which one command would take over a second to send
    /// (past any request-path timeout, so a gateway could never load it) and would hold Redis for
    /// over 100 ms. A field changed while the read goes on may be seen before or after its change,
    /// as with any read of a directory that changes; one seen twice counts once.
    pub async fn read(&self) -> Result<PublishedDirectory> {
        let mut directory = PublishedDirectory::default();
        let client = self.conn.pool.next();
        let pages = client.hscan(self.directory_key(), "*", Some(READ_PAGE));
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.next().await {
            let mut page = page?;
            let Some(fields) = page.take_results() else {
                continue;
            };
            for (host, json) in fields.inner() {
                let Some(host) = host.as_str() else {
                    continue;
                };
                if host == COMPLETE_FIELD {
                    directory.complete = true;
                    continue;
                }
                let parsed = json
                    .as_str()
                    .ok_or_else(|| "not a string".to_owned())
                    .and_then(|json| {
                        serde_json::from_str::<DomainConfig>(&json).map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(domain) => {
                        directory.domains.insert(domain.host.clone(), domain);
                    }
                    Err(error) => {
                        tracing::warn!(domain.host = %host, %error, "skipping a malformed domain record")
                    }
                }
            }
            // Dropping the page asks for the next one.
        }
        Ok(directory)
    }

    /// Every domain the directory holds, keyed by hostname, whether or not it is complete (see
    /// [`Directory::read`]).
    pub async fn all(&self) -> Result<HashMap<Hostname, DomainConfig>> {
        Ok(self.read().await?.domains)
    }
}
