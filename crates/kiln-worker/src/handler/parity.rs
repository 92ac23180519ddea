//! A parity check (`kiln_core::parity`): render the page as for a bot (storing nothing), load it
//! live and as that snapshot in the same tab (`crate::parity`), compare the two (`kiln-parity`), and
//! store the report and its pictures under the check, where the dashboard reads them.
//!
//! The check runs at the warm queue's priority (it never takes a tab a bot's render waits for), in
//! a tab that is disposed of afterwards: its live load ran as a person, and whatever that left
//! (cookies, storage) must not reach a render. Its place in the tenant's render budget, taken by
//! the dashboard when it filed the check, is given back however the check ends.

use bytes::Bytes;
use kiln_core::RenderJob;
use kiln_core::parity::{ParityCheck, ParityImage, ParityState, budget_place};
use kiln_store::RenderLogOutcome;
use std::collections::BTreeSet;

use super::{Finished, Inner, Turn, blame_browser, job_cap, watchdog};
use crate::pool::Priority;
use crate::render::{self, RenderError, Rendered};

impl Inner {
    /// Runs the check: the render's result, or why the check could not be made.
    pub(super) async fn parity(
        &self,
        job: &RenderJob,
        check_id: &str,
        turn: &mut Turn,
    ) -> Result<Rendered, RenderError> {
        let mut check = self.parity_check(job, check_id).await?;
        check.state = ParityState::Running;
        self.save_check(&check).await;

        let (mut lease, _) = self.take_tab(job, Priority::Background, turn).await?;
        tracing::Span::current().record("render.browser", lease.browser_id());
        let cap = job_cap(job);
        let request = self.request(job);
        let dead = lease.browser_dead();
        let mut documents = BTreeSet::new();
        let loaded = async {
            let rendered = render::render(
                lease.page(),
                lease.prepared(),
                &request,
                &dead,
                &mut documents,
            )
            .await?;
            let captures = crate::parity::capture(&lease, &request, &rendered.html).await?;
            Ok::<_, RenderError>((rendered, captures))
        };
        // Three loads, each within the cap.
        let loaded = watchdog(3 * cap, loaded).await;
        let loaded = blame_browser(&mut lease, loaded).await;
        // Disposed of, never kept for the domain (see the module's comment).
        drop(lease);
        let (rendered, captures) = loaded?;

        let (live_ms, snapshot_ms) = (captures.live_ms, captures.snapshot_ms);
        // Decoding and comparing two pictures of millions of pixels is CPU work: off the runtime.
        let (compared, live, snapshot) = tokio::task::spawn_blocking(move || {
            let compared = kiln_parity::compare(&captures.live, &captures.snapshot);
            (compared, captures.live.png, captures.snapshot.png)
        })
        .await
        .map_err(|e| RenderError::Page(format!("the comparison failed: {e}")))?;
        let compared = compared
            .map_err(|e| RenderError::Page(format!("the pages could not be compared: {e}")))?;
        let pictures = [
            (ParityImage::Live, live),
            (ParityImage::Snapshot, snapshot),
            (ParityImage::Diff, compared.diff_png),
        ];
        for (image, png) in pictures {
            self.store
                .render_log
                .put_parity_image(&job.tenant_id, check_id, image, Bytes::from(png))
                .await
                .map_err(|e| {
                    RenderError::Page(format!(
                        "could not store the pictures: {}",
                        kiln_runtime::error_chain(&e)
                    ))
                })?;
        }
        tracing::info!(
            parity.score = compared.report.visual.score,
            parity.missing_lines = compared.report.text.missing_total,
            parity.extra_lines = compared.report.text.extra_total,
            parity.fields = compared.report.fields.len(),
            "parity checked"
        );
        check.state = ParityState::Done;
        check.finished_at = Some(kiln_core::unix_millis_now());
        check.live_ms = Some(live_ms);
        check.snapshot_ms = Some(snapshot_ms);
        check.report = Some(compared.report);
        self.store
            .render_log
            .put_parity_check(&check)
            .await
            .map_err(|e| {
                RenderError::Page(format!(
                    "could not store the report: {}",
                    kiln_runtime::error_chain(&e)
                ))
            })?;
        Ok(rendered)
    }

    /// Ends the check: a failure is recorded on it (a success was, by [`Inner::parity`]), and its
    /// place in the tenant's budget is given back.
    pub(super) async fn finish_parity(
        &self,
        job: &RenderJob,
        check_id: &str,
        result: Result<Rendered, RenderError>,
    ) -> Finished {
        let finished = match result {
            Ok(rendered) => Finished {
                outcome: RenderLogOutcome::Rendered,
                status: Some(rendered.status),
                reason: None,
                bytes: rendered.html.len() as u64,
            },
            Err(error) => {
                let reason = error.to_string();
                match self
                    .store
                    .render_log
                    .parity_check(&job.tenant_id, check_id)
                    .await
                {
                    Ok(Some(mut check)) => {
                        check.state = ParityState::Failed;
                        check.finished_at = Some(kiln_core::unix_millis_now());
                        check.error = Some(reason.clone());
                        self.save_check(&check).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(error = %kiln_runtime::error_chain(&error), parity.check = check_id, "could not mark the parity check failed");
                    }
                }
                Finished {
                    outcome: RenderLogOutcome::Failed,
                    status: error.status(),
                    reason: Some(reason),
                    bytes: 0,
                }
            }
        };
        if let Err(error) = self
            .store
            .pages
            .release_render_place(&job.tenant_id, &budget_place(check_id))
            .await
        {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "could not give back the parity check's place in the render budget");
        }
        finished
    }

    async fn parity_check(
        &self,
        job: &RenderJob,
        check_id: &str,
    ) -> Result<ParityCheck, RenderError> {
        match self
            .store
            .render_log
            .parity_check(&job.tenant_id, check_id)
            .await
        {
            Ok(Some(check)) => Ok(check),
            Ok(None) => Err(RenderError::Page(format!(
                "parity check {check_id} is gone (it expired, or was never filed)"
            ))),
            Err(error) => Err(RenderError::Page(format!(
                "could not read parity check {check_id}: {}",
                kiln_runtime::error_chain(&error)
            ))),
        }
    }

    /// Stores the check's new state; a failure is only worth a warning (the dashboard then shows
    /// the state before).
    async fn save_check(&self, check: &ParityCheck) {
        if let Err(error) = self.store.render_log.put_parity_check(check).await {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), parity.check = check.id, "could not store the parity check's state");
        }
    }
}
