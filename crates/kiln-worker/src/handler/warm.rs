//! A warm render: the dashboard queued it (a sitemap, a list of URLs) to fill the cache before bots
//! ask. Store the page like a bot's render and count the result for the warm job.
//!
//! A stored page is announced, so gateways waiting on the same key (a bot asked meanwhile) get it at
//! once. A failure is not announced: it would send those gateways to the origin while the render
//! their own request queued may still succeed. No render lock is released, since none was taken for
//! this job: the lock on the key, if any, belongs to a bot's render in flight.

use kiln_core::{RenderJob, RenderOutcome};

use super::{Finished, Inner};
use crate::render::{RenderError, Rendered};

impl Inner {
    pub(super) async fn finish_warm(
        &self,
        job: &RenderJob,
        job_id: &str,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
    ) -> Finished {
        let (outcome, finished) = self.store_result(job, result, render_ms).await;
        let stored = matches!(outcome, RenderOutcome::Stored { .. });
        if stored {
            self.announce(job, outcome).await;
        }
        if let Err(error) = self
            .store
            .render_log
            .record_warm_result(job_id, stored)
            .await
        {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), warm.job_id = job_id, "could not count the warm render");
        }
        finished
    }
}
