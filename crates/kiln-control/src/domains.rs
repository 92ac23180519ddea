//! Registering, listing, changing, verifying, removing and publishing domains: the logic the REST
//! API, the web dashboard and the operator's command line share.
//!
//! Postgres is written first and is the truth; Redis is updated after the commit. If Redis fails in
//! between, the change is kept in Postgres and the error says so: the directory's `publish_all`
//! (the `publish` command, every start of `serve`, and each dashboard by itself when Redis lost the
//! directory) brings Redis back in line.

use crate::App;
use crate::db::{DOMAINS_HOSTNAME_KEY, Db, DbError, DomainRecord, NewDomain};
use crate::hostnames::HostnameRefused;
use crate::origin::{Origin, OriginError};
use crate::service_tokens::ServiceTokenError;
use kiln_core::{DomainConfig, DomainSettings, Hostname};
use kiln_store::StoreError;
use uuid::Uuid;

/// The audit actor for changes made from the command line, which only an operator can run.
pub const CLI_ACTOR: &str = "operator:cli";

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0} is already registered")]
    Conflict(Hostname),
    #[error(
        "{host} is already registered with a different origin or settings (origin {origin}); \
         remove it first to change it"
    )]
    ConflictDiffers { host: Hostname, origin: String },
    #[error("{0} is not registered")]
    NotRegistered(Hostname),
    #[error("no such domain")]
    NotFound,
    #[error(transparent)]
    Hostname(#[from] HostnameRefused),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "the change to {host} is saved in Postgres, but updating Redis failed; \
         run `kiln-dashboard publish` once Redis answers"
    )]
    Publish {
        host: Hostname,
        #[source]
        source: StoreError,
    },
    #[error("reading or writing the Redis domain directory failed")]
    Store(#[source] StoreError),
    #[error("publishing the render service's tokens failed")]
    ServiceTokens(#[from] ServiceTokenError),
    #[error("an origin is required (only a domain used through the render service has none)")]
    OriginRequired,
    #[error(
        "{host} is used only through the render service, so its origin is its public site, \
         {expected}; leave the origin out"
    )]
    ServiceOnlyOrigin { host: Hostname, expected: String },
}

/// A request to register a domain.
#[derive(Clone, Debug)]
pub struct AddDomain {
    pub tenant_id: Uuid,
    pub host: Hostname,
    pub origin: Origin,
    pub settings: DomainSettings,
    /// Whether ownership is established from the start.
    pub verified: bool,
    /// Whether the domain is used only through the render service; its origin must then be
    /// [`service_origin`] (see [`origin_for`]).
    pub service_only: bool,
    /// Succeed (and republish) if the same tenant already registered this host with the same origin
    /// and settings.
    pub if_not_exists: bool,
}

impl AddDomain {
    /// A domain an operator registers: it belongs to the operator tenant and is verified, since the
    /// operator vouches for it.
    pub fn by_operator(host: Hostname, origin: Origin, settings: DomainSettings) -> Self {
        AddDomain {
            tenant_id: crate::OPERATOR_TENANT_ID,
            host,
            origin,
            settings,
            verified: true,
            service_only: false,
            if_not_exists: false,
        }
    }
}

/// The origin of a domain used only through the render service: its public site,
/// `https://<host>`. Kiln renders the very URLs the customer's server asks for, so it fetches them
/// from there; the origin checks apply to it as to any other (a name that resolves to a private
/// address is refused unless the operator granted it).
pub fn service_origin(host: &Hostname) -> Result<Origin, OriginError> {
    Origin::parse(&format!("https://{host}"))
}

/// The origin a domain is registered with: the one given; for a domain used only through the
/// render service, [`service_origin`], which an origin given anyway must equal.
pub fn origin_for(
    host: &Hostname,
    origin: Option<Origin>,
    service_only: bool,
) -> Result<Origin, DomainError> {
    if !service_only {
        return origin.ok_or(DomainError::OriginRequired);
    }
    let expected = service_origin(host)?;
    match origin {
        Some(origin) if origin.as_str() != expected.as_str() => {
            Err(DomainError::ServiceOnlyOrigin {
                host: host.clone(),
                expected: expected.as_str().to_owned(),
            })
        }
        _ => Ok(expected),
    }
}

/// What [`add_domain`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    Created(DomainRecord),
    /// `if_not_exists` was set and an identical registration existed; it was republished.
    AlreadyPresent(DomainRecord),
}

impl Added {
    pub fn record(&self) -> &DomainRecord {
        match self {
            Added::Created(record) | Added::AlreadyPresent(record) => record,
        }
    }
}

impl DomainRecord {
    /// The record as gateways and workers read it from Redis.
    pub fn config(&self) -> DomainConfig {
        DomainConfig {
            id: self.id.to_string(),
            tenant_id: self.tenant_id.to_string(),
            host: self.host.clone(),
            origin: self.origin.clone(),
            verified: self.verified,
            settings: self.settings.clone(),
            service_only: self.service_only,
        }
    }
}

/// Registers a domain: checks that its hostname may be registered at all (see
/// [`crate::hostnames`]) and that its origin resolves only to addresses Kiln may reach, stores it in
/// Postgres with an audit event, then publishes it to Redis.
pub async fn add_domain(app: &App, request: AddDomain, actor: &str) -> Result<Added, DomainError> {
    app.hostnames.check(&request.host)?;
    if request.service_only {
        origin_for(&request.host, Some(request.origin.clone()), true)?;
    }
    request
        .origin
        .check_addresses(&app.allowed_nets, &request.tenant_id.to_string())
        .await?;

    let token = verification_token();
    let new = NewDomain {
        id: Uuid::now_v7(),
        tenant_id: request.tenant_id,
        host: &request.host,
        origin: request.origin.as_str(),
        verified: request.verified,
        verification_token: &token,
        settings: &request.settings,
        service_only: request.service_only,
    };
    let added = match app.db.insert_domain(&new, actor).await {
        Ok(record) => {
            tracing::info!(
                domain.host = %record.host,
                domain.id = %record.id,
                domain.origin = %record.origin,
                "domain registered"
            );
            Added::Created(record)
        }
        Err(DbError::Conflict { constraint }) if constraint == DOMAINS_HOSTNAME_KEY => {
            let existing = app.db.domain_by_host(&request.host).await?;
            match existing {
                Some(existing)
                    if existing.tenant_id != request.tenant_id || !request.if_not_exists =>
                {
                    return Err(DomainError::Conflict(request.host));
                }
                Some(existing)
                    if existing.origin == request.origin.as_str()
                        && existing.settings == request.settings
                        && existing.verified == request.verified
                        && existing.service_only == request.service_only =>
                {
                    Added::AlreadyPresent(existing)
                }
                Some(existing) => {
                    return Err(DomainError::ConflictDiffers {
                        host: request.host,
                        origin: existing.origin,
                    });
                }
                // Removed between the insert and the look-up: report the conflict the insert saw.
                None => return Err(DomainError::Conflict(request.host)),
            }
        }
        Err(error) => return Err(error.into()),
    };

    publish(app, added.record()).await?;
    Ok(added)
}

/// Publishes one registered domain to Redis for gateways and workers.
async fn publish(app: &App, record: &DomainRecord) -> Result<(), DomainError> {
    app.store
        .directory()
        .put(&record.config())
        .await
        .map_err(|source| DomainError::Publish {
            host: record.host.clone(),
            source,
        })
}

/// Every registered domain, by hostname.
pub async fn list_domains(db: &Db) -> Result<Vec<DomainRecord>, DomainError> {
    Ok(db.list_domains().await?)
}

/// Removes a domain from Postgres (with an audit event) and withdraws it from Redis.
///
/// A hostname that is not registered is an error, but it is withdrawn from Redis all the same, so
/// that a stale entry left behind by an earlier failure disappears.
pub async fn remove_domain(
    app: &App,
    host: &Hostname,
    actor: &str,
) -> Result<DomainRecord, DomainError> {
    let removed = app.db.delete_domain(host, actor).await?;
    let withdrawn =
        app.store
            .directory()
            .remove(host)
            .await
            .map_err(|source| DomainError::Publish {
                host: host.clone(),
                source,
            })?;
    match removed {
        Some(record) => {
            tracing::info!(domain.host = %record.host, domain.id = %record.id, "domain removed");
            Ok(record)
        }
        None => {
            if withdrawn {
                tracing::warn!(
                    domain.host = %host,
                    "withdrew a stale Redis entry for an unregistered domain"
                );
            }
            Err(DomainError::NotRegistered(host.clone()))
        }
    }
}

/// Registers a domain for a tenant, unverified: people are proxied at once, bots get renders once
/// DNS proves ownership. `origin` is as [`origin_for`] takes it: none for a domain used only
/// through the render service.
pub async fn create_for_tenant(
    app: &App,
    tenant_id: Uuid,
    host: Hostname,
    origin: Option<Origin>,
    service_only: bool,
    settings: DomainSettings,
    actor: &str,
) -> Result<DomainRecord, DomainError> {
    let request = AddDomain {
        origin: origin_for(&host, origin, service_only)?,
        tenant_id,
        host,
        settings,
        verified: false,
        service_only,
        if_not_exists: false,
    };
    Ok(add_domain(app, request, actor).await?.record().clone())
}

/// Changes a domain's origin (checked like a new one) and settings, then republishes it. A domain
/// used only through the render service keeps its origin, its public site.
pub async fn update(
    app: &App,
    current: &DomainRecord,
    origin: Option<Origin>,
    settings: DomainSettings,
    actor: &str,
) -> Result<DomainRecord, DomainError> {
    let origin = match origin {
        Some(origin) if origin.as_str() != current.origin && current.service_only => {
            return Err(DomainError::ServiceOnlyOrigin {
                host: current.host.clone(),
                expected: current.origin.clone(),
            });
        }
        Some(origin) if origin.as_str() != current.origin => {
            origin
                .check_addresses(&app.allowed_nets, &current.tenant_id.to_string())
                .await?;
            origin.as_str().to_owned()
        }
        _ => current.origin.clone(),
    };
    let record = app
        .db
        .update_domain(current.tenant_id, current.id, &origin, &settings, actor)
        .await?
        .ok_or(DomainError::NotFound)?;
    publish(app, &record).await?;
    tracing::info!(domain.host = %record.host, domain.id = %record.id, "domain updated");
    Ok(record)
}

/// Removes one of a tenant's domains, withdraws it from the gateways and purges its cached pages.
pub async fn delete(
    app: &App,
    tenant_id: Uuid,
    id: Uuid,
    actor: &str,
) -> Result<DomainRecord, DomainError> {
    let record = app
        .db
        .delete_domain_of(tenant_id, id, actor)
        .await?
        .ok_or(DomainError::NotFound)?;
    let publish_error = |source| DomainError::Publish {
        host: record.host.clone(),
        source,
    };
    app.store
        .directory()
        .remove(&record.host)
        .await
        .map_err(publish_error)?;
    let purged = app
        .store
        .pages()
        .purge_domain(&record.id.to_string())
        .await
        .map_err(publish_error)?;
    tracing::info!(domain.host = %record.host, domain.id = %record.id, cache.purged = purged, "domain removed");
    Ok(record)
}

/// The DNS name whose TXT record proves ownership of `host`.
pub use kiln_verify::challenge_name;

/// Checks a tenant's domain's DNS and records what was found; a domain that proves ownership
/// becomes verified and is republished, so gateways start rendering for its bots.
pub async fn verify(
    app: &App,
    verifier: &kiln_verify::Verifier,
    cname_target: &Hostname,
    tenant_id: Uuid,
    id: Uuid,
    actor: &str,
) -> Result<DomainRecord, DomainError> {
    let current = app
        .db
        .domain_of(tenant_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let verification = verifier
        .check(&current.host, cname_target, &current.verification_token)
        .await;
    let result = serde_json::json!({
        "verified": verification.verified(),
        "method": verification.verified_by,
        "explanation": verification.explanation(),
        "findings": verification.findings,
    });
    let record = app
        .db
        .record_verification(tenant_id, id, verification.verified(), &result, actor)
        .await?
        .ok_or(DomainError::NotFound)?;
    if record.verified != current.verified {
        publish(app, &record).await?;
        tracing::info!(domain.host = %record.host, "domain verified");
    }
    Ok(record)
}

/// The audit actor of the background verifier.
pub const VERIFIER_ACTOR: &str = "system:verifier";
/// How long after registration the background verifier keeps checking a domain.
const VERIFY_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// How often it checks each pending domain.
const VERIFY_EVERY_SECS: i64 = 60;

/// Checks pending domains again in the background, so a customer who added the DNS record does not
/// have to come back and ask: each unverified domain is checked about once a minute during its first
/// week.
pub async fn run_background_verifier(
    app: App,
    verifier: kiln_verify::Verifier,
    cname_target: Hostname,
) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(15));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let pending = match app
            .db
            .domains_to_verify(VERIFY_WINDOW_SECS, VERIFY_EVERY_SECS, 50)
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(
                    error = %crate::error_chain(&error),
                    "cannot list domains awaiting verification"
                );
                continue;
            }
        };
        for domain in pending {
            let checked = verify(
                &app,
                &verifier,
                &cname_target,
                domain.tenant_id,
                domain.id,
                VERIFIER_ACTOR,
            )
            .await;
            if let Err(error) = checked {
                tracing::warn!(
                    domain.host = %domain.host,
                    error = %crate::error_chain(&error),
                    "background verification failed"
                );
            }
        }
    }
}

/// A fresh token a tenant will publish (DNS TXT record or file) to prove it controls a hostname:
/// 122 random bits from the operating system's CSPRNG, via UUID v4.
fn verification_token() -> String {
    format!("kiln-verify-{}", Uuid::new_v4().simple())
}

/// The tenant's domains, by hostname.
pub async fn of_tenant(app: &App, tenant_id: Uuid) -> Result<Vec<DomainRecord>, DomainError> {
    Ok(app.db.domains_of(tenant_id).await?)
}

/// One of the tenant's domains; another tenant's is [`DomainError::NotFound`], like one that does
/// not exist.
pub async fn get(app: &App, tenant_id: Uuid, id: Uuid) -> Result<DomainRecord, DomainError> {
    app.db
        .domain_of(tenant_id, id)
        .await?
        .ok_or(DomainError::NotFound)
}
