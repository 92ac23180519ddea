//! A bot's render: a bot missed the cache (or was served a stale copy) and the gateway that won the
//! render lock queued the job. Store the page, tell every waiting gateway, and release the lock. A
//! render that failed because of the page or its origin leaves a failure marker, so bots are not
//! held back for the same broken page again for a while, and a stale copy stays as it is.

use kiln_core::{RenderJob, RenderOutcome};
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
                .put_failure(&job.key, reason, FAILURE_MARKER_TTL)
                .await
        {
            tracing::warn!(%error, "could not record the failed render");
        }
        self.unlock_and_announce(job, outcome).await;
        finished
    }

    /// Releases the render lock the job's gateway took (and the place in the tenant's render
    /// budget it was given), then tells the gateways waiting on the job's page what became of it.
    /// In this order, a bot that arrives once the waiting ones are told never finds the lock still
    /// held: after a failure that left no failure marker (the worker was out of browsers), it
    /// would wait out its whole budget for an announcement that had already been made.
    pub(super) async fn unlock_and_announce(&self, job: &RenderJob, outcome: RenderOutcome) {
        if let Err(error) = self.store.release_render_lock(&job.key).await {
            tracing::error!(%error, "could not release the render lock");
        }
        if let Err(error) = self
            .store
            .release_render_place(&job.tenant_id, &job.key.page_key())
            .await
        {
            tracing::warn!(%error, "could not give back the render's place in the tenant's budget");
        }
        self.announce(job, outcome).await;
    }
}
