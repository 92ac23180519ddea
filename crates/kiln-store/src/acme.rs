//! TLS certificates for customer domains, as `kiln-acme` obtains them and every edge node reads them:
//! HTTP-01 challenge answers, the issued certificates, their status, the ACME account and the lock
//! that keeps two managers from ordering for one host at once.
//!
//! Keys (after the deployment prefix):
//! - `acme:challenge:{host}:{token}`: the key authorization the gateway answers
//!   `/.well-known/acme-challenge/{token}` with on `host`, for [`CHALLENGE_TTL`] at most;
//! - `certs`: hash, host → [`CertificateRecord`] JSON (the chain, and the private key sealed by
//!   `kiln-acme`: this crate never sees it in the clear);
//! - `certs:index`: hash, host → the certificate's fingerprint, so that edges can see what changed
//!   without reading every certificate;
//! - `acme:status`: hash, host → [`CertificateStatus`] JSON, for the dashboard;
//! - `acme:account`: the ACME account's credentials (sealed by `kiln-acme`);
//! - `acme:lock:{host}`: the manager ordering for `host`.

use crate::{Result, StoreError};
use fred::prelude::*;
use kiln_core::Hostname;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

crate::view! {
    /// The HTTP-01 challenges kiln-acme publishes and the gateways answer: the one part of
    /// kiln-acme's data a gateway reads.
    Challenges
}

crate::view! {
    /// The certificates kiln-acme obtains and every edge node reads, their status, the ACME account
    /// and the lock on ordering for a host: kiln-acme's view (the dashboard reads the status).
    Certificates
}

/// How long a challenge answer stays in Redis: an order is validated within seconds, and one that
/// takes longer is abandoned and retried with new tokens anyway.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// A certificate issued for one host, as every edge node reads it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// The leaf certificate followed by its intermediates, PEM.
    pub chain_pem: String,
    /// The private key, sealed (encrypted and authenticated) by `kiln-acme` with the deployment's
    /// secret. Opaque here.
    pub sealed_key: String,
    /// SHA-256 of the leaf certificate's DER, lowercase hex: changes with every issuance.
    pub fingerprint: String,
    /// When the certificate stops being valid (Unix seconds).
    pub not_after: i64,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
}

impl std::fmt::Debug for CertificateRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRecord")
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &self.not_after)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// Where a host's certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// An order is under way.
    Ordering,
    /// A certificate is in the store (see `not_after`).
    Issued,
    /// The last order failed; another is tried at `retry_at`.
    Failed,
}

/// What the dashboard shows about a host's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    pub state: CertificateState,
    /// When the certificate in the store expires (Unix seconds), if there is one.
    #[serde(default)]
    pub not_after: Option<i64>,
    /// When the state last changed (Unix seconds).
    pub updated_at: i64,
    /// Why the last order failed, when it did.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Orders failed in a row.
    #[serde(default)]
    pub failures: u32,
    /// When the next order is due after failures (Unix seconds).
    #[serde(default)]
    pub retry_at: Option<i64>,
}

impl Challenges {
    fn challenge_key(&self, host: &Hostname, token: &str) -> String {
        self.conn
            .key(&format!("acme:challenge:{}:{token}", host.as_str()))
    }

    /// Publishes the answer to an HTTP-01 challenge for `host`, for [`CHALLENGE_TTL`].
    pub async fn put(&self, host: &Hostname, token: &str, key_authorization: &str) -> Result<()> {
        let _: () = self
            .conn
            .pool
            .set(
                self.challenge_key(host, token),
                key_authorization,
                Some(Expiration::EX(CHALLENGE_TTL.as_secs() as i64)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// The answer to the challenge `token` on `host`, if one is published.
    pub async fn get(&self, host: &Hostname, token: &str) -> Result<Option<String>> {
        Ok(self.conn.pool.get(self.challenge_key(host, token)).await?)
    }

    pub async fn remove(&self, host: &Hostname, token: &str) -> Result<()> {
        let _: u32 = self.conn.pool.del(self.challenge_key(host, token)).await?;
        Ok(())
    }
}

impl Certificates {
    /// Stores a host's new certificate; edges pick it up on their next sync.
    pub async fn put(&self, host: &Hostname, record: &CertificateRecord) -> Result<()> {
        let json = serde_json::to_string(record).map_err(StoreError::encode("certificate"))?;
        // The certificate first, then the index: an edge that sees the new fingerprint finds the
        // new certificate.
        let _: () = self
            .conn
            .pool
            .hset(self.conn.key("certs"), (host.as_str(), json))
            .await?;
        let _: () = self
            .conn
            .pool
            .hset(
                self.conn.key("certs:index"),
                (host.as_str(), record.fingerprint.as_str()),
            )
            .await?;
        Ok(())
    }

    pub async fn get(&self, host: &Hostname) -> Result<Option<CertificateRecord>> {
        let json: Option<String> = self
            .conn
            .pool
            .hget(self.conn.key("certs"), host.as_str())
            .await?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::corrupt(format!("certificate of {host}"), e))
        })
        .transpose()
    }

    /// Every stored certificate's fingerprint, by host.
    pub async fn index(&self) -> Result<HashMap<String, String>> {
        Ok(self.conn.pool.hgetall(self.conn.key("certs:index")).await?)
    }

    /// Withdraws a host's certificate and status (the domain was removed or is no longer verified).
    pub async fn remove(&self, host: &str) -> Result<()> {
        let _: u32 = self
            .conn
            .pool
            .hdel(self.conn.key("certs:index"), host)
            .await?;
        let _: u32 = self.conn.pool.hdel(self.conn.key("certs"), host).await?;
        let _: u32 = self
            .conn
            .pool
            .hdel(self.conn.key("acme:status"), host)
            .await?;
        Ok(())
    }

    pub async fn put_status(&self, host: &Hostname, status: &CertificateStatus) -> Result<()> {
        let json =
            serde_json::to_string(status).map_err(StoreError::encode("certificate status"))?;
        let _: () = self
            .conn
            .pool
            .hset(self.conn.key("acme:status"), (host.as_str(), json))
            .await?;
        Ok(())
    }

    pub async fn status(&self, host: &Hostname) -> Result<Option<CertificateStatus>> {
        let json: Option<String> = self
            .conn
            .pool
            .hget(self.conn.key("acme:status"), host.as_str())
            .await?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::corrupt(format!("certificate status of {host}"), e))
        })
        .transpose()
    }

    /// Every host's certificate status; malformed entries are skipped.
    pub async fn statuses(&self) -> Result<HashMap<String, CertificateStatus>> {
        let raw: HashMap<String, String> =
            self.conn.pool.hgetall(self.conn.key("acme:status")).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(host, json)| Some((host, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// The ACME account's stored credentials (sealed by `kiln-acme`).
    pub async fn account(&self) -> Result<Option<String>> {
        Ok(self.conn.pool.get(self.conn.key("acme:account")).await?)
    }

    pub async fn put_account(&self, sealed: &str) -> Result<()> {
        let _: () = self
            .conn
            .pool
            .set(self.conn.key("acme:account"), sealed, None, None, false)
            .await?;
        Ok(())
    }

    /// Takes the lock on ordering a certificate for `host` if nobody holds it; it expires by itself
    /// after `ttl`, so a manager that died mid-order does not block the host for long.
    pub async fn try_lock(&self, host: &Hostname, owner: &str, ttl: Duration) -> Result<bool> {
        self.conn
            .try_lock(
                self.conn.key(&format!("acme:lock:{}", host.as_str())),
                owner,
                ttl,
            )
            .await
    }

    pub async fn release_lock(&self, host: &Hostname) -> Result<()> {
        let _: u32 = self
            .conn
            .pool
            .del(self.conn.key(&format!("acme:lock:{}", host.as_str())))
            .await?;
        Ok(())
    }
}
