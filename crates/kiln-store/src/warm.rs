//! Progress of cache-warming jobs: how many of a warm job's renders were stored and how many failed.
//!
//! One hash per warm job, `{prefix}warm:{job_id}` with the fields `done` and `failed`, counted by
//! workers as each render finishes and kept for [`WARM_PROGRESS_TTL_SECS`] after the last count.

use crate::{RenderLog, Result};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

/// How long a warm job's counters are kept after its last render: a week.
pub const WARM_PROGRESS_TTL_SECS: i64 = 7 * 24 * 60 * 60;

/// How far a warm job got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmProgress {
    /// Renders stored.
    pub done: u64,
    /// Renders that failed (nothing stored).
    pub failed: u64,
}

impl RenderLog {
    fn warm_key(&self, job_id: &str) -> String {
        self.conn.key(&format!("warm:{job_id}"))
    }

    /// Counts one finished render of the warm job `job_id`: stored (`ok`) or failed.
    pub async fn record_warm_result(&self, job_id: &str, ok: bool) -> Result<()> {
        let key = self.warm_key(job_id);
        let field = if ok { "done" } else { "failed" };
        let tx = self.conn.pool.next().multi();
        let _: () = tx.hincrby(&key, field, 1).await?;
        let _: () = tx.expire(&key, WARM_PROGRESS_TTL_SECS, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// The counts for `job_id` so far (zeros for a job nothing was counted for, or long gone).
    pub async fn warm_progress(&self, job_id: &str) -> Result<WarmProgress> {
        let (done, failed): (Option<u64>, Option<u64>) = self
            .conn
            .pool
            .hmget(self.warm_key(job_id), vec!["done", "failed"])
            .await?;
        Ok(WarmProgress {
            done: done.unwrap_or(0),
            failed: failed.unwrap_or(0),
        })
    }
}
