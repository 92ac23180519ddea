//! Keeping Redis's domain directory whole: Postgres is the truth, and the directory gateways and
//! the certificate manager read is published from it, in full at every start of `serve`, by the
//! `publish` command, and whenever Redis is found to have lost it.
//!
//! A Redis that restarts without persistence comes back without the directory, and gateways keep
//! serving the domains they know only until they learn otherwise. So every dashboard checks every
//! [`CHECK_EVERY`] that the directory still carries the mark of a full publish (see
//! `kiln_store::PublishedDirectory`) and publishes it whole again when it does not. With several
//! dashboards each may do so at the same moment; publishing is idempotent.
//!
//! The render service's tokens live in the same Redis and are lost with it, so every full publish
//! of the directory publishes them whole too (`service_tokens::publish_all`).

use crate::App;
use crate::domains::DomainError;
use kiln_core::{DomainConfig, Hostname};
use std::collections::HashMap;
use std::time::Duration;

/// How often each dashboard checks that Redis still holds the whole directory: one `HEXISTS`.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What [`publish_all`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Domains written to Redis: every domain in Postgres.
    pub published: usize,
    /// Hostnames found in Redis but not in Postgres, now withdrawn (gone with the directory the
    /// publish replaced, or removed from Postgres while it ran).
    pub withdrawn: Vec<Hostname>,
    /// The render service's live tokens, all published.
    pub service_tokens: usize,
}

/// Makes Redis's domain directory match Postgres: publishes every domain in place of whatever the
/// directory held, marked complete (which withdraws the ones no longer registered: repair after a
/// Redis flush or a failed update), then makes again the changes made meanwhile; then publishes
/// the render service's live tokens, replacing whatever Redis held.
///
/// The full publish puts a new hash in place of the directory ([`kiln_store::Directory::publish`]),
/// so a change another dashboard made to the directory while it was being written is undone by
/// it. Postgres is read again after it, on purpose: `add_domain`, `update` and the removals commit
/// to Postgres before they publish, so any change whose publish the new hash undid is in the
/// Postgres read afterwards, and is made again here (a domain added or changed meanwhile is put, one
/// removed meanwhile, which the publish may have put back, is withdrawn). (A change committed
/// after that read and published before this puts its own copy can still be overwritten by it,
/// until the next publish.)
///
/// A domain registered before its name became one nobody may claim (the platform's own names,
/// single labels, public suffixes: see [`crate::hostnames`]) stays in Postgres but is not
/// published, and is withdrawn from Redis: gateways must never proxy such a name to a tenant's
/// origin.
pub async fn publish_all(app: &App) -> Result<PublishReport, DomainError> {
    let records = publishable(app, app.db.list_domains().await?);
    let configs: Vec<DomainConfig> = records.iter().map(|record| record.config()).collect();
    let published = app
        .store
        .directory()
        .publish(&configs)
        .await
        .map_err(DomainError::Store)?;

    let registered: HashMap<Hostname, DomainConfig> = app
        .db
        .list_domains()
        .await?
        .into_iter()
        .filter(|record| app.hostnames.check(&record.host).is_ok())
        .map(|record| (record.host.clone(), record.config()))
        .collect();
    let written: HashMap<&Hostname, &DomainConfig> = configs
        .iter()
        .map(|config| (&config.host, config))
        .collect();
    let mut changed: Vec<&DomainConfig> = registered
        .values()
        .filter(|config| written.get(&config.host) != Some(config))
        .collect();
    changed.sort_by(|a, b| a.host.cmp(&b.host));
    for config in changed {
        app.store
            .directory()
            .put(config)
            .await
            .map_err(DomainError::Store)?;
        tracing::info!(domain.host = %config.host, "published again a domain changed during the full publish");
    }
    let removed: Vec<&Hostname> = written
        .keys()
        .copied()
        .filter(|host| !registered.contains_key(*host))
        .collect();
    for host in &removed {
        app.store
            .directory()
            .remove(host)
            .await
            .map_err(DomainError::Store)?;
    }
    let mut withdrawn: Vec<Hostname> = published
        .dropped
        .into_iter()
        .filter(|host| !registered.contains_key(host))
        .chain(removed.into_iter().cloned())
        .collect();
    withdrawn.sort();
    withdrawn.dedup();
    for host in &withdrawn {
        tracing::info!(domain.host = %host, "withdrew a domain that is no longer registered");
    }
    let service_tokens = crate::service_tokens::publish_all(app).await?;

    tracing::info!(
        domains.published = configs.len(),
        domains.withdrawn = withdrawn.len(),
        directory.batches = published.batches,
        service_tokens.published = service_tokens,
        "domain directory published"
    );
    Ok(PublishReport {
        published: configs.len(),
        withdrawn,
        service_tokens,
    })
}

/// The records whose names may be published, with a warning for each that may not.
fn publishable(app: &App, records: Vec<crate::db::DomainRecord>) -> Vec<crate::db::DomainRecord> {
    records
        .into_iter()
        .filter(|record| match app.hostnames.check(&record.host) {
            Ok(()) => true,
            Err(refused) => {
                tracing::warn!(
                    domain.host = %record.host,
                    domain.id = %record.id,
                    %refused,
                    "not publishing a domain registered under a name nobody may claim; remove it"
                );
                false
            }
        })
        .collect()
}

/// Publishes the whole directory again whenever Redis no longer holds it whole (it restarted
/// without persistence, was flushed, or evicted it), checking every `every`. Runs forever; a
/// failed check or publish is retried on the next tick (said once per outage, not every tick).
pub async fn keep_published(app: App, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let outcome = match app.store.directory().is_complete().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(
                    "Redis no longer holds the whole domain directory (it lost its data?); publishing it again"
                );
                publish_all(&app).await.map(drop)
            }
            Err(error) => Err(DomainError::Store(error)),
        };
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the domain directory is checked again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(
                    error = %crate::error_chain(&error),
                    "cannot check or republish the domain directory; retrying"
                );
            }
            Err(_) => {}
        }
    }
}
