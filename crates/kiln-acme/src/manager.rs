//! The certificate manager: orders a certificate for every verified domain in the published
//! directory, renews each before it expires, and withdraws those of domains that went away.
//!
//! One pass ([`Manager::run_once`]) looks at every published domain; [`Manager::run`] makes a pass at
//! start, after every domain change announced on the event channel, and every
//! `KILN_ACME_CHECK_INTERVAL_SECS`. Several managers may run: an order takes the host's lock in Redis
//! first, so each certificate is ordered once.
//!
//! An order proves control of the host with HTTP-01: the key authorization goes to Redis, where every
//! gateway answers `/.well-known/acme-challenge/{token}` from, and the CA fetches it through the edge
//! the domain's DNS points at. A failed order is retried after a backoff (1 minute, doubling, at most
//! 6 hours), and the host's status says why it failed.

use crate::cert::leaf_info;
use crate::seal::Sealer;
use crate::settings::Settings;
use anyhow::Context;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use kiln_core::Hostname;
use kiln_store::{
    CertificateRecord, CertificateState, CertificateStatus, Certificates, Challenges, Directory,
    Events, Store, StoreEvent, Subscription,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// How long an order may hold its host's lock; a manager that died mid-order is replaced after it.
const ORDER_LOCK_TTL: Duration = Duration::from_secs(600);
/// How long an order may wait for the CA to validate it, and then to issue the certificate.
const ORDER_PATIENCE: Duration = Duration::from_secs(120);
/// The first retry after a failed order; each further failure doubles it, up to [`MAX_BACKOFF_SECS`].
const FIRST_BACKOFF_SECS: i64 = 60;
const MAX_BACKOFF_SECS: i64 = 6 * 3600;
/// The sealing context of the account's credentials.
const ACCOUNT_CONTEXT: &str = "acme-account";

/// What the manager needs to know, from [`Settings`].
#[derive(Clone, Debug)]
pub struct ManagerSettings {
    pub directory_url: String,
    pub contact_email: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub renew_before: Duration,
    pub check_interval: Duration,
    /// The platform's own names that get certificates beside the verified domains (the render
    /// service's host).
    pub platform_hosts: Vec<Hostname>,
}

impl From<&Settings> for ManagerSettings {
    fn from(settings: &Settings) -> Self {
        ManagerSettings {
            directory_url: settings.directory_url.clone(),
            contact_email: settings.contact_email.clone(),
            ca_root: settings.ca_root.clone(),
            renew_before: settings.renew_before,
            check_interval: settings.check_interval,
            platform_hosts: settings.platform_hosts.clone(),
        }
    }
}

/// What one pass did, by hostname.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Certificates ordered and stored (new or renewed).
    pub issued: Vec<String>,
    /// Orders that failed, with why.
    pub failed: Vec<(String, String)>,
    /// Certificates withdrawn: their domain is gone or no longer verified.
    pub withdrawn: Vec<String>,
}

/// The account's credentials as kept (sealed) in Redis, with the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Manager {
    /// The views of Kiln's Redis data the manager works with (see `kiln_store::Store`): the
    /// certificates and ACME account it keeps, the challenges it publishes, the directory it
    /// orders for and the event channel that tells it of new domains.
    certificates: Certificates,
    challenges: Challenges,
    directory: Directory,
    events: Events,
    sealer: Sealer,
    settings: ManagerSettings,
    /// This manager's name on the locks it takes.
    owner: String,
    account: tokio::sync::Mutex<Option<Account>>,
    metrics: std::sync::Arc<crate::metrics::AcmeMetrics>,
}

impl Manager {
    pub fn new(store: &Store, sealer: Sealer, settings: ManagerSettings) -> Self {
        let metrics = std::sync::Arc::new(crate::metrics::AcmeMetrics::new(store));
        Manager {
            certificates: store.certificates(),
            challenges: store.challenges(),
            directory: store.directory(),
            events: store.events(),
            sealer,
            settings,
            owner: format!("acme-{}", uuid::Uuid::new_v4().simple()),
            account: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// What the manager's `/metrics` reports.
    pub fn metrics(&self) -> std::sync::Arc<crate::metrics::AcmeMetrics> {
        std::sync::Arc::clone(&self.metrics)
    }

    /// Makes passes until `shutdown` completes: at start, after domain changes, and every check
    /// interval.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut events: Option<Subscription> = None;
        loop {
            if events.is_none() {
                events = match self.events.subscribe().await {
                    Ok(subscription) => Some(subscription),
                    Err(error) => {
                        tracing::warn!(%error, "cannot follow domain changes; checking on the interval only");
                        None
                    }
                };
            }
            match self.run_once().await {
                Ok(report) => {
                    if report != PassReport::default() {
                        tracing::info!(
                            acme.issued = report.issued.len(),
                            acme.failed = report.failed.len(),
                            acme.withdrawn = report.withdrawn.len(),
                            "certificate pass done"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "certificate pass failed")
                }
            }
            let wait = tokio::time::sleep(self.settings.check_interval);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut wait => break,
                    event = next_event(&mut events) => match event {
                        Some(
                            StoreEvent::DomainChanged { .. }
                            | StoreEvent::DirectoryPublished
                            | StoreEvent::Resync,
                        ) => {
                            // A burst of changes (a republish) makes one pass.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            break;
                        }
                        Some(_) => {}
                        None => {
                            events = None;
                            break;
                        }
                    },
                }
            }
        }
    }

    /// One pass over every published domain.
    pub async fn run_once(&self) -> anyhow::Result<PassReport> {
        let mut report = PassReport::default();
        let directory = self
            .directory
            .read()
            .await
            .context("cannot read the domain directory")?;
        let domains = &directory.domains;
        // The hosts that are to have a certificate: the verified domains, and the platform's own.
        let verified: HashSet<&str> = domains
            .values()
            .filter(|domain| domain.verified)
            .map(|domain| domain.host.as_str())
            .chain(self.settings.platform_hosts.iter().map(Hostname::as_str))
            .collect();
        let listed: HashSet<&str> = domains.values().map(|d| d.host.as_str()).collect();

        // Certificates and statuses of domains that are gone or no longer verified. A domain
        // missing from an incomplete directory (Redis lost it, and the dashboard has not published
        // it whole again yet) may still be published: only one it lists as unverified is stale.
        let index = self.certificates.index().await?;
        let statuses = self.certificates.statuses().await?;
        let mut stale: Vec<&String> = index
            .keys()
            .chain(statuses.keys())
            .filter(|host| !verified.contains(host.as_str()))
            .filter(|host| directory.complete || listed.contains(host.as_str()))
            .collect();
        stale.sort();
        stale.dedup();
        for host in stale {
            self.certificates.remove(host).await?;
            tracing::info!(domain.host = %host, "withdrew the certificate of a domain no longer verified");
            report.withdrawn.push(host.clone());
        }

        let mut hosts: Vec<&Hostname> = domains
            .values()
            .filter(|domain| domain.verified)
            .map(|domain| &domain.host)
            .chain(&self.settings.platform_hosts)
            .collect();
        hosts.sort();
        hosts.dedup();
        let now = now();
        for host in hosts {
            let current = self.certificates.get(host).await?;
            let status = statuses.get(host.as_str());
            let renew_before = self.settings.renew_before.as_secs() as i64;
            if !due(
                now,
                current.as_ref().map(|c| c.not_after),
                status,
                renew_before,
            ) {
                continue;
            }
            if !self
                .certificates
                .try_lock(host, &self.owner, ORDER_LOCK_TTL)
                .await?
            {
                tracing::debug!(domain.host = %host, "another manager is ordering this certificate");
                continue;
            }
            let outcome = self.issue(host, current.as_ref(), status).await;
            if let Err(error) = self.certificates.release_lock(host).await {
                tracing::warn!(domain.host = %host, %error, "could not release the order lock");
            }
            match outcome {
                Ok(()) => report.issued.push(host.to_string()),
                Err(error) => report.failed.push((host.to_string(), error)),
            }
        }
        self.metrics
            .passed(report.issued.len(), report.failed.len());
        Ok(report)
    }

    /// Orders a certificate for `host` and stores it; records the outcome in the host's status.
    /// Returns why it failed, as the status says.
    async fn issue(
        &self,
        host: &Hostname,
        current: Option<&CertificateRecord>,
        status: Option<&CertificateStatus>,
    ) -> Result<(), String> {
        let not_after = current.map(|c| c.not_after);
        let failures = status
            .filter(|s| s.state == CertificateState::Failed)
            .map_or(0, |s| s.failures);
        let ordering = CertificateStatus {
            state: CertificateState::Ordering,
            not_after,
            updated_at: now(),
            last_error: status.and_then(|s| s.last_error.clone()),
            failures,
            retry_at: None,
        };
        self.put_status(host, &ordering).await;
        tracing::info!(
            domain.host = %host,
            acme.renewal = current.is_some(),
            "ordering a certificate"
        );
        match self.order(host).await {
            Ok(record) => {
                tracing::info!(
                    domain.host = %host,
                    cert.fingerprint = %record.fingerprint,
                    cert.not_after = record.not_after,
                    "certificate stored"
                );
                self.put_status(
                    host,
                    &CertificateStatus {
                        state: CertificateState::Issued,
                        not_after: Some(record.not_after),
                        updated_at: now(),
                        last_error: None,
                        failures: 0,
                        retry_at: None,
                    },
                )
                .await;
                Ok(())
            }
            Err(error) => {
                let why = format!("{error:#}");
                let failures = failures.saturating_add(1);
                let retry_at = now() + backoff_secs(failures);
                tracing::warn!(domain.host = %host, error = %why, failures, retry_at, "certificate order failed");
                self.put_status(
                    host,
                    &CertificateStatus {
                        state: CertificateState::Failed,
                        not_after,
                        updated_at: now(),
                        last_error: Some(why.clone()),
                        failures,
                        retry_at: Some(retry_at),
                    },
                )
                .await;
                Err(why)
            }
        }
    }

    async fn put_status(&self, host: &Hostname, status: &CertificateStatus) {
        if let Err(error) = self.certificates.put_status(host, status).await {
            tracing::warn!(domain.host = %host, %error, "could not record the certificate's status");
        }
    }

    /// One ACME order for `host`, from the new order to the stored certificate.
    async fn order(&self, host: &Hostname) -> anyhow::Result<CertificateRecord> {
        let account = self.account().await?;
        let result = self.order_with(&account, host).await;
        if let Err(error) = &result
            && is_account_gone(error)
        {
            // The CA forgot the account (a test CA restarted, or it was deactivated): the next
            // order creates a new one.
            tracing::warn!("the ACME server does not know the account any more; creating another");
            *self.account.lock().await = None;
            let _ = self.certificates.put_account("").await;
        }
        result
    }

    async fn order_with(
        &self,
        account: &Account,
        host: &Hostname,
    ) -> anyhow::Result<CertificateRecord> {
        let identifiers = [Identifier::Dns(host.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .context("the ACME server refused the order")?;
        let mut tokens = Vec::new();
        let answered = async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.context("cannot read an authorization")?;
                match authorization.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => anyhow::bail!("the authorization is {other:?}"),
                }
                let mut challenge = authorization
                    .challenge(ChallengeType::Http01)
                    .context("the ACME server offers no http-01 challenge")?;
                let key_authorization = challenge.key_authorization();
                self.challenges
                    .put(host, &challenge.token, key_authorization.as_str())
                    .await
                    .context("cannot publish the challenge's answer to Redis")?;
                tokens.push(challenge.token.clone());
                challenge
                    .set_ready()
                    .await
                    .context("the ACME server refused the challenge")?;
            }
            anyhow::Ok(())
        }
        .await;
        let validated = match answered {
            Ok(()) => order
                .poll_ready(&retry_policy())
                .await
                .context("the ACME server did not validate the order"),
            Err(error) => Err(error),
        };
        for token in &tokens {
            if let Err(error) = self.challenges.remove(host, token).await {
                tracing::debug!(%error, "could not remove a challenge's answer (it expires anyway)");
            }
        }
        let status = validated?;
        anyhow::ensure!(
            status == OrderStatus::Ready,
            "the order is {status:?}{}",
            authorization_errors(&mut order).await
        );
        let key_pem = order
            .finalize()
            .await
            .context("the ACME server refused to finalize the order")?;
        let chain_pem = order
            .poll_certificate(&retry_policy())
            .await
            .context("the ACME server did not issue the certificate")?;
        let leaf = leaf_info(&chain_pem).context("the issued certificate does not parse")?;
        anyhow::ensure!(
            leaf.dns_names.iter().any(|name| name == host.as_str()),
            "the issued certificate is for {:?}, not {host}",
            leaf.dns_names
        );
        let record = CertificateRecord {
            chain_pem,
            sealed_key: self
                .sealer
                .seal(host.as_str(), key_pem.as_bytes())
                .context("cannot seal the private key")?,
            fingerprint: leaf.fingerprint,
            not_after: leaf.not_after,
            issued_at: now(),
        };
        self.certificates
            .put(host, &record)
            .await
            .context("cannot store the certificate in Redis")?;
        Ok(record)
    }

    /// The ACME account: the one in Redis if it belongs to this directory, else a new one (stored).
    async fn account(&self) -> anyhow::Result<Account> {
        let mut cached = self.account.lock().await;
        if let Some(account) = &*cached {
            return Ok(account.clone());
        }
        let stored = self
            .certificates
            .account()
            .await?
            .filter(|sealed| !sealed.is_empty());
        if let Some(sealed) = stored {
            match self
                .sealer
                .open(ACCOUNT_CONTEXT, &sealed)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice::<StoredAccount>(&bytes)?))
            {
                Ok(stored) if stored.directory == self.settings.directory_url => {
                    let account = self
                        .builder()?
                        .from_credentials(stored.credentials)
                        .await
                        .context("cannot reach the ACME server")?;
                    *cached = Some(account.clone());
                    return Ok(account);
                }
                Ok(_) => tracing::info!("the stored ACME account is another directory's"),
                Err(error) => {
                    tracing::warn!(%error, "the stored ACME account does not open; creating another")
                }
            }
        }
        let contact = self
            .settings
            .contact_email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory_url.clone(),
                None,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot create an ACME account at {}",
                    self.settings.directory_url
                )
            })?;
        let stored = serde_json::to_vec(&StoredAccount {
            directory: self.settings.directory_url.clone(),
            credentials,
        })?;
        let sealed = self.sealer.seal(ACCOUNT_CONTEXT, &stored)?;
        self.certificates.put_account(&sealed).await?;
        tracing::info!(acme.account = account.id(), "ACME account created");
        *cached = Some(account.clone());
        Ok(account)
    }

    fn builder(&self) -> anyhow::Result<AccountBuilder> {
        Ok(match &self.settings.ca_root {
            Some(root) => Account::builder_with_root(root).with_context(|| {
                format!("cannot use {} as the ACME server's root", root.display())
            })?,
            None => Account::builder().context("cannot set up the ACME client")?,
        })
    }
}

async fn next_event(events: &mut Option<Subscription>) -> Option<StoreEvent> {
    match events {
        Some(subscription) => subscription.next().await,
        None => std::future::pending().await,
    }
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ORDER_PATIENCE)
}

/// Why the order's authorizations failed, as the CA put it (`: …`), or nothing.
async fn authorization_errors(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(error) = &challenge.error {
                reasons.push(error.to_string());
            }
        }
    }
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}

fn is_account_gone(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<instant_acme::Error>(),
            Some(instant_acme::Error::Api(problem))
                if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
        )
    })
}

/// Whether a host needs an order now: it has no certificate or one expiring within `renew_before`
/// seconds, and it is not waiting out the backoff of a failed order.
pub(crate) fn due(
    now: i64,
    not_after: Option<i64>,
    status: Option<&CertificateStatus>,
    renew_before: i64,
) -> bool {
    let backing_off = status.is_some_and(|s| {
        s.state == CertificateState::Failed && s.retry_at.is_some_and(|at| at > now)
    });
    if backing_off {
        return false;
    }
    match not_after {
        None => true,
        Some(not_after) => not_after.saturating_sub(now) <= renew_before,
    }
}

/// How long to wait after the `failures`-th failure in a row.
pub(crate) fn backoff_secs(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_BACKOFF_SECS
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_SECS)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::{backoff_secs, due};
    use kiln_store::{CertificateState, CertificateStatus};

    fn status(state: CertificateState, retry_at: Option<i64>) -> CertificateStatus {
        CertificateStatus {
            state,
            not_after: None,
            updated_at: 0,
            last_error: None,
            failures: 1,
            retry_at,
        }
    }

    #[test]
    fn orders_when_missing_or_expiring_and_not_backing_off() {
        let day = 86_400;
        let now = 1_000 * day;
        let window = 30 * day;
        let failed_later = status(CertificateState::Failed, Some(now + 60));
        let failed_past = status(CertificateState::Failed, Some(now - 1));
        let issued = status(CertificateState::Issued, None);
        let cases = [
            (None, None, true, "no certificate"),
            (Some(now + 60 * day), Some(&issued), false, "60 days left"),
            (Some(now + 31 * day), None, false, "31 days left"),
            (Some(now + 30 * day), None, true, "30 days left"),
            (Some(now + 3600), Some(&issued), true, "an hour left"),
            (Some(now - 10), None, true, "expired"),
            (None, Some(&failed_later), false, "failed, retry later"),
            (
                Some(now + 3600),
                Some(&failed_later),
                false,
                "failed, retry later",
            ),
            (None, Some(&failed_past), true, "failed, retry due"),
        ];
        for (not_after, status, expected, case) in cases {
            assert_eq!(due(now, not_after, status, window), expected, "{case}");
        }
    }

    #[test]
    fn backs_off_doubling_up_to_six_hours() {
        let cases = [
            (1, 60),
            (2, 120),
            (3, 240),
            (7, 3840),
            (9, 15_360),
            (10, 6 * 3600),
            (u32::MAX, 6 * 3600),
        ];
        for (failures, expected) in cases {
            assert_eq!(backoff_secs(failures), expected, "{failures}");
        }
    }
}
