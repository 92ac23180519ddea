//! Preview replies: a worker renders a page for the dashboard without caching it and pushes the
//! result onto `{prefix}preview:{reply_to}`, where the dashboard waits for it.
//!
//! The list lives [`PREVIEW_TTL_SECS`]: a reply nobody took (the dashboard gave up) goes away.

use crate::{RenderLog, Result, StoreError};
use fred::error::ErrorKind;
use fred::prelude::*;
use fred::types::config::Options;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an untaken preview reply is kept.
pub const PREVIEW_TTL_SECS: i64 = 120;

/// How much longer than the server-side wait the client waits for `BLPOP`'s answer.
const BLPOP_MARGIN: Duration = Duration::from_secs(2);

/// The result of a preview render.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewResult {
    /// The page's status; for a failed render, the origin's status when that was the failure,
    /// 0 otherwise.
    pub status: u16,
    /// The headers a cached page would be served with.
    pub headers: Vec<(String, String)>,
    /// The HTML a cached page would hold (empty when the render failed).
    pub html: String,
    pub render_ms: u64,
    /// Why the render failed; `None` when it succeeded.
    pub error: Option<String>,
}

impl RenderLog {
    fn preview_key(&self, reply_to: &str) -> String {
        self.conn.key(&format!("preview:{reply_to}"))
    }

    /// Hands a preview's result to whoever waits on `reply_to`.
    pub async fn put_preview(&self, reply_to: &str, result: &PreviewResult) -> Result<()> {
        let key = self.preview_key(reply_to);
        let json = serde_json::to_string(result).map_err(StoreError::encode("preview"))?;
        let tx = self.conn.pool.next().multi();
        let _: () = tx.rpush(&key, json).await?;
        let _: () = tx.expire(&key, PREVIEW_TTL_SECS, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// Waits up to `timeout` for the preview reply on `reply_to`; `None` if none came in time.
    ///
    /// `BLPOP` holds its connection until it answers, so it runs on a connection of its own rather
    /// than on one of the pool's, whose other commands would queue behind it; and with a command
    /// timeout of its own, since the store's (meant for cache reads) is far shorter.
    pub async fn take_preview(
        &self,
        reply_to: &str,
        timeout: Duration,
    ) -> Result<Option<PreviewResult>> {
        let key = self.preview_key(reply_to);
        let client = self.conn.settings.builder()?.build()?;
        client.init().await?;
        let taken = if timeout.is_zero() {
            client.lpop::<Option<String>, _>(&key, None).await
        } else {
            let options = Options {
                timeout: Some(timeout + BLPOP_MARGIN),
                ..Options::default()
            };
            // BLPOP's timeout is in seconds; 0 would mean "forever", so never round down to it.
            let seconds = timeout.max(Duration::from_millis(1)).as_secs_f64();
            client
                .with_options(&options)
                .blpop::<Option<(String, String)>, _>(&key, seconds)
                .await
                .map(|popped| popped.map(|(_, json)| json))
        };
        let _ = client.quit().await;
        let json = match taken {
            Ok(json) => json,
            // fred reports BLPOP's empty answer as a timeout.
            Err(error) if *error.kind() == ErrorKind::Timeout => None,
            Err(error) => return Err(error.into()),
        };
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::corrupt(format!("preview {reply_to}"), e))
        })
        .transpose()
    }
}
