//! The render claim: the one render of a page a bot missed, and what that render holds until it is
//! done (the page's render lock and a place in its tenant's render budget), taken by a gateway and
//! given back by the worker that renders it, or by the gateway when the job cannot be queued.

use crate::{Admission, Pages, RenderBudget, Result, StoreError, StoreEvent};
use fred::prelude::*;
use kiln_core::job::RenderPurpose;
use kiln_core::{CacheKey, RenderJob, RenderOutcome};
use std::future::Future;
use std::time::Duration;

/// The claim on the one render of a page: its render lock (`{d:<domain>}:lock:<device>:<urlhash>`,
/// so that every other request for the page, on any gateway, waits for the same announcement) and,
/// for a bot's render, its place in the tenant's render budget (`{t:<tenant>}:budget:renders`,
/// under the page key). The two are taken together and given back together.
///
/// Its lifecycle, across two processes:
///
/// * **Taken** by the gateway whose request won the lock, with one call:
///   [`Pages::claim_render`] for a bot waiting on the page (the lock, then the caller's own check,
///   then the place), [`Pages::claim_refresh`] for the background refresh of a stale page (the
///   lock only: refreshes are not counted against the budget). A claim exists only while its lock
///   is held: a request that does not win the lock, or is refused, holds nothing.
/// * **Given up** by that gateway with [`RenderClaim::release`] when the render does not happen
///   after all (the job could not be queued).
/// * **Handed over** to the render job otherwise ([`RenderClaim::hand_over`], once the job is
///   queued): the job names the page and the tenant, which is all a claim is, so the worker
///   rebuilds it with [`RenderClaim::of_job`] (for a bot's job only: warms, previews and parity
///   checks hold no claim, and must never release a bot's).
/// * **Ended** by the worker with [`RenderClaim::announce_and_release`] once the page is stored (or
///   the render failed, or the page turned out fresh already): the lock and the place are given
///   back first and the outcome announced after, so a bot that arrives once the waiting ones are
///   told never finds the lock still held and waits for an announcement that was already made.
///
/// Every step takes the claim by value, so a claim is let go once, by one process. One that is
/// never released (a gateway that stopped between the claim and the push, a worker killed
/// mid-render) is not held for good: the lock and the place lapse by themselves after the lifetime
/// they were taken for (the bot's wait plus two renders, since the worker may retry once, plus a
/// margin), and the next request for the page claims it afresh. The lock names its taker (the
/// request's id) for people reading Redis, but is released whoever holds it: a job that outlives
/// its claim (handed to another worker after its first one died) ends the page's current claim,
/// which at worst lets one more render of the page run beside it.
#[must_use = "a claim holds the page's render lock and budget place until it is released or lapses"]
#[derive(Debug)]
pub struct RenderClaim {
    pages: Pages,
    key: CacheKey,
    /// The tenant whose render budget holds a place for the render (under its page key); none
    /// for a refresh, which takes no place.
    budget_tenant: Option<String>,
}

/// What came of asking for a bot's render claim ([`Pages::claim_render`]).
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The caller renders the page: it holds the lock and the place, and queues the job (or
    /// releases the claim if it cannot).
    Claimed(RenderClaim),
    /// Someone else holds the page's render lock: a render is under way, and its announcement
    /// serves this request too.
    AlreadyRendering,
    /// The caller's own check, made once the lock was won, refused the render (the reason): the
    /// lock was let go and no place taken.
    Declined(String),
    /// The tenant has all its renders under way, or has started its renders for this minute: the
    /// lock was let go, and a place may be free again in `retry_after`.
    OverBudget { retry_after: Duration },
}

/// A step of a claim's release that failed. The other steps were still made; what was not given
/// back lapses by itself with the lifetime it was taken for.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("could not release the render lock")]
    Lock(#[source] StoreError),
    #[error("could not give back the render's place in the tenant's budget")]
    Place(#[source] StoreError),
    #[error("could not announce the render's outcome")]
    Announce(#[source] StoreError),
}

impl Pages {
    /// Takes the render lock for `key` if nobody holds it. The lock expires by itself after `ttl`,
    /// so a render whose worker died is taken over by the next request.
    pub async fn try_lock_render(
        &self,
        key: &CacheKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.conn
            .try_lock(self.conn.page_scoped_key("lock", key), owner, ttl)
            .await
    }

    /// Whether someone holds the render lock for `key`: a render of the page is under way.
    pub async fn render_locked(&self, key: &CacheKey) -> Result<bool> {
        let exists: u32 = self
            .conn
            .pool
            .exists(self.conn.page_scoped_key("lock", key))
            .await?;
        Ok(exists > 0)
    }

    /// Releases the render lock for `key`, whoever took it: the render it guarded is over.
    pub async fn release_render_lock(&self, key: &CacheKey) -> Result<()> {
        let _: u32 = self
            .conn
            .pool
            .del(self.conn.page_scoped_key("lock", key))
            .await?;
        Ok(())
    }

    /// Announces the outcome of a render to every gateway waiting for `key`.
    pub async fn announce_render(&self, key: &CacheKey, outcome: RenderOutcome) -> Result<()> {
        self.conn
            .publish(&StoreEvent::Rendered {
                page_key: key.page_key(),
                outcome,
            })
            .await
    }

    /// Claims the render of `key` for a bot of `tenant_id`'s: takes the page's render lock (as
    /// `owner`, the request's id) and, if it won it, runs the caller's `check` and takes a place in
    /// the tenant's render budget. The lock and the place both last `lifetime` at most.
    ///
    /// `check` is awaited only by the request that won the lock, before any place is taken, so
    /// that a look only the winner needs (the gateway's: is the render queue short enough?) costs
    /// the others nothing, and a render it refuses counts nothing against the budget. `Some` is
    /// the reason it refuses.
    ///
    /// An error reading the lock is an error (the caller cannot know whether a render is under
    /// way); an error reading the budget claims the render anyway: the budget guards fairness, not
    /// safety. A refusal lets the lock go at once (if that fails, it lapses by itself).
    pub async fn claim_render(
        &self,
        key: &CacheKey,
        tenant_id: &str,
        owner: &str,
        lifetime: Duration,
        budget: RenderBudget,
        check: impl Future<Output = Option<String>>,
    ) -> Result<ClaimOutcome> {
        if !self.try_lock_render(key, owner, lifetime).await? {
            return Ok(ClaimOutcome::AlreadyRendering);
        }
        if let Some(reason) = check.await {
            let _ = self.release_render_lock(key).await;
            return Ok(ClaimOutcome::Declined(reason));
        }
        match self
            .admit_render(tenant_id, &key.page_key(), budget, lifetime)
            .await
        {
            Ok(Admission::Admitted) => {}
            Ok(Admission::Refused { retry_after }) => {
                let _ = self.release_render_lock(key).await;
                return Ok(ClaimOutcome::OverBudget { retry_after });
            }
            Err(error) => {
                // The log takes the error itself, so that the subscriber writes its sources too.
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "could not check the tenant's render budget"
                );
            }
        }
        Ok(ClaimOutcome::Claimed(RenderClaim {
            pages: self.clone(),
            key: key.clone(),
            budget_tenant: Some(tenant_id.to_owned()),
        }))
    }

    /// Claims the background refresh of the stale page `key`: its render lock only (as `owner`,
    /// for `lifetime` at most), since refreshes are not counted against the tenant's budget. None
    /// when someone holds the lock: a render of the page is under way already.
    pub async fn claim_refresh(
        &self,
        key: &CacheKey,
        owner: &str,
        lifetime: Duration,
    ) -> Result<Option<RenderClaim>> {
        Ok(self
            .try_lock_render(key, owner, lifetime)
            .await?
            .then(|| RenderClaim {
                pages: self.clone(),
                key: key.clone(),
                budget_tenant: None,
            }))
    }
}

impl RenderClaim {
    /// The claim a bot's render job carries, rebuilt by the worker from the page and the tenant
    /// the job names; none for any other job (warms, previews and parity checks are queued
    /// without one, and a lock on their page belongs to a bot's render in flight).
    ///
    /// The job does not say whether its gateway took a place in the budget (a refresh of a stale
    /// page takes none, nor does a render under an unlimited budget), so the rebuilt claim gives
    /// the page's place back either way: giving back a place nobody holds does nothing.
    pub fn of_job(pages: &Pages, job: &RenderJob) -> Option<RenderClaim> {
        (job.purpose == RenderPurpose::Bot).then(|| RenderClaim {
            pages: pages.clone(),
            key: job.key.clone(),
            budget_tenant: Some(job.tenant_id.clone()),
        })
    }

    /// Lets the claim travel with the job just queued for it: from here on it is the worker's to
    /// end ([`RenderClaim::of_job`]). Nothing is sent to Redis; taking the claim by value is what
    /// keeps the gateway from releasing it as well.
    pub fn hand_over(self) {}

    /// Gives the claim up without a render (the job could not be queued): the lock and the place
    /// are let go, both tried whatever becomes of the other. Waiting requests are not told: they
    /// fall back to the origin by themselves once their wait runs out.
    pub async fn release(self) -> Result<(), ReleaseError> {
        let lock = self.release_lock().await;
        let place = self.give_back_place().await;
        lock.and(place)
    }

    /// Ends the claim once its render is done: lets the lock and the place go, then announces
    /// `outcome` to every gateway waiting for the page. In this order, a bot that arrives once the
    /// waiting ones are told never finds the lock still held (after a failure that left no failure
    /// marker, it would wait out its whole budget for an announcement already made). Every step is
    /// made whatever became of the others; the first that failed is the error.
    pub async fn announce_and_release(self, outcome: RenderOutcome) -> Result<(), ReleaseError> {
        let lock = self.release_lock().await;
        let place = self.give_back_place().await;
        let announced = self
            .pages
            .announce_render(&self.key, outcome)
            .await
            .map_err(ReleaseError::Announce);
        lock.and(place).and(announced)
    }

    async fn release_lock(&self) -> Result<(), ReleaseError> {
        self.pages
            .release_render_lock(&self.key)
            .await
            .map_err(ReleaseError::Lock)
    }

    async fn give_back_place(&self) -> Result<(), ReleaseError> {
        match &self.budget_tenant {
            Some(tenant_id) => self
                .pages
                .release_render_place(tenant_id, &self.key.page_key())
                .await
                .map_err(ReleaseError::Place),
            None => Ok(()),
        }
    }
}
