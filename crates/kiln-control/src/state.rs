//! The handles every dashboard operation works with: Postgres, Redis, and the origin and hostname
//! policies.

use crate::Settings;
use crate::db::Db;
use crate::hostnames::HostnamePolicy;
use anyhow::Context;
use kiln_core::{EgressPolicy, Hostname};
use kiln_store::{RenderBudget, Store, StoreSettings};
use secrecy::ExposeSecret;

/// Connections and policy shared by the command line and the HTTP service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    pub db: Db,
    pub store: Store,
    /// Where a tenant's origin may be: the public internet, what `KILN_ALLOWED_PRIVATE_NETS`
    /// grants the tenant, and never one of Kiln's own services.
    pub allowed_nets: EgressPolicy,
    /// Which hostnames may be registered: not the platform's own, nor single labels or public
    /// suffixes.
    pub hostnames: HostnamePolicy,
    /// How many renders a tenant may have under way, and start a minute (the gateways' budget,
    /// which parity checks count against).
    pub render_budget: RenderBudget,
    /// Where customers' own servers reach the render service (`KILN_SERVICE_HOST`), for the
    /// front ends to tell them.
    pub service_host: Option<Hostname>,
}

impl App {
    /// Connects to Postgres and Redis.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let db = connect_db(settings).await?;
        let store = connect_store(settings).await?;
        Ok(App {
            db,
            store,
            allowed_nets: origin_policy(settings).await?,
            hostnames: HostnamePolicy::from_settings(settings),
            render_budget: settings.render_budget,
            service_host: settings.service_host.clone(),
        })
    }
}

/// `KILN_ALLOWED_PRIVATE_NETS` with Kiln's own endpoints as the dashboard knows them: its
/// listeners, Redis, Postgres and `KILN_PLATFORM_ADDRS`.
pub async fn origin_policy(settings: &Settings) -> anyhow::Result<EgressPolicy> {
    let listeners: Vec<std::net::SocketAddr> = std::iter::once(settings.listen)
        .chain(settings.admin_listen)
        .collect();
    let platform = kiln_runtime::platform::platform_endpoints(
        &listeners,
        &[
            settings.redis_url.expose_secret(),
            settings.queue_redis_url.expose_secret(),
            settings.database_url.expose_secret(),
        ],
        &settings.platform_addrs,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(settings
        .allowed_private_nets
        .clone()
        .with_platform(platform))
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
