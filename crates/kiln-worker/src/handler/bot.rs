//! A bot's render: a bot missed the cache (or was served a stale copy) and the gateway that claimed
//! the render (its lock and budget place) queued the job. Store the page, then end the claim and
//! tell every waiting gateway. A render that failed because of the page or its origin leaves a
//! failure marker, so bots are not held back for the same broken page again for a while, and a
//! stale copy stays as it is.

use kiln_core::{RenderJob, RenderOutcome};
use kiln_store::RenderClaim;
use std::time::Duration;

use super::{Finished, Inner};
use crate::render::{RenderError, Rendered};

/// How long a page whose render failed is not rendered again for bots.
pub const FAILURE_MARKER_TTL: Duration = Duration::from_secs(30);

impl Inner {
    pub(super) async fn finish_bot(
        &self,
        job: &RenderJob,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
    ) -> Finished {
        // Out of browsers is this worker's trouble, not the page's.
        let page_failed = matches!(&result, Err(error) if !error.is_capacity());
        let (outcome, finished) = self.store_result(job, result, render_ms).await;
        if page_failed
            && let Some(reason) = &finished.reason
            && let Err(error) = self
                .store
                .pages
                .put_failure(&job.key, reason, FAILURE_MARKER_TTL)
                .await
        {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not record the failed render");
        }
        self.unlock_and_announce(job, outcome).await;
        finished
    }

    /// Ends the render claim the job's gateway took (its render lock and its place in the tenant's
    /// render budget) by telling the gateways waiting on the job's page what became of it (see
    /// `kiln_store::RenderClaim` for why the claim is released before the announcement).
    pub(super) async fn unlock_and_announce(&self, job: &RenderJob, outcome: RenderOutcome) {
        let Some(claim) = RenderClaim::of_job(&self.store.pages, job) else {
            return;
        };
        if let Err(error) = claim.announce_and_release(outcome).await {
            tracing::error!(error = %kiln_runtime::error_chain(&error), "could not end the render claim");
        }
    }
}
