//! A preview: the dashboard wants to see how a page renders. Render it exactly as for a bot, but
//! store nothing, announce nothing, leave locks alone, and push the result (or the failure, with
//! whatever is known of it) to the reply list the dashboard waits on.

use kiln_core::RenderJob;
use kiln_store::{PreviewResult, RenderLogOutcome};

use super::{Finished, Inner, public_html};
use crate::render::{RenderError, Rendered};

impl Inner {
    pub(super) async fn finish_preview(
        &self,
        job: &RenderJob,
        reply_to: &str,
        result: Result<Rendered, RenderError>,
        render_ms: u64,
    ) -> Finished {
        let (reply, finished) = match result {
            Ok(rendered) => {
                let html = public_html(job, &rendered);
                let finished = Finished {
                    outcome: RenderLogOutcome::Rendered,
                    status: Some(rendered.status),
                    reason: None,
                    bytes: html.len() as u64,
                };
                let reply = PreviewResult {
                    status: rendered.status,
                    headers: rendered.headers,
                    html,
                    render_ms,
                    error: None,
                };
                (reply, finished)
            }
            Err(error) => {
                let reason = error.to_string();
                let reply = PreviewResult {
                    status: error.status().unwrap_or(0),
                    headers: Vec::new(),
                    html: String::new(),
                    render_ms,
                    error: Some(reason.clone()),
                };
                let finished = Finished {
                    outcome: RenderLogOutcome::Failed,
                    status: error.status(),
                    reason: Some(reason),
                    bytes: 0,
                };
                (reply, finished)
            }
        };
        if let Err(error) = self.store.render_log.put_preview(reply_to, &reply).await {
            tracing::error!(error = %kiln_runtime::error_chain(&error), preview.reply_to = reply_to, "could not reply to a preview");
        }
        finished
    }
}
