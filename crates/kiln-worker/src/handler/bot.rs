//! A bot's render: a bot missed the cache and the gateway that won the render lock queued the job.
//! Store the page, tell every waiting gateway, and release the lock.

use kiln_core::RenderJob;

use super::{Finished, Inner};
use crate::render::{RenderError, Rendered};

impl Inner {
    pub(super) async fn finish_bot(
        &self,
        job: &RenderJob,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
    ) -> Finished {
        let (outcome, finished) = self.store_result(job, result, render_ms).await;
        self.announce(job, outcome).await;
        if let Err(error) = self.store.release_render_lock(&job.key).await {
            tracing::error!(%error, "could not release the render lock");
        }
        finished
    }
}
