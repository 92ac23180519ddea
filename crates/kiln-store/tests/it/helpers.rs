//! A store on a private redis-server, with a raw client beside it to look at the keys it writes.

use fred::prelude::*;
use kiln_store::{Store, StoreSettings};
use kiln_testkit::RedisServer;

pub struct TestStore {
    pub store: Store,
    /// A plain client, for checking the key layout the store promises.
    pub raw: Client,
    pub prefix: String,
    _redis: RedisServer,
}

pub async fn start() -> TestStore {
    let redis = RedisServer::start();
    let prefix = kiln_testkit::unique_prefix();
    let store = Store::connect(StoreSettings::new(redis.url(), &prefix))
        .await
        .unwrap();
    let raw = Builder::from_config(Config::from_url(&redis.url()).unwrap())
        .build()
        .unwrap();
    raw.init().await.unwrap();
    TestStore {
        store,
        raw,
        prefix,
        _redis: redis,
    }
}
