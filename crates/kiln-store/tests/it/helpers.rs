//! A store on a private redis-server (or a private Redis Cluster), with a raw client beside it to
//! look at the keys it writes.

use fred::prelude::*;
use kiln_core::{CacheKey, DeviceClass, NormalizedUrl};
use kiln_store::{Store, StoreEvent, StoreSettings, Subscription};
use kiln_testkit::{TestRedis, TestRedisCluster};
use std::time::Duration;

pub struct TestStore {
    pub store: Store,
    /// A plain client, for checking the key layout the store promises.
    pub raw: Client,
    pub prefix: String,
    _redis: TestRedis,
}

impl TestStore {
    pub async fn start() -> TestStore {
        let redis = TestRedis::start();
        let prefix = kiln_testkit::unique_prefix();
        let store = Store::connect(StoreSettings::new(redis.url(), &prefix))
            .await
            .unwrap();
        let raw = raw_client(&redis.url()).await;
        TestStore {
            store,
            raw,
            prefix,
            _redis: redis,
        }
    }
}

/// A store on a three-node Redis Cluster.
pub struct TestClusterStore {
    pub store: Store,
    /// A clustered client, for checking where the store's keys landed.
    pub raw: Client,
    pub prefix: String,
    pub cluster: TestRedisCluster,
}

impl TestClusterStore {
    pub async fn start() -> TestClusterStore {
        let cluster = tokio::task::spawn_blocking(TestRedisCluster::start)
            .await
            .unwrap();
        let prefix = kiln_testkit::unique_prefix();
        let store = Store::connect(StoreSettings::new(cluster.url(), &prefix))
            .await
            .unwrap();
        let raw = raw_client(&cluster.url()).await;
        TestClusterStore {
            store,
            raw,
            prefix,
            cluster,
        }
    }
}

/// A client with fred's defaults for `url` (one server or a cluster, by the scheme).
pub async fn raw_client(url: &str) -> Client {
    let raw = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    raw.init().await.unwrap();
    raw
}

/// The Redis key of `name` among `domain`'s keys: `{prefix}{d:<domain>}:{name}`, the layout the
/// store promises.
/// Every key matching `pattern` on the node `client` talks to (`SCAN` sees one node only), sorted.
pub async fn scan_keys(client: &Client, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let (next, page): (String, Vec<String>) = client
            .scan_page(cursor, pattern, Some(1000), None)
            .await
            .unwrap();
        keys.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}

pub fn domain_key(prefix: &str, domain: &str, name: &str) -> String {
    format!("{prefix}{{d:{domain}}}:{name}")
}

/// The Redis key of the `kind` (`page`, `failed`, `lock`) of the page `key`.
pub fn page_scoped_key(prefix: &str, kind: &str, key: &kiln_core::CacheKey) -> String {
    domain_key(
        prefix,
        &key.domain_id,
        &format!("{kind}:{}:{}", key.device, key.url_hash),
    )
}

/// The page at `path` on the tests' public host.
pub fn url(path: &str) -> NormalizedUrl {
    NormalizedUrl::from_stored(format!("https://shop.test{path}"))
}

/// The cache key of `path` for `device` in the domain `domain`.
pub fn key(domain: &str, path: &str, device: DeviceClass) -> CacheKey {
    CacheKey::new(domain, device, &url(path))
}

/// The next event the subscription delivers, past reports of its own connection; 5 s at most.
pub async fn next_event(events: &mut Subscription) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await.expect("the subscription closed") {
                StoreEvent::Resync | StoreEvent::Interrupted => continue,
                event => return event,
            }
        }
    })
    .await
    .expect("no event within 5 s")
}
