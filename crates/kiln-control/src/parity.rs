//! Parity checks: does the snapshot Kiln serves bots look like the page people see?
//!
//! The dashboard files a check (one URL of one of the tenant's verified domains, one device) and a
//! worker runs it from the parity queue: it loads the page live and as the snapshot, compares the
//! two and stores the report and three pictures (see `kiln_core::parity`). Checks live in Redis
//! under their tenant (`kiln_store`'s parity keys), so every read here names the caller's tenant,
//! and another tenant's check id finds nothing, exactly like an id that never existed.
//!
//! A check costs a render, so it counts against the tenant's render budget like a bot's render:
//! filing one takes the place `parity:<check id>` ([`budget_place`]), and a check the budget
//! refuses is not filed at all. The worker gives the place back when the check ends; should it
//! never (a worker that died), the place lapses by itself after [`budget_hold`].

use crate::App;
use crate::cache::{self, UrlProblem, UrlProblems, UrlRefused};
use crate::db::DbError;
use bytes::Bytes;
use kiln_core::job::RenderPurpose;
use kiln_core::parity::{ParityCheck, ParityImage, ParityState, budget_place};
use kiln_core::{DeviceClass, Hostname};
use kiln_queue::{QueueError, QueueKind, RenderQueue};
use kiln_store::{Admission, PARITY_RECENT_MAX, StoreError};
use std::time::Duration;
use uuid::Uuid;

/// How long a check may wait in the parity queue, on top of its own loads, before its place in
/// the budget lapses by itself.
const QUEUE_ALLOWANCE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// The URL is not a page of the tenant's that Kiln renders: malformed, on a host that is not
    /// one of the tenant's domains, or left out by the domain's path rules.
    #[error(transparent)]
    InvalidUrl(UrlProblems),
    #[error(
        "{0} is not verified yet; verify it (POST /api/v1/domains/{{id}}/verify) before comparing its pages"
    )]
    NotVerified(Hostname),
    #[error("no such parity check")]
    NotFound,
    #[error(
        "the account's render budget is in use (as many renders under way, or started this \
         minute, as it may have); try again in {} s",
        whole_secs(*.retry_after)
    )]
    BudgetExhausted { retry_after: Duration },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("parity checks are unavailable (Redis does not answer)")]
    Store(#[from] StoreError),
    #[error("the parity queue is unavailable")]
    Queue(#[from] QueueError),
}

impl ParityError {
    /// For [`ParityError::BudgetExhausted`]: whole seconds until a place may be free (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ParityError::BudgetExhausted { retry_after } => Some(whole_secs(*retry_after)),
            _ => None,
        }
    }
}

/// `wait` in whole seconds, rounded up, at least 1: what `Retry-After` says.
fn whole_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// How long a check's place in the budget is held at most: the worker loads the page twice (live
/// and as the snapshot) and may retry each once, so four render timeouts, plus the time it may
/// wait in the queue.
pub fn budget_hold(render_timeout_ms: u64) -> Duration {
    Duration::from_millis(render_timeout_ms) * 4 + QUEUE_ALLOWANCE
}

/// Files a parity check of `url` (an absolute URL on one of the tenant's verified domains) at
/// `device`'s width, and queues it for a worker. Returns the check, queued.
///
/// The check is stored before its job is queued, so a worker always finds it; a job that cannot be
/// queued leaves the check failed, with the reason, and its place in the budget given back.
pub async fn file(
    app: &App,
    queue: &RenderQueue,
    tenant_id: Uuid,
    url: &str,
    device: DeviceClass,
) -> Result<ParityCheck, ParityError> {
    let domains = app.db.domains_of(tenant_id).await?;
    let refused =
        |reason| ParityError::InvalidUrl(UrlProblems::one(UrlProblem::new("url", url, reason)));
    let page = cache::resolve_url(&cache::by_host(&domains), url).map_err(refused)?;
    if !page.domain.verified {
        return Err(ParityError::NotVerified(page.domain.host.clone()));
    }
    if !page
        .domain
        .settings
        .path_rules()
        .renders(cache::path_of(&page.url))
    {
        return Err(refused(UrlRefused::Excluded {
            so: "there is no snapshot to compare",
        }));
    }

    let tenant = tenant_id.to_string();
    let id = Uuid::now_v7().to_string();
    let hold = budget_hold(page.domain.settings.render_timeout_ms);
    match app
        .store
        .pages()
        .admit_render(&tenant, &budget_place(&id), app.render_budget, hold)
        .await?
    {
        Admission::Admitted => {}
        Admission::Refused { retry_after } => {
            return Err(ParityError::BudgetExhausted { retry_after });
        }
    }

    let mut check = ParityCheck::queued(
        id.clone(),
        tenant,
        page.domain.id.to_string(),
        page.url.to_string(),
        device,
    );
    if let Err(error) = app.store.render_log().put_parity_check(&check).await {
        give_back_place(app, &check).await;
        return Err(error.into());
    }
    let job = cache::render_job(
        page.domain,
        page.url,
        device,
        RenderPurpose::Parity { check_id: id },
    );
    if let Err(error) = queue.push_to(QueueKind::Parity, job).await {
        check.state = ParityState::Failed;
        check.finished_at = Some(kiln_core::unix_millis_now());
        check.error = Some(format!(
            "the check could not be queued: {}",
            crate::error_chain(&error)
        ));
        if let Err(store_error) = app.store.render_log().put_parity_check(&check).await {
            tracing::warn!(
                parity.id = %check.id,
                error = %crate::error_chain(&store_error),
                "could not record a parity check that was not queued"
            );
        }
        give_back_place(app, &check).await;
        return Err(error.into());
    }
    tracing::info!(
        parity.id = %check.id,
        parity.url = %check.url,
        parity.device = device.as_str(),
        "parity check queued"
    );
    Ok(check)
}

/// Gives back the budget place of a check that will never run. Best effort: it lapses by itself.
async fn give_back_place(app: &App, check: &ParityCheck) {
    if let Err(error) = app
        .store
        .pages()
        .release_render_place(&check.tenant_id, &budget_place(&check.id))
        .await
    {
        tracing::warn!(
            parity.id = %check.id,
            error = %crate::error_chain(&error),
            "could not give back a parity check's render budget place; it lapses by itself"
        );
    }
}

/// The tenant's check `id`, in whatever state it is.
pub async fn check(app: &App, tenant_id: Uuid, id: Uuid) -> Result<ParityCheck, ParityError> {
    app.store
        .render_log()
        .parity_check(&tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or(ParityError::NotFound)
}

/// The tenant's newest checks, newest first, at most `limit` (of the last
/// [`PARITY_RECENT_MAX`] the store keeps); only those of `domain_id` if given.
pub async fn recent(
    app: &App,
    tenant_id: Uuid,
    domain_id: Option<Uuid>,
    limit: usize,
) -> Result<Vec<ParityCheck>, ParityError> {
    let wanted = if domain_id.is_some() {
        PARITY_RECENT_MAX as usize
    } else {
        limit
    };
    let mut checks = app
        .store
        .render_log()
        .recent_parity_checks(&tenant_id.to_string(), wanted)
        .await?;
    if let Some(domain_id) = domain_id {
        let domain_id = domain_id.to_string();
        checks.retain(|check| check.domain_id == domain_id);
    }
    checks.truncate(limit);
    Ok(checks)
}

/// One of the pictures of the tenant's check `id` (PNG): there once the check is done.
pub async fn image(
    app: &App,
    tenant_id: Uuid,
    id: Uuid,
    image: ParityImage,
) -> Result<Bytes, ParityError> {
    app.store
        .render_log()
        .parity_image(&tenant_id.to_string(), &id.to_string(), image)
        .await?
        .ok_or(ParityError::NotFound)
}

/// A score as reports promise it, between 0 and 1. (A score that is not a number can only come
/// from a worker's bug, and reads as "no difference measured".)
pub fn score_of(score: f64) -> f64 {
    if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_stay_between_0_and_1() {
        let check = |score: f64, expected: f64| assert_eq!(score_of(score), expected, "{score}");
        check(0.0, 0.0);
        check(0.25, 0.25);
        check(1.0, 1.0);
        check(1.5, 1.0);
        check(-0.1, 0.0);
        check(f64::NAN, 0.0);
        check(f64::INFINITY, 0.0);
    }

    #[test]
    fn a_refused_check_is_told_when_to_come_back_in_whole_seconds() {
        let check = |ms: u64, secs: u64| {
            let error = ParityError::BudgetExhausted {
                retry_after: Duration::from_millis(ms),
            };
            assert_eq!(error.retry_after_secs(), Some(secs), "{ms} ms");
            assert!(
                error
                    .to_string()
                    .ends_with(&format!("try again in {secs} s")),
                "{error}"
            );
        };
        check(0, 1);
        check(1, 1);
        check(999, 1);
        check(1000, 1);
        check(1001, 2);
        check(59_500, 60);
        assert_eq!(ParityError::NotFound.retry_after_secs(), None);
    }

    #[test]
    fn a_place_is_held_for_two_loads_each_retried_and_the_queue() {
        assert_eq!(budget_hold(15_000), Duration::from_secs(4 * 15 + 120));
        assert_eq!(budget_hold(0), QUEUE_ALLOWANCE);
        assert_eq!(budget_place("0190-ab"), "parity:0190-ab");
    }
}
