//! The handles every dashboard operation works with: Postgres, Redis and the origin policy.

use crate::Settings;
use crate::db::Db;
use anyhow::Context;
use kiln_core::AllowedNets;
use kiln_store::{Store, StoreSettings};
use secrecy::ExposeSecret;

/// Connections and policy shared by the command line and the HTTP service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    pub db: Db,
    pub store: Store,
    /// Networks an origin may resolve to besides the public internet.
    pub allowed_nets: AllowedNets,
}

impl App {
    /// Connects to Postgres and Redis.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let db = connect_db(settings).await?;
        let store = connect_store(settings).await?;
        Ok(App {
            db,
            store,
            allowed_nets: settings.allowed_private_nets.clone(),
        })
    }
}

/// Connects to Postgres only, for commands that do not touch Redis.
pub async fn connect_db(settings: &Settings) -> anyhow::Result<Db> {
    Db::connect(&settings.database_url)
        .await
        .context("failed to connect to Postgres (KILN_DATABASE_URL)")
}

async fn connect_store(settings: &Settings) -> anyhow::Result<Store> {
    let store_settings = StoreSettings::new(
        settings.redis_url.expose_secret(),
        settings.redis_prefix.clone(),
    );
    Store::connect(store_settings)
        .await
        .context("failed to connect to Redis (KILN_REDIS_URL)")
}
