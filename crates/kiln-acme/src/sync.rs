//! Each edge node's copy of the certificates: `kiln-acme sync` writes every stored certificate to
//! the edge's certificate directory as `{host}.pem` (the chain, then the private key: one file, so
//! one rename replaces both at once), removes those of domains the complete directory no longer
//! lists as verified, and keeps `_default.pem`, the
//! fallback for handshakes naming no host with a certificate. nginx reads the file named by the
//! handshake's server name on every handshake, so a new or renewed certificate is served as soon as
//! it is written, with no reload.
//!
//! Files are written mode 0600 to a temporary name and renamed into place; the nginx workers must
//! be able to read them (run sync as the workers' user, or as root with workers as root).

use crate::cert::fallback_pem;
use crate::seal::Sealer;
use anyhow::Context;
use kiln_core::Hostname;
use kiln_store::{Certificates, Directory, Store};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fallback certificate's file name (no hostname starts with `_`).
pub const FALLBACK_NAME: &str = "_default";

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub written: Vec<String>,
    pub removed: Vec<String>,
}

/// Keeps one directory in step with the stored certificates.
pub struct CertSync {
    /// The certificates it copies out, and the directory that says which hosts still have one.
    certificates: Certificates,
    directory: Directory,
    sealer: Sealer,
    dir: PathBuf,
    /// The fingerprint of each certificate written, so unchanged ones are not rewritten.
    written: HashMap<String, String>,
}

impl CertSync {
    pub fn new(store: &Store, sealer: Sealer, dir: impl Into<PathBuf>) -> Self {
        CertSync {
            certificates: store.certificates(),
            directory: store.directory(),
            sealer,
            dir: dir.into(),
            written: HashMap::new(),
        }
    }

    /// Syncs every `interval` until `shutdown` completes; a failed sync is logged and retried on
    /// the next tick, and what is on disk keeps being served meanwhile.
    pub async fn run(&mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            match self.sync_once().await {
                Ok(report) if report != SyncReport::default() => tracing::info!(
                    certs.written = report.written.len(),
                    certs.removed = report.removed.len(),
                    "certificates synced"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "certificate sync failed")
                }
            }
        }
    }

    /// One sync: writes new and changed certificates, removes withdrawn ones.
    pub async fn sync_once(&mut self) -> anyhow::Result<SyncReport> {
        let mut report = SyncReport::default();
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let fallback = self.dir.join(format!("{FALLBACK_NAME}.pem"));
        if !fallback.exists() {
            let pem = fallback_pem().context("cannot make the fallback certificate")?;
            write_private(&fallback, pem.as_bytes())?;
        }

        let index = self.certificates.index().await?;
        for (host, fingerprint) in &index {
            if self.written.get(host) == Some(fingerprint) {
                continue;
            }
            // Only names that are hostnames become file names: nothing in Redis can make this
            // write outside the directory.
            let Ok(hostname) = Hostname::parse(host) else {
                tracing::warn!(domain.host = %host, "skipping a certificate for an invalid hostname");
                continue;
            };
            let Some(record) = self.certificates.get(&hostname).await? else {
                continue;
            };
            let key = match self.sealer.open(hostname.as_str(), &record.sealed_key) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(domain.host = %host, %error, "cannot open a certificate's key");
                    continue;
                }
            };
            let mut pem = record.chain_pem.into_bytes();
            if !pem.ends_with(b"\n") {
                pem.push(b'\n');
            }
            pem.extend_from_slice(&key);
            write_private(&self.dir.join(format!("{}.pem", hostname.as_str())), &pem)?;
            self.written
                .insert(host.clone(), record.fingerprint.clone());
            report.written.push(host.clone());
        }

        // A file goes only with its domain: once the complete directory (as the dashboard
        // published it) no longer lists the host as verified. A certificate missing from the
        // index is not enough: after Redis lost its data (it restarted without persistence) the
        // index fills again one certificate at a time as the manager orders them anew, and the
        // files on disk keep being served meanwhile; nor is an incomplete directory, which lacks
        // domains still published.
        let directory = self.directory.read().await?;
        if !directory.complete {
            return Ok(report);
        }
        let verified: HashSet<&str> = directory
            .domains
            .values()
            .filter(|domain| domain.verified)
            .map(|domain| domain.host.as_str())
            .collect();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(host) = name.to_str().and_then(|n| n.strip_suffix(".pem")) else {
                continue;
            };
            if host == FALLBACK_NAME
                || host.starts_with('.')
                || index.contains_key(host)
                || verified.contains(host)
            {
                continue;
            }
            std::fs::remove_file(self.dir.join(&name))?;
            self.written.remove(host);
            report.removed.push(host.to_owned());
        }
        report.written.sort();
        report.removed.sort();
        Ok(report)
    }
}

/// Writes `contents` to `path` atomically (a temporary file in the same directory, renamed), mode
/// 0600.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a certificate path has a file name")?;
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot move a certificate into {}", path.display()))?;
    Ok(())
}
