//! Page entries: rendered HTML with the status and headers to serve it with, and the per-domain
//! index through which the dashboard lists and purges them.
//!
//! # The index
//!
//! Each domain has two sorted sets holding one member per live page entry:
//!
//! * `{prefix}{d:<domain>}:pages:by-path`, every score 0, so members sort byte-wise: a path prefix
//!   is a contiguous range (`ZRANGEBYLEX`), which makes listing and purging by prefix cheap.
//! * `{prefix}{d:<domain>}:pages:by-expiry`, the same members scored by when their entry expires.
//!
//! A member is `{path and query}\0{device}:{urlhash}`: ordered by path first, and it names its
//! page key (`{prefix}{d:<domain>}:page:{device}:{urlhash}`) without a look-up. Normalised paths
//! never contain a NUL byte, and `\0` sorts before every character, so `/a` comes before `/a/b`.
//! Each page hash also keeps its own member in a field (`index`), so a purge by key can find it.
//!
//! Writes and index changes happen together in Lua scripts, so a reader never sees a page without
//! its index entry or the reverse (Redis runs a script atomically). The scripts derive page keys
//! from index members; on a Redis Cluster that works because every key of a domain (its pages,
//! index and failure markers) carries the hash tag `{d:<domain>}` and so lives in one hash slot,
//! on one node, with the keys the script names.
//!
//! Expiry: a page hash expires by itself (`PEXPIREAT`, at the `expires_at` its meta records); its
//! index entries are removed by whichever script next looks at the domain's index (every write and
//! every listing trims up to [`TRIM_BATCH`] expired members, judged by Redis's own clock, the same
//! clock that expires the hash), and a listing also drops members whose hash is gone for another
//! reason (eviction, a `DEL` by hand). The index keys themselves expire with the domain's
//! last-expiring page, so a domain that stops being rendered leaves nothing behind. Entries whose
//! index members are missing (the index was evicted, say) are not listed; [`Pages::purge_domain`]
//! still finds them by `SCAN` of the node that holds the domain's slot.

use crate::{Result, StoreError, StoreEvent};
use bytes::Bytes;
use fred::prelude::*;
use fred::types::ClusterHash;
use fred::types::config::Options;
use fred::util::redis_keyslot;
use kiln_core::{CacheKey, DeviceClass, NormalizedUrl, UnixMillis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One cached render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageEntry {
    pub html: Bytes,
    pub meta: PageMeta,
}

/// Everything about a render except its body, stored as one JSON field beside the HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    pub status: u16,
    /// Response headers the page asked for that are safe to serve (already filtered by the worker).
    pub headers: Vec<(String, String)>,
    pub url: String,
    pub rendered_at: UnixMillis,
    pub render_ms: u64,
    /// When the entry expires: the end of its stale window. Set by [`Pages::put`] (whatever
    /// the caller put here is replaced); 0 in entries stored before this field existed.
    #[serde(default)]
    pub expires_at: UnixMillis,
    /// Until when the entry is fresh; after that, until `expires_at`, it is stale: served while a
    /// new render replaces it. Set by [`Pages::put`]; 0 in entries stored before this field
    /// existed, which are fresh until they expire.
    #[serde(default)]
    pub fresh_until: UnixMillis,
    /// How `html` is stored (set by [`Pages::put`]; identity in older entries).
    #[serde(default)]
    pub encoding: ContentEncoding,
    /// The length of the HTML as rendered, before compression (0 in older entries, whose `html`
    /// is that HTML).
    #[serde(default)]
    pub length: u64,
    /// A validator of the rendered HTML for `ETag` (set by [`Pages::put`]; empty in older
    /// entries).
    #[serde(default)]
    pub etag: String,
}

/// How a page's HTML is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    #[default]
    Identity,
    Gzip,
}

/// Pages smaller than this are stored as they are: compressing them saves next to nothing.
const COMPRESS_FROM: usize = 1024;
/// Pages at least this large are compressed on the blocking pool (a smaller one takes less time to
/// compress than to hand over).
const COMPRESS_OFF_THREAD_FROM: usize = 64 * 1024;

impl PageEntry {
    /// The HTML as rendered, decompressing it if it is stored compressed.
    pub fn decoded(&self) -> Result<Bytes> {
        match self.meta.encoding {
            ContentEncoding::Identity => Ok(self.html.clone()),
            ContentEncoding::Gzip => {
                use std::io::Read;
                let mut out = Vec::with_capacity(self.meta.length as usize);
                flate2::read::GzDecoder::new(&self.html[..])
                    .read_to_end(&mut out)
                    .map_err(|e| StoreError::corrupt(format!("page {}", self.meta.url), e))?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// The length of the HTML as rendered.
    pub fn length(&self) -> u64 {
        match self.meta.encoding {
            ContentEncoding::Identity => self.html.len() as u64,
            ContentEncoding::Gzip => self.meta.length,
        }
    }

    /// The entry's `ETag` value (quoted, weak: the gzip and identity forms share it).
    pub fn etag(&self) -> String {
        if self.meta.etag.is_empty() {
            format!("W/\"{}\"", validator(&self.html))
        } else {
            format!("W/\"{}\"", self.meta.etag)
        }
    }

    /// The entry as stored: gzip-compressed when that is worth it, with its length and validator.
    fn for_storage(&self) -> Result<(Bytes, PageMeta)> {
        let mut meta = self.meta.clone();
        if meta.encoding != ContentEncoding::Identity {
            // Stored compressed already (copied from another entry).
            return Ok((self.html.clone(), meta));
        }
        meta.length = self.html.len() as u64;
        meta.etag = validator(&self.html);
        if self.html.len() < COMPRESS_FROM {
            return Ok((self.html.clone(), meta));
        }
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(self.html.len() / 4),
            flate2::Compression::default(),
        );
        encoder
            .write_all(&self.html)
            .and_then(|()| encoder.finish())
            .map(|gz| {
                meta.encoding = ContentEncoding::Gzip;
                (Bytes::from(gz), meta)
            })
            .map_err(StoreError::Compress)
    }
}

/// 64 bits of the SHA-256 of `html`, in hex: changes whenever the page does.
fn validator(html: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(html)[..8])
}

impl PageMeta {
    /// Whether the entry is still fresh at `now`.
    pub fn is_fresh(&self, now: UnixMillis) -> bool {
        self.fresh_until == 0 || now < self.fresh_until
    }
}

/// One page of [`Pages::list`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageListing {
    pub pages: Vec<PageSummary>,
    /// Pass this to the next call to continue after the last page listed; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A cached page as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSummary {
    /// The full normalised URL, e.g. `https://shop.example.com/blog/a?x=1`.
    pub url: String,
    pub device: DeviceClass,
    pub status: u16,
    /// Length of the stored HTML.
    pub bytes: u64,
    pub rendered_at: UnixMillis,
    /// Until when it is fresh (see [`PageMeta::fresh_until`]; `expires_at` for older entries).
    pub fresh_until: UnixMillis,
    pub expires_at: UnixMillis,
}

impl PageSummary {
    /// The page's cache key in `domain_id`, e.g. to purge it with [`Pages::purge`].
    pub fn key(&self, domain_id: &str) -> CacheKey {
        CacheKey::new(
            domain_id,
            self.device,
            &NormalizedUrl::from_stored(self.url.clone()),
        )
    }
}

/// The most pages one [`Pages::list`] call returns, whatever the caller asks for.
pub const MAX_LIST_LIMIT: usize = 1000;
/// How many expired index members one script removes at most (the rest go on the next call).
const TRIM_BATCH: usize = 1000;
/// How many index members one listing call looks at at most, live or stale: it bounds the time the
/// script holds Redis when many entries vanished without their index entries.
const LIST_BUDGET: usize = 2 * MAX_LIST_LIMIT;
/// How many entries one purge command deletes: thousands of pages go in many short commands, never
/// one long one.
const PURGE_BATCH: usize = 500;
/// `SCAN … COUNT` for the sweep of un-indexed entries.
const SCAN_COUNT: u32 = 1000;

/// Separates the path from `{device}:{urlhash}` in an index member.
const SEP: u8 = 0;

/// Shared by the scripts: removes index members whose entries expired (by Redis's clock, which also
/// expires the hashes: a key is gone once its time is strictly in the past).
const LUA_TRIM: &str = r#"
local function trim(by_path, by_expiry)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local gone = redis.call('ZRANGEBYSCORE', by_expiry, '-inf', '(' .. now, 'LIMIT', 0, TRIM_BATCH)
  if #gone > 0 then
    redis.call('ZREM', by_expiry, unpack(gone))
    redis.call('ZREM', by_path, unpack(gone))
  end
end
"#;

/// KEYS: page, by-path, by-expiry, failure marker. ARGV: meta, html, expires_at, member.
const LUA_PUT: &str = r#"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'html', ARGV[2], 'index', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('DEL', KEYS[4])
trim(KEYS[2], KEYS[3])
-- The index lives as long as the domain's last-expiring page.
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[2], last[2])
  redis.call('PEXPIREAT', KEYS[3], last[2])
end
return 1
"#;

/// KEYS: by-path, by-expiry. ARGV: min, max (ZRANGEBYLEX bounds), limit, budget, page key prefix.
/// Returns `{cursor or '', member, meta, html length, expires_at, …}`.
const LUA_LIST: &str = r#"
trim(KEYS[1], KEYS[2])
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {''}
local found, examined, last = 0, 0, nil
local min = ARGV[1]
local exhausted = false
while found < limit and examined < budget do
  local want = math.min(100, budget - examined)
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, want)
  for _, member in ipairs(batch) do
    examined = examined + 1
    last = member
    local suffix = string.match(member, '%z([^%z]*)$')
    local meta = false
    if suffix then
      meta = redis.call('HGET', ARGV[5] .. suffix, 'meta')
    end
    if meta then
      local page = ARGV[5] .. suffix
      local expires = redis.call('ZSCORE', KEYS[2], member)
      table.insert(out, member)
      table.insert(out, meta)
      table.insert(out, redis.call('HSTRLEN', page, 'html'))
      table.insert(out, tonumber(expires or 0))
      found = found + 1
      if found >= limit then break end
    else
      -- The entry is gone (evicted, deleted by hand) or the member is malformed: unlist it.
      redis.call('ZREM', KEYS[1], member)
      redis.call('ZREM', KEYS[2], member)
    end
  end
  if found >= limit then break end
  if #batch < want then
    exhausted = true
    break
  end
  min = '(' .. last
end
if last and not exhausted then
  local more = redis.call('ZRANGEBYLEX', KEYS[1], '(' .. last, ARGV[2], 'LIMIT', 0, 1)
  if #more > 0 then out[1] = last end
end
return out
"#;

/// KEYS: by-path, by-expiry. ARGV: min, max, batch, page key prefix.
/// Returns `{members removed from the index, entries deleted}`.
const LUA_PURGE_RANGE: &str = r#"
local batch = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for _, member in ipairs(batch) do
  local suffix = string.match(member, '%z([^%z]*)$')
  if suffix then
    deleted = deleted + redis.call('DEL', ARGV[4] .. suffix)
  end
end
if #batch > 0 then
  redis.call('ZREM', KEYS[1], unpack(batch))
  redis.call('ZREM', KEYS[2], unpack(batch))
end
return {#batch, deleted}
"#;

/// KEYS: by-path, by-expiry, page keys… Returns the number of entries deleted.
const LUA_PURGE_KEYS: &str = r#"
local deleted, members = 0, {}
for i = 3, #KEYS do
  local member = redis.call('HGET', KEYS[i], 'index')
  if member then table.insert(members, member) end
  deleted = deleted + redis.call('DEL', KEYS[i])
end
if #members > 0 then
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('ZREM', KEYS[2], unpack(members))
end
return deleted
"#;

fn script(body: &str) -> String {
    format!(
        "{}\n{body}",
        LUA_TRIM.replace("TRIM_BATCH", &TRIM_BATCH.to_string())
    )
}

crate::view! {
    /// The page cache: rendered pages with their listing index, the failure markers that keep a
    /// failing page from being rendered again at once, the render claims on pages (their locks,
    /// and the places in tenants' render budgets) and the announcements of finished renders and
    /// purges. The gateway, the worker and the control plane each hold one.
    Pages
}

impl Pages {
    /// Tells every gateway that pages of `domain_id` were purged (all of them, when `page_keys` is
    /// empty). An error fails the purge (which may be repeated): the pages are gone from Redis,
    /// but gateways may still serve them from memory (for at most their in-memory lifetime), so
    /// the purge must not be reported done.
    async fn announce_purge(&self, domain_id: &str, page_keys: Vec<String>) -> Result<()> {
        self.conn
            .publish(&StoreEvent::Purged {
                domain_id: domain_id.to_owned(),
                page_keys,
            })
            .await
    }

    fn page_key(&self, key: &CacheKey) -> String {
        self.conn.page_scoped_key("page", key)
    }

    /// `{prefix}{d:<domain>}:page:`: a page key without its `{device}:{urlhash}`.
    fn page_key_prefix(&self, domain_id: &str) -> String {
        self.conn.domain_key(domain_id, "page:")
    }

    fn index_keys(&self, domain_id: &str) -> (String, String) {
        (
            self.conn.domain_key(domain_id, "pages:by-path"),
            self.conn.domain_key(domain_id, "pages:by-expiry"),
        )
    }

    /// Reads the page entry for `key`, if one is cached.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<PageEntry>> {
        let mut fields: HashMap<String, Bytes> = self.conn.pool.hgetall(self.page_key(key)).await?;
        let (Some(meta), Some(html)) = (fields.remove("meta"), fields.remove("html")) else {
            return Ok(None);
        };
        let meta = serde_json::from_slice(&meta)
            .map_err(|e| StoreError::corrupt(format!("page {}", key.page_key()), e))?;
        Ok(Some(PageEntry { html, meta }))
    }

    /// Reads only the meta of the page entry for `key` (not its HTML), if one is cached.
    pub async fn meta(&self, key: &CacheKey) -> Result<Option<PageMeta>> {
        let meta: Option<Bytes> = self.conn.pool.hget(self.page_key(key), "meta").await?;
        meta.map(|meta| {
            serde_json::from_slice(&meta)
                .map_err(|e| StoreError::corrupt(format!("page {}", key.page_key()), e))
        })
        .transpose()
    }

    /// Stores a page entry, fresh for `fresh_secs` and then stale for `stale_secs` more, replacing
    /// any previous one, updating the domain's index and clearing a recorded failure of the page,
    /// atomically. `entry.meta.fresh_until` and `expires_at` are set here.
    pub async fn put(
        &self,
        key: &CacheKey,
        entry: &PageEntry,
        fresh_secs: u64,
        stale_secs: u64,
    ) -> Result<()> {
        let fresh_until =
            kiln_core::unix_millis_now().saturating_add(fresh_secs.max(1).saturating_mul(1000));
        let expires_at = fresh_until.saturating_add(stale_secs.saturating_mul(1000));
        let (html, meta) = if entry.html.len() < COMPRESS_OFF_THREAD_FROM {
            entry.for_storage()?
        } else {
            // Compressing a large page is CPU work: off the runtime's threads.
            let entry = entry.clone();
            tokio::task::spawn_blocking(move || entry.for_storage())
                .await
                .map_err(StoreError::CompressTask)??
        };
        let meta = PageMeta {
            fresh_until,
            expires_at,
            ..meta
        };
        let path = NormalizedUrl::from_stored(meta.url.clone());
        let member = index_member(path.path_and_query(), key);
        let meta = serde_json::to_vec(&meta).map_err(StoreError::encode("page meta"))?;
        let (by_path, by_expiry) = self.index_keys(&key.domain_id);
        let args: Vec<Value> = vec![
            Bytes::from(meta).into(),
            html.into(),
            (expires_at as i64).into(),
            Bytes::from(member).into(),
        ];
        let _: i64 = self
            .conn
            .pool
            .eval(
                script(LUA_PUT),
                vec![
                    self.page_key(key),
                    by_path,
                    by_expiry,
                    self.failure_key(key),
                ],
                args,
            )
            .await?;
        Ok(())
    }

    /// Lists the domain's cached pages whose path (with query) starts with `path_prefix` (`""` or
    /// `"/"`: all of them), ordered by path, then device. At most `limit` pages per call (clamped
    /// to 1..=[`MAX_LIST_LIMIT`]); pass the returned cursor to continue. A call may return fewer
    /// than `limit` pages and still a cursor (when it skipped many stale index entries), or an
    /// empty last page after a cursor (when the entries after it expired meanwhile).
    pub async fn list(
        &self,
        domain_id: &str,
        path_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<PageListing> {
        let (mut min, max) = lex_range(path_prefix);
        if let Some(cursor) = cursor {
            let after = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
            // A cursor before the prefix's range (one from another listing) starts at the range.
            if min == b"-" || after.as_slice() >= &min[1..] {
                min = [b"(".as_slice(), &after].concat();
            }
        }
        let (by_path, by_expiry) = self.index_keys(domain_id);
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        let args: Vec<Value> = vec![
            Bytes::from(min).into(),
            Bytes::from(max).into(),
            (limit as i64).into(),
            (LIST_BUDGET as i64).into(),
            self.page_key_prefix(domain_id).into(),
        ];
        let reply: Vec<Value> = self
            .conn
            .pool
            .eval(script(LUA_LIST), vec![by_path, by_expiry], args)
            .await?;
        parse_listing(reply)
    }

    /// How many live entries the domain has cached (every device variant counts), judged by
    /// their expiry times against `now` (milliseconds since the epoch). Entries gone for other
    /// reasons (eviction) are counted until a listing or write trims them.
    pub async fn count(&self, domain_id: &str, now: UnixMillis) -> Result<u64> {
        let (_, by_expiry) = self.index_keys(domain_id);
        let count: u64 = self
            .conn
            .pool
            .zcount(by_expiry, now as f64 + 1.0, f64::INFINITY)
            .await?;
        Ok(count)
    }

    /// Deletes the entries for `keys` (of any domains) and their index entries, in batches.
    /// Returns how many entries existed and were deleted.
    pub async fn purge(&self, keys: &[CacheKey]) -> Result<u64> {
        let mut by_domain: BTreeMap<&str, Vec<&CacheKey>> = BTreeMap::new();
        for key in keys {
            by_domain.entry(&key.domain_id).or_default().push(key);
        }
        let mut deleted = 0;
        for (domain_id, keys) in by_domain {
            let (by_path, by_expiry) = self.index_keys(domain_id);
            for batch in keys.chunks(PURGE_BATCH) {
                let mut script_keys = Vec::with_capacity(batch.len() + 2);
                script_keys.push(by_path.clone());
                script_keys.push(by_expiry.clone());
                script_keys.extend(batch.iter().map(|key| self.page_key(key)));
                let n: u64 = self
                    .conn
                    .pool
                    .eval(LUA_PURGE_KEYS, script_keys, None::<Value>)
                    .await?;
                deleted += n;
                // A purged page gets a fresh render at once, even if its last one failed.
                let markers: Vec<String> = batch.iter().map(|key| self.failure_key(key)).collect();
                let _: i64 = self.conn.pool.del(markers).await?;
                let page_keys = batch.iter().map(|key| key.page_key()).collect();
                self.announce_purge(domain_id, page_keys).await?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the domain's indexed entries whose path starts with `path_prefix` (`""` or `"/"`: all
    /// of them), in batches. Returns how many entries existed and were deleted.
    pub async fn purge_prefix(&self, domain_id: &str, path_prefix: &str) -> Result<u64> {
        let (min, max) = lex_range(path_prefix);
        let (by_path, by_expiry) = self.index_keys(domain_id);
        let page_prefix = self.page_key_prefix(domain_id);
        let mut deleted = 0;
        loop {
            let args: Vec<Value> = vec![
                Bytes::from(min.clone()).into(),
                Bytes::from(max.clone()).into(),
                (PURGE_BATCH as i64).into(),
                page_prefix.as_str().into(),
            ];
            let (examined, n): (u64, u64) = self
                .conn
                .pool
                .eval(
                    LUA_PURGE_RANGE,
                    vec![by_path.clone(), by_expiry.clone()],
                    args,
                )
                .await?;
            deleted += n;
            if examined == 0 {
                self.announce_purge(domain_id, Vec::new()).await?;
                return Ok(deleted);
            }
        }
    }

    /// Deletes every entry of the domain and its index, including entries that lost their index
    /// members (found with `SCAN`, so this is for rare operations such as removing a domain).
    /// Returns how many entries existed and were deleted.
    pub async fn purge_domain(&self, domain_id: &str) -> Result<u64> {
        let mut deleted = self.purge_prefix(domain_id, "").await?;
        let (by_path, by_expiry) = self.index_keys(domain_id);
        let _: u64 = self
            .conn
            .pool
            .del(vec![by_path.as_str(), by_expiry.as_str()])
            .await?;

        let page_prefix = self.page_key_prefix(domain_id);
        let pattern = format!("{}*", glob_escape(&page_prefix));
        // Every key of the domain lies in one hash slot, so on a Redis Cluster only the node
        // serving that slot can hold them: the scan goes there (a single Redis ignores the slot).
        // The slot is the index key's, not one fred would read out of the escaped pattern.
        let options = Options {
            cluster_hash: Some(ClusterHash::Custom(redis_keyslot(by_path.as_bytes()))),
            ..Options::default()
        };
        // One client for the whole scan: a cursor belongs to the server, but keep it simple.
        let client = self.conn.pool.next();
        let client = client.with_options(&options);
        let mut cursor = "0".to_owned();
        loop {
            let (next, keys): (String, Vec<String>) = client
                .scan_page(cursor, pattern.as_str(), Some(SCAN_COUNT), None)
                .await?;
            // The pattern also matches the keys of a domain whose id starts with `<domain>}:page:`
            // (which even share the slot); only `{device}:{urlhash}` may follow.
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|key| {
                    key.strip_prefix(&page_prefix)
                        .is_some_and(is_device_and_hash)
                })
                .collect();
            for batch in keys.chunks(PURGE_BATCH) {
                let n: u64 = client.del(batch.to_vec()).await?;
                deleted += n;
            }
            if next == "0" {
                self.announce_purge(domain_id, Vec::new()).await?;
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `{path}\0{device}:{urlhash}`.
fn index_member(path: &str, key: &CacheKey) -> Vec<u8> {
    let mut member = Vec::with_capacity(path.len() + 48);
    member.extend_from_slice(path.as_bytes());
    member.push(SEP);
    member.extend_from_slice(format!("{}:{}", key.device, key.url_hash).as_bytes());
    member
}

/// `ZRANGEBYLEX` bounds for members whose path starts with `prefix`.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    // Every path starts with `/`, so `/` selects everything, as the empty prefix does.
    if prefix.is_empty() || prefix == "/" {
        return (b"-".to_vec(), b"+".to_vec());
    }
    // No UTF-8 string contains the byte 0xFF, so `prefix` + 0xFF is above every member that starts
    // with `prefix` and below every other member above it.
    let min = [b"[".as_slice(), prefix.as_bytes()].concat();
    let max = [b"(".as_slice(), prefix.as_bytes(), &[0xFF]].concat();
    (min, max)
}

fn parse_listing(reply: Vec<Value>) -> Result<PageListing> {
    let corrupt = |what: &str| StoreError::corrupt("page listing", what);
    let mut values = reply.into_iter();
    let cursor = values
        .next()
        .and_then(|v| v.into_bytes())
        .ok_or_else(|| corrupt("no cursor"))?;
    let next_cursor = (!cursor.is_empty()).then(|| hex::encode(&cursor));
    let mut pages = Vec::new();
    while let Some(member) = values.next() {
        let (Some(meta), Some(bytes), Some(expires_at)) =
            (values.next(), values.next(), values.next())
        else {
            return Err(corrupt("a truncated entry"));
        };
        let member = member.into_bytes().ok_or_else(|| corrupt("a member"))?;
        let device = member
            .iter()
            .rposition(|b| *b == SEP)
            .and_then(|at| std::str::from_utf8(&member[at + 1..]).ok())
            .and_then(|suffix| suffix.split(':').next())
            .and_then(parse_device)
            .ok_or_else(|| corrupt("a member without a device"))?;
        let meta = meta.into_bytes().ok_or_else(|| corrupt("a meta field"))?;
        let meta: PageMeta =
            serde_json::from_slice(&meta).map_err(|e| StoreError::corrupt("page listing", e))?;
        let bytes = bytes.as_u64().ok_or_else(|| corrupt("a length"))?;
        let expires_at = expires_at
            .as_u64()
            .filter(|at| *at > 0)
            .unwrap_or(meta.expires_at);
        // The rendered length, not the compressed one.
        let bytes = if meta.length > 0 { meta.length } else { bytes };
        pages.push(PageSummary {
            url: meta.url,
            device,
            status: meta.status,
            bytes,
            rendered_at: meta.rendered_at,
            fresh_until: if meta.fresh_until == 0 {
                expires_at
            } else {
                meta.fresh_until
            },
            expires_at,
        });
    }
    Ok(PageListing { pages, next_cursor })
}

fn parse_device(name: &str) -> Option<DeviceClass> {
    [DeviceClass::Desktop, DeviceClass::Mobile]
        .into_iter()
        .find(|device| device.as_str() == name)
}

/// Whether `rest` is `{device}:{urlhash}`, the end of a page key.
fn is_device_and_hash(rest: &str) -> bool {
    rest.split_once(':').is_some_and(|(device, hash)| {
        parse_device(device).is_some()
            && !hash.is_empty()
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Escapes the characters `SCAN MATCH` treats as glob syntax.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        let check = |prefix: &str, min: &[u8], max: &[u8]| {
            assert_eq!(
                lex_range(prefix),
                (min.to_vec(), max.to_vec()),
                "{prefix:?}"
            );
        };
        check("", b"-", b"+");
        check("/", b"-", b"+");
        check("/blog", b"[/blog", b"(/blog\xFF");
        check("/a?x=1", b"[/a?x=1", b"(/a?x=1\xFF");
    }

    #[test]
    fn members_sort_by_path_first() {
        let url = NormalizedUrl::from_stored("https://a.test/a".into());
        let key = CacheKey::new("d", DeviceClass::Mobile, &url);
        let member = |path: &str| index_member(path, &key);
        let mut members = vec![
            member("/a/b"),
            member("/a?x=1"),
            member("/a"),
            member("/ab"),
        ];
        members.sort();
        assert_eq!(
            members,
            vec![
                member("/a"),
                member("/a/b"),
                member("/a?x=1"),
                member("/ab")
            ]
        );
        let expected = format!("/a\0mobile:{}", key.url_hash);
        assert_eq!(member("/a"), expected.as_bytes());
    }

    #[test]
    fn page_key_endings() {
        let check =
            |rest: &str, expected: bool| assert_eq!(is_device_and_hash(rest), expected, "{rest}");
        check("desktop:0123abcd", true);
        check("mobile:ffff", true);
        check("tablet:ffff", false);
        check("desktop:", false);
        check("x:desktop:ffff", false);
        check("desktop:ff:ff", false);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("kiln:{d:d1}:page:"), "kiln:{d:d1}:page:");
        assert_eq!(glob_escape("a*b?c[d]e\\"), "a\\*b\\?c\\[d\\]e\\\\");
    }
}
