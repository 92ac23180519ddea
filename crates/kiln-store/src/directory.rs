//! The published domain directory: one hash, hostname → `DomainConfig` JSON, that gateways mirror
//! in memory and the certificate manager works from. The dashboard is its only writer, and Postgres
//! its truth.
//!
//! A Redis that restarts without persistence (or is flushed, or evicts the hash) comes back
//! without it, and the next single domain the dashboard publishes would then make a directory of
//! one. So the hash also holds a mark, the field [`COMPLETE_FIELD`], written only by a full
//! publish ([`Directory::publish`]) in the same script that puts every domain in place: a directory
//! that has the mark holds every published domain, and one without it holds only those changed
//! since Redis lost its data. Readers that mirror the whole directory must not drop domains because
//! an unmarked one lacks them (domains removed one by one are announced by events), and the
//! dashboard publishes the whole directory again as soon as it sees the mark missing.
//!
//! **Versions.** Beside the hash, in its hash slot, a small hash holds the directory's version: an
//! *epoch* (random, new with every full publish, and with the first change after Redis lost the
//! version) and a *sequence* number that every single change ([`Directory::put`],
//! [`Directory::remove`]) raises by one, in the same script as the change; with the hostnames of
//! the last [`CHANGE_LOG`] changes. So a reader that holds the directory as of one version asks
//! for what changed since ([`Directory::changes_since`]: one small script, which answers "nothing"
//! when nothing did) instead of reading 80 MB again, and reads the whole directory only when the
//! changes cannot be told: after a full publish (another epoch), after Redis lost the version, or
//! after more changes than the log keeps.
//!
//! **A full publish** writes the domains a batch at a time ([`PUBLISH_BATCH`] a command) into a
//! hash of its own, then, in one script, checks that every domain is there, marks it complete and
//! renames it over the directory (the old one freed in the background) with a new epoch. No command
//! carries the whole directory, Redis is never held for long, a reader never sees half a publish
//! as a directory, and domains no longer published are gone with the old hash. A Redis that
//! restarts during the publish loses part of the new hash (or all of it), so the check fails and the
//! publish is an error, to be made again; nothing is renamed. While it runs Redis holds the
//! directory twice.

use crate::{Result, StoreError, StoreEvent};
use fred::prelude::*;
use fred::types::scan::Scanner;
use futures::StreamExt;
use kiln_core::{DomainConfig, Hostname};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The directory hash's field that marks it complete, holding when the full publish was made (Unix
/// milliseconds). No hostname contains `#`, so it never names a domain.
const COMPLETE_FIELD: &str = "#complete";

/// How many fields one command of a directory read asks for (`HSCAN … COUNT`): about 80 KB of
/// domains, a fraction of a millisecond of Redis's time.
const READ_PAGE: u32 = 128;

/// How many domains one command of a full publish writes: about 650 KB, a millisecond or two of
/// Redis's time (at 100,000 domains the whole directory is some 80 MB, which one command would
/// hold Redis for about 100 ms with).
pub const PUBLISH_BATCH: usize = 1_000;

/// How many of the directory's last changes its version remembers (by hostname): a reader further
/// behind reads the whole directory.
pub const CHANGE_LOG: u64 = 1_024;

/// How many fields of the old directory a full publish compares with the new one per command, to
/// name the domains it drops.
const DROPPED_PAGE: u32 = 1_000;

/// How long the hash of a full publish lives unless the publish puts it in place: a publisher that
/// dies leaves nothing for long. Every batch renews it.
const PUBLISHING_TTL: Duration = Duration::from_secs(600);

/// A single change: the domain written (`ARGV[2]` its JSON) or removed (`ARGV[2]` empty), and
/// the version raised with its hostname logged, all at once. KEYS: the directory, its version.
/// ARGV: the hostname, the JSON, an epoch for a version Redis lost, [`CHANGE_LOG`].
const LUA_CHANGE: &str = r#"
local changed = 1
if ARGV[2] == '' then
  changed = redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HSETNX', KEYS[2], 'epoch', ARGV[3])
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[2], 'change:' .. seq, ARGV[1])
local log = tonumber(ARGV[4])
if seq > log then redis.call('HDEL', KEYS[2], 'change:' .. (seq - log)) end
return changed
"#;

/// What changed since a version: `{epoch, seq, whole, host, json|nil, …}`, `whole` 1 when the
/// hosts listed are every domain changed since `ARGV[1]`/`ARGV[2]` (each once, with what the
/// directory holds for it now), 0 when that cannot be told. `ARGV[4]`, if given, is listed
/// whatever `whole` is. KEYS: the directory, its version. ARGV: the epoch known (`''`: none), the
/// sequence known, [`CHANGE_LOG`], a hostname.
const LUA_CHANGES: &str = r#"
local version = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local epoch, seq = version[1], tonumber(version[2] or '0')
local known = tonumber(ARGV[2])
local out = {epoch or '', tostring(seq), 0}
local hosts, seen = {}, {}
if epoch and epoch == ARGV[1] and known <= seq and seq - known <= tonumber(ARGV[3]) then
  out[3] = 1
  for n = known + 1, seq do
    local host = redis.call('HGET', KEYS[2], 'change:' .. n)
    if not host then
      out[3] = 0
      hosts, seen = {}, {}
      break
    end
    if not seen[host] then
      seen[host] = true
      hosts[#hosts + 1] = host
    end
  end
end
if ARGV[4] and not seen[ARGV[4]] then hosts[#hosts + 1] = ARGV[4] end
for _, host in ipairs(hosts) do
  out[#out + 1] = host
  out[#out + 1] = redis.call('HGET', KEYS[1], host)
end
return out
"#;

/// One page of the domains the directory holds and a publish's new hash lacks: `{cursor, host, …}`.
/// KEYS: the directory, the new hash. ARGV: the cursor, the page size.
const LUA_DROPPED: &str = r#"
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {page[1]}
local fields = page[2]
for i = 1, #fields, 2 do
  local host = fields[i]
  if string.sub(host, 1, 1) ~= '#' and redis.call('HEXISTS', KEYS[2], host) == 0 then
    out[#out + 1] = host
  end
end
return out
"#;

/// Puts a full publish's hash in place, if it holds every domain (`ARGV[1]`: a Redis that
/// restarted meanwhile lost some): marked complete, renamed over the directory (the old one freed
/// in the background), under a new version. 1 if done, 0 if not. KEYS: the directory, its version,
/// the new hash. ARGV: the number of domains, the new epoch, now (Unix ms).
const LUA_COMMIT: &str = r#"
if redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[3], '#complete', ARGV[3])
redis.call('PERSIST', KEYS[3])
redis.call('UNLINK', KEYS[1])
redis.call('RENAME', KEYS[3], KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'seq', '0')
return 1
"#;

/// Which published directory a reader holds: the epoch of its last full publish and the number of
/// single changes since. Only compared, and handed back to [`Directory::changes_since`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryVersion {
    epoch: String,
    seq: u64,
}

impl std::fmt::Display for DirectoryVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}

/// The published directory as one read found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishedDirectory {
    /// Every domain the hash holds, by hostname.
    pub domains: HashMap<Hostname, DomainConfig>,
    /// Whether these are all the published domains (the hash has the mark of a full publish, and
    /// was not replaced while it was read). When false Redis lost the directory, and what it holds
    /// now are only the domains published one by one since, or a full publish replaced it during
    /// the read: a domain missing from it may still be published.
    pub complete: bool,
    /// The version the read began at, if Redis holds one and no full publish replaced the
    /// directory during the read: asking [`Directory::changes_since`] it gives whatever changed
    /// during the read and after.
    pub version: Option<DirectoryVersion>,
}

/// What changed in the directory since a version ([`Directory::changes_since`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// The version these changes bring a reader to, when they are all the changes since the one
    /// asked about; none when they cannot be told (a full publish since, Redis lost the version,
    /// more changes than [`CHANGE_LOG`]): then read the whole directory.
    pub version: Option<DirectoryVersion>,
    /// The domains changed (and the one asked about), with what the directory holds for each now:
    /// none for one removed.
    pub domains: Vec<(Hostname, Option<DomainConfig>)>,
}

/// What a full publish did ([`Directory::publish`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Hostnames the directory held before and the publish does not (found just before it was put
    /// in place): gone with it.
    pub dropped: Vec<Hostname>,
    /// Commands that wrote domains ([`PUBLISH_BATCH`] each at most).
    pub batches: usize,
    /// The largest of them: the bytes of its hostnames and JSON.
    pub largest_batch_bytes: usize,
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

    /// `{prefix}domains`'s companion `name`, in its hash slot: the key shares its hash tag, or is
    /// tagged with its whole name (`{kiln:domains}:version`), which hashes as the untagged
    /// `kiln:domains` does.
    fn companion_key(&self, name: &str) -> String {
        let directory = self.directory_key();
        if has_hash_tag(&directory) {
            format!("{directory}:{name}")
        } else {
            format!("{{{directory}}}:{name}")
        }
    }

    fn version_key(&self) -> String {
        self.companion_key("version")
    }

    /// Publishes a domain's configuration for gateways and workers, and tells them it changed.
    pub async fn put(&self, domain: &DomainConfig) -> Result<()> {
        let json = serde_json::to_string(domain).map_err(StoreError::encode("domain"))?;
        self.change(&domain.host, json).await?;
        Ok(())
    }

    /// Withdraws a domain; gateways stop serving it within a moment.
    pub async fn remove(&self, host: &Hostname) -> Result<bool> {
        self.change(host, String::new()).await
    }

    /// Writes (`json`) or removes (empty) one domain with its version raised, then announces it.
    async fn change(&self, host: &Hostname, json: String) -> Result<bool> {
        let changed: i64 = self
            .conn
            .pool
            .eval(
                LUA_CHANGE,
                vec![self.directory_key(), self.version_key()],
                vec![
                    Value::from(host.as_str()),
                    Value::from(json),
                    Value::from(new_epoch()),
                    Value::from(CHANGE_LOG as i64),
                ],
            )
            .await?;
        self.conn
            .publish(&StoreEvent::DomainChanged {
                host: host.to_string(),
            })
            .await?;
        Ok(changed > 0)
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

    /// Publishes the whole directory, `domains` (every registered domain), marked complete, in
    /// place of whatever the directory held: domains it held besides these are gone (and named in
    /// the answer). Then tells gateways to read the directory again.
    ///
    /// The domains go [`PUBLISH_BATCH`] a command into a hash of this publish's own; one script
    /// then puts it in place, whole or not at all (see the module's doc): a Redis that restarted
    /// meanwhile makes this an error, and the directory stays as it was. Single changes made to
    /// the directory while this runs are lost with the old hash: the caller, which knows the
    /// truth, makes them again (the control plane's `publish_all` does).
    pub async fn publish(&self, domains: &[DomainConfig]) -> Result<Published> {
        let epoch = new_epoch();
        let publishing = self.companion_key(&format!("publishing:{epoch}"));
        let mut published = Published::default();
        let mut hosts = HashSet::with_capacity(domains.len());
        for batch in domains.chunks(PUBLISH_BATCH) {
            let mut fields = Vec::with_capacity(batch.len());
            let mut bytes = 0;
            for domain in batch {
                let json = serde_json::to_string(domain).map_err(StoreError::encode("domain"))?;
                bytes += domain.host.as_str().len() + json.len();
                hosts.insert(domain.host.as_str());
                fields.push((domain.host.to_string(), json));
            }
            let tx = self.conn.pool.next().multi();
            let _: () = tx.hset(&publishing, fields).await?;
            let _: () = tx
                .pexpire(&publishing, PUBLISHING_TTL.as_millis() as i64, None)
                .await?;
            let _: () = tx.exec(true).await?;
            published.batches += 1;
            published.largest_batch_bytes = published.largest_batch_bytes.max(bytes);
        }

        published.dropped = self.dropped(&publishing).await?;
        let done: i64 = self
            .conn
            .pool
            .eval(
                LUA_COMMIT,
                vec![self.directory_key(), self.version_key(), publishing],
                vec![
                    Value::from(hosts.len() as i64),
                    Value::from(epoch),
                    Value::from(kiln_core::unix_millis_now().to_string()),
                ],
            )
            .await?;
        if done != 1 {
            return Err(StoreError::PublishInterrupted);
        }
        self.conn.publish(&StoreEvent::DirectoryPublished).await?;
        Ok(published)
    }

    /// The hostnames the directory holds and the hash `publishing` does not, a page at a time.
    async fn dropped(&self, publishing: &str) -> Result<Vec<Hostname>> {
        let mut dropped = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let page: Vec<Value> = self
                .conn
                .pool
                .eval(
                    LUA_DROPPED,
                    vec![self.directory_key(), publishing.to_owned()],
                    vec![Value::from(cursor), Value::from(i64::from(DROPPED_PAGE))],
                )
                .await?;
            let mut page = page.into_iter();
            cursor = page
                .next()
                .and_then(|value| value.as_string())
                .ok_or_else(|| StoreError::corrupt("directory scan", "no cursor"))?;
            dropped.extend(
                page.filter_map(|value| value.as_string())
                    .filter_map(|host| Hostname::parse(&host).ok()),
            );
            if cursor == "0" {
                break;
            }
        }
        dropped.sort();
        dropped.dedup();
        Ok(dropped)
    }

    /// Whether the directory holds the mark of a full publish: false once Redis lost its data.
    pub async fn is_complete(&self) -> Result<bool> {
        Ok(self
            .conn
            .pool
            .hexists(self.directory_key(), COMPLETE_FIELD)
            .await?)
    }

    /// The directory's version now: none if Redis holds none (no full publish since it lost its
    /// data, nor any change).
    pub async fn version(&self) -> Result<Option<DirectoryVersion>> {
        let fields: Vec<Option<String>> = self
            .conn
            .pool
            .hmget(self.version_key(), vec!["epoch", "seq"])
            .await?;
        let mut fields = fields.into_iter();
        let (epoch, seq) = (fields.next().flatten(), fields.next().flatten());
        Ok(epoch.map(|epoch| DirectoryVersion {
            epoch,
            seq: seq.and_then(|seq| seq.parse().ok()).unwrap_or(0),
        }))
    }

    /// What changed since `version` (a reader's, from [`Directory::read`] or an earlier answer of
    /// this), in one script: the domains changed, each with what the directory holds for it now,
    /// and the version that brings the reader to. An empty list at the same version when nothing
    /// changed. With no `version`, or one the changes since cannot be told from (see
    /// [`DirectoryChanges::version`]), the answer has no version and the reader should read the
    /// whole directory. `also`, if given, is in the answer whatever it is (a domain an event said
    /// changed).
    pub async fn changes_since(
        &self,
        version: Option<&DirectoryVersion>,
        also: Option<&Hostname>,
    ) -> Result<DirectoryChanges> {
        let mut args = vec![
            Value::from(version.map_or("", |v| v.epoch.as_str())),
            Value::from(version.map_or(0, |v| v.seq) as i64),
            Value::from(CHANGE_LOG as i64),
        ];
        if let Some(host) = also {
            args.push(Value::from(host.as_str()));
        }
        let reply: Vec<Value> = self
            .conn
            .pool
            .eval(
                LUA_CHANGES,
                vec![self.directory_key(), self.version_key()],
                args,
            )
            .await?;
        let mut reply = reply.into_iter();
        let malformed = || StoreError::corrupt("directory changes", "a short reply");
        let epoch = reply
            .next()
            .and_then(|v| v.as_string())
            .ok_or_else(malformed)?;
        let seq = reply
            .next()
            .and_then(|v| v.as_string())
            .and_then(|seq| seq.parse::<u64>().ok())
            .ok_or_else(malformed)?;
        let whole = reply
            .next()
            .and_then(|v| v.as_i64())
            .ok_or_else(malformed)?
            == 1;
        let mut changes = DirectoryChanges {
            version: (whole && !epoch.is_empty()).then_some(DirectoryVersion { epoch, seq }),
            domains: Vec::new(),
        };
        while let (Some(host), Some(json)) = (reply.next(), reply.next()) {
            let Some(host) = host.as_string() else {
                continue;
            };
            let Ok(host) = Hostname::parse(&host) else {
                continue;
            };
            let config = match json.as_string() {
                None => None,
                Some(json) => match serde_json::from_str::<DomainConfig>(&json) {
                    Ok(config) => Some(config),
                    Err(error) => {
                        // As a full read does: a record nobody can read is skipped, and the
                        // reader keeps what it had.
                        tracing::warn!(domain.host = %host, %error, "skipping a malformed domain record");
                        continue;
                    }
                },
            };
            changes.domains.push((host, config));
        }
        Ok(changes)
    }

    /// The published directory, whether it is complete, and its version. Malformed records are
    /// skipped with a warning so that one bad record cannot take every domain down.
    ///
    /// Read a page at a time (`HSCAN`, [`READ_PAGE`] fields a command), not with one `HGETALL`: at
    /// 100,000 domains the hash is some 80 MB, which one command would take over a second to send
    /// (past any request-path timeout, so a gateway could never load it) and would hold Redis for
    /// over 100 ms. A field changed while the read goes on may be seen before or after its change,
    /// as with any read of a directory that changes; one seen twice counts once; the version read
    /// before the first page, handed to [`Directory::changes_since`], gives every such change.
    /// A full publish that replaces the directory during the read makes it incomplete (its pages
    /// come from two hashes) and without a version.
    pub async fn read(&self) -> Result<PublishedDirectory> {
        let before = self.version().await?;
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
        let after = self.version().await?;
        // The same epoch before and after, and no sequence going back (a Redis restored from an
        // older copy): one hash was read throughout.
        let one_hash = match (&before, &after) {
            (None, None) => true,
            (Some(before), Some(after)) => before.epoch == after.epoch && before.seq <= after.seq,
            _ => false,
        };
        directory.complete &= one_hash;
        directory.version = before.filter(|_| one_hash);
        Ok(directory)
    }

    /// Every domain the directory holds, keyed by hostname, whether or not it is complete (see
    /// [`Directory::read`]).
    pub async fn all(&self) -> Result<HashMap<Hostname, DomainConfig>> {
        Ok(self.read().await?.domains)
    }
}

/// Whether Redis Cluster hashes `key` by a tag: a `{` with a `}` after it and something between.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|length| length > 0)
}

/// A new epoch: random, so no two full publishes (nor versions Redis lost and made again) share one.
fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::has_hash_tag;

    #[test]
    fn hash_tags_are_found_as_redis_cluster_finds_them() {
        assert!(!has_hash_tag("kiln:domains"));
        assert!(has_hash_tag("kiln:{x}:domains"));
        // An empty tag is none: the whole name is hashed.
        assert!(!has_hash_tag("kiln:{}:domains"));
        assert!(!has_hash_tag("kiln:{domains"));
        assert!(!has_hash_tag("kiln:}{domains"));
    }
}
