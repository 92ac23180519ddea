//! The render service's tokens: `kiln_svc_` followed by 32 random base-62 characters (190 bits),
//! with which a customer's own server (prerender-node, rendertron-middleware, an nginx recipe…)
//! asks Kiln's gateways for its bots' pages. Shown once at creation, stored in Postgres only as a
//! SHA-256 hash beside a visible prefix, and published to Redis (`kiln_store::ServiceTokens`,
//! named by the hash's hex) for the gateways, which record each token's last use there.
//!
//! Postgres is the truth. A new token is published after its commit; a revoked one is withdrawn
//! after its commit, and a withdrawal that fails fails the revoke (the token would otherwise stay
//! usable while the user believes it is gone), which the user retries. The whole set is published
//! again with the domain directory ([`crate::directory::publish_all`]: every start, the `publish`
//! command, and whenever Redis lost its data).
//!
//! Tokens are never logged: only their ids and visible prefixes are.

use crate::App;
use crate::db::{DbError, NewServiceToken, ServiceTokenRecord};
use crate::tokens::{self, MAX_NAME_LEN, RandomError};
use kiln_store::{ServiceToken, StoreError};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

pub const TOKEN_PREFIX: &str = "kiln_svc_";
/// The highest rate (requests a second) and burst a token may be given.
pub const MAX_RATE: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    #[error("the token name must be 1 to {MAX_NAME_LEN} characters, without control characters")]
    InvalidName,
    #[error("{field} must be between 1 and {MAX_RATE}")]
    InvalidLimit { field: &'static str },
    #[error("no such service token")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the operating system's random number generator failed")]
    Random(#[source] RandomError),
    #[error("publishing the new token to the gateways failed, so it was revoked again; try again")]
    Publish(#[source] StoreError),
    #[error(
        "the token {prefix}… is revoked, but withdrawing it from the gateways failed, so they may \
         still accept it; revoke it again once Redis answers"
    )]
    Withdraw {
        prefix: String,
        #[source]
        source: StoreError,
    },
    #[error("reading or writing the published service tokens failed")]
    Store(#[source] StoreError),
}

/// A request for a token: its name and, optionally, its own limits.
#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub name: &'a str,
    /// Requests a second on each gateway (none: the gateways' default).
    pub rate_per_second: Option<u32>,
    /// Requests at once above the rate (none: the gateways' default).
    pub burst: Option<u32>,
}

/// A freshly created token: the only time its secret exists outside the caller's hands.
pub struct CreatedToken {
    pub record: ServiceTokenRecord,
    pub secret: String,
}

impl ServiceTokenRecord {
    /// The record as the gateways read it, under its name there.
    pub fn published(&self) -> (String, ServiceToken) {
        let limit = |value: Option<i32>| value.and_then(|value| u32::try_from(value).ok());
        let token = ServiceToken {
            id: self.id.to_string(),
            tenant_id: self.tenant_id.to_string(),
            rate_per_second: limit(self.rate_per_second),
            burst: limit(self.burst),
        };
        (hex::encode(&self.token_hash), token)
    }
}

fn check_limit(field: &'static str, value: Option<u32>) -> Result<Option<i32>, ServiceTokenError> {
    match value {
        None => Ok(None),
        Some(value @ 1..=MAX_RATE) => Ok(Some(value as i32)),
        Some(_) => Err(ServiceTokenError::InvalidLimit { field }),
    }
}

/// Creates a token for the tenant, stores it (with an audit event) and publishes it: it works
/// from the response on.
pub async fn create(
    app: &App,
    tenant_id: Uuid,
    user_id: Uuid,
    request: &NewToken<'_>,
    actor: &str,
) -> Result<CreatedToken, ServiceTokenError> {
    let name = tokens::valid_name(request.name).ok_or(ServiceTokenError::InvalidName)?;
    let rate_per_second = check_limit("rate_per_second", request.rate_per_second)?;
    let burst = check_limit("burst", request.burst)?;
    let secret = tokens::generate(TOKEN_PREFIX).map_err(ServiceTokenError::Random)?;
    let new = NewServiceToken {
        id: Uuid::now_v7(),
        tenant_id,
        created_by: user_id,
        name,
        prefix: tokens::visible_part(&secret, TOKEN_PREFIX),
        token_hash: &tokens::hash(&secret),
        rate_per_second,
        burst,
    };
    let record = app.db.insert_service_token(&new, actor).await?;
    let (hash, published) = record.published();
    if let Err(error) = app.store.service_tokens().put(&hash, &published).await {
        // Nobody will ever see this token's secret: take it back rather than leave a live token
        // in Postgres that the next full publish would hand the gateways.
        if let Err(revoke_error) = app
            .db
            .revoke_service_token(tenant_id, record.id, actor)
            .await
        {
            tracing::warn!(
                service_token.id = %record.id,
                error = %crate::error_chain(&revoke_error),
                "cannot revoke a service token whose publishing failed"
            );
        }
        return Err(ServiceTokenError::Publish(error));
    }
    tracing::info!(
        service_token.id = %record.id,
        service_token.prefix = %record.prefix,
        "service token created"
    );
    Ok(CreatedToken { record, secret })
}

/// The tenant's tokens, live and revoked, newest first, each with its last use as the gateways
/// last reported it (the later of Postgres's copy and Redis's value). Redis failing does not fail
/// the listing: the last uses copied to Postgres are shown then.
pub async fn list(
    app: &App,
    tenant_id: Uuid,
) -> Result<Vec<ServiceTokenRecord>, ServiceTokenError> {
    let records = app.db.service_tokens_of(tenant_id).await?;
    let used = match app.store.service_tokens().last_used().await {
        Ok(used) => used,
        Err(error) => {
            tracing::warn!(
                error = %crate::error_chain(&error),
                "listing service tokens without their latest use: reading Redis failed"
            );
            HashMap::new()
        }
    };
    Ok(records
        .into_iter()
        .map(|mut record| {
            let in_redis = used
                .get(&record.id.to_string())
                .map(|&ms| crate::from_millis(ms));
            record.last_used_at = record.last_used_at.max(in_redis);
            record
        })
        .collect())
}

/// Revokes one of the tenant's tokens and withdraws it from the gateways at once. Revoking a
/// revoked token withdraws it again (the retry after a failed withdrawal).
pub async fn revoke(
    app: &App,
    tenant_id: Uuid,
    id: Uuid,
    actor: &str,
) -> Result<ServiceTokenRecord, ServiceTokenError> {
    let record = app
        .db
        .revoke_service_token(tenant_id, id, actor)
        .await?
        .ok_or(ServiceTokenError::NotFound)?;
    let (hash, _) = record.published();
    let tokens = app.store.service_tokens();
    let withdrawn = match tokens.remove(&hash).await {
        Ok(()) => tokens.forget_use(&record.id.to_string()).await,
        Err(error) => Err(error),
    };
    withdrawn.map_err(|source| ServiceTokenError::Withdraw {
        prefix: record.prefix.clone(),
        source,
    })?;
    tracing::info!(
        service_token.id = %record.id,
        service_token.prefix = %record.prefix,
        "service token revoked"
    );
    Ok(record)
}

/// Replaces the published tokens with every live one in Postgres (after Redis lost its data, or
/// at start), and returns how many are published.
///
/// Like the domain directory's publish, Postgres is read again after the publish, on purpose: a
/// token created meanwhile (whose own `put` the publish may have erased) is put back, and one
/// revoked meanwhile (which the publish may have put back) is withdrawn again. Anything that
/// commits after that second read publishes or withdraws itself after this ran.
pub async fn publish_all(app: &App) -> Result<usize, ServiceTokenError> {
    let store = app.store.service_tokens();
    let before = live(app).await?;
    store
        .publish(&before)
        .await
        .map_err(ServiceTokenError::Store)?;
    let after: HashMap<String, ServiceToken> = live(app).await?.into_iter().collect();
    let published: HashSet<&String> = before.iter().map(|(hash, _)| hash).collect();
    for (hash, _) in before.iter().filter(|(hash, _)| !after.contains_key(hash)) {
        store.remove(hash).await.map_err(ServiceTokenError::Store)?;
    }
    for (hash, token) in after.iter().filter(|(hash, _)| !published.contains(hash)) {
        store
            .put(hash, token)
            .await
            .map_err(ServiceTokenError::Store)?;
    }
    Ok(after.len())
}

/// Every live token in Postgres, as the gateways read it.
async fn live(app: &App) -> Result<Vec<(String, ServiceToken)>, DbError> {
    let records = app.db.live_service_tokens().await?;
    Ok(records.iter().map(ServiceTokenRecord::published).collect())
}

/// Copies the tokens' last uses from Redis into Postgres, where they outlive Redis's data (the
/// activity copier runs it every few seconds).
pub async fn copy_last_use(app: &App) -> Result<u64, ServiceTokenError> {
    let used = app
        .store
        .service_tokens()
        .last_used()
        .await
        .map_err(ServiceTokenError::Store)?;
    let uses: Vec<(Uuid, OffsetDateTime)> = used
        .into_iter()
        .filter_map(|(id, ms)| Some((id.parse().ok()?, crate::from_millis(ms))))
        .collect();
    Ok(app.db.record_service_token_uses(&uses).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let cases = [
            (None, Ok(None)),
            (Some(1), Ok(Some(1))),
            (Some(MAX_RATE), Ok(Some(MAX_RATE as i32))),
            (Some(0), Err(())),
            (Some(MAX_RATE + 1), Err(())),
        ];
        for (value, expected) in cases {
            assert_eq!(
                check_limit("burst", value).map_err(drop),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn tokens_have_their_own_shape() {
        let secret = tokens::generate(TOKEN_PREFIX).unwrap();
        assert!(tokens::has_shape(&secret, TOKEN_PREFIX), "{secret}");
        assert!(!crate::api_keys::looks_like_key(&secret));
        assert_eq!(
            hex::encode(tokens::hash(&secret)),
            kiln_store::token_hash(&secret),
            "Postgres's hash and the gateways' name for a token agree"
        );
    }
}
