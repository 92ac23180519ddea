//! Parity checks (see `kiln_core::parity`): the dashboard files a check, a worker runs it and
//! stores its report and pictures, the dashboard reads them.
//!
//! Keys, all under the tenant's hash tag and living [`PARITY_TTL_SECS`] from the last write:
//! - `{prefix}{t:<tenant>}:parity:{id}`: the [`ParityCheck`] as JSON.
//! - `{prefix}{t:<tenant>}:parity:{id}:{image}`: one of its PNG pictures (`live`, `snapshot`,
//!   `diff`), written before the check is marked done, so a done check always has them.
//! - `{prefix}{t:<tenant>}:parity:recent`: sorted set of the tenant's check ids by when they were
//!   asked for, trimmed to the newest [`PARITY_RECENT_MAX`]; a check trimmed from it is deleted
//!   with its pictures, so that a tenant's checks never hold more than that many sets of pictures
//!   (a few MB each at most) whatever it asks for.
//!
//! A check is nothing that cannot be asked for again, so it expires: a week is long enough to look
//! at it, share it, and compare it with the next.

use crate::{RenderLog, Result, StoreError};
use bytes::Bytes;
use fred::prelude::*;
use kiln_core::parity::{ParityCheck, ParityImage};

/// How long a check and its pictures are kept after their last write.
pub const PARITY_TTL_SECS: i64 = 7 * 24 * 3600;
/// How many of a tenant's checks the recent list keeps.
pub const PARITY_RECENT_MAX: i64 = 100;

impl RenderLog {
    fn parity_key(&self, tenant_id: &str, id: &str) -> String {
        self.conn.tenant_key(tenant_id, &format!("parity:{id}"))
    }

    fn parity_image_key(&self, tenant_id: &str, id: &str, image: ParityImage) -> String {
        self.conn
            .tenant_key(tenant_id, &format!("parity:{id}:{}", image.as_str()))
    }

    fn parity_recent_key(&self, tenant_id: &str) -> String {
        self.conn.tenant_key(tenant_id, "parity:recent")
    }

    /// Stores `check` (a new one, or its new state), and lists a new one among the tenant's recent
    /// checks.
    pub async fn put_parity_check(&self, check: &ParityCheck) -> Result<()> {
        let json = serde_json::to_string(check).map_err(StoreError::encode("parity check"))?;
        let recent = self.parity_recent_key(&check.tenant_id);
        let tx = self.conn.pool.next().multi();
        let _: () = tx
            .set(
                self.parity_key(&check.tenant_id, &check.id),
                json,
                Some(Expiration::EX(PARITY_TTL_SECS)),
                None,
                false,
            )
            .await?;
        let _: () = tx
            .zadd(
                &recent,
                None,
                None,
                false,
                false,
                (check.requested_at as f64, check.id.as_str()),
            )
            .await?;
        let _: () = tx.expire(&recent, PARITY_TTL_SECS, None).await?;
        let _: () = tx.exec(true).await?;
        self.trim_parity_checks(&check.tenant_id).await
    }

    /// Deletes the tenant's checks beyond the newest [`PARITY_RECENT_MAX`], pictures included. Two
    /// trims at once delete the same checks twice, which is harmless.
    async fn trim_parity_checks(&self, tenant_id: &str) -> Result<()> {
        let recent = self.parity_recent_key(tenant_id);
        let excess: Vec<String> = self
            .conn
            .pool
            .zrange(
                &recent,
                0,
                -(PARITY_RECENT_MAX + 1),
                None,
                false,
                None,
                false,
            )
            .await?;
        if excess.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(excess.len() * 4);
        for id in &excess {
            keys.push(self.parity_key(tenant_id, id));
            for image in ParityImage::ALL {
                keys.push(self.parity_image_key(tenant_id, id, image));
            }
        }
        // One slot (the tenant's hash tag), so one DEL even on a cluster.
        let _: i64 = self.conn.pool.del(keys).await?;
        let _: i64 = self.conn.pool.zrem(&recent, excess).await?;
        Ok(())
    }

    /// The tenant's check `id`, if it exists (a check of another tenant does not, here).
    pub async fn parity_check(&self, tenant_id: &str, id: &str) -> Result<Option<ParityCheck>> {
        let json: Option<String> = self.conn.pool.get(self.parity_key(tenant_id, id)).await?;
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::corrupt(format!("parity check {id}"), e))
        })
        .transpose()
    }

    /// The tenant's newest checks, newest first, at most `limit`.
    pub async fn recent_parity_checks(
        &self,
        tenant_id: &str,
        limit: usize,
    ) -> Result<Vec<ParityCheck>> {
        let limit = limit.clamp(1, PARITY_RECENT_MAX as usize) as i64;
        let ids: Vec<String> = self
            .conn
            .pool
            .zrange(
                self.parity_recent_key(tenant_id),
                0,
                limit - 1,
                None,
                true,
                None,
                false,
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One MGET: the keys share the tenant's hash tag, so a cluster allows it.
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.parity_key(tenant_id, id))
            .collect();
        let found: Vec<Option<String>> = self.conn.pool.mget(keys).await?;
        let mut checks = Vec::with_capacity(found.len());
        // A check that expired before the list was trimmed is simply left out.
        for (id, json) in ids.iter().zip(found) {
            if let Some(json) = json {
                checks.push(
                    serde_json::from_str(&json)
                        .map_err(|e| StoreError::corrupt(format!("parity check {id}"), e))?,
                );
            }
        }
        Ok(checks)
    }

    /// Stores one of a check's pictures.
    pub async fn put_parity_image(
        &self,
        tenant_id: &str,
        id: &str,
        image: ParityImage,
        png: Bytes,
    ) -> Result<()> {
        let _: () = self
            .conn
            .pool
            .set(
                self.parity_image_key(tenant_id, id, image),
                png,
                Some(Expiration::EX(PARITY_TTL_SECS)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// One of a check's pictures, if it exists.
    pub async fn parity_image(
        &self,
        tenant_id: &str,
        id: &str,
        image: ParityImage,
    ) -> Result<Option<Bytes>> {
        Ok(self
            .conn
            .pool
            .get(self.parity_image_key(tenant_id, id, image))
            .await?)
    }
}
