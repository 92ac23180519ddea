//! API keys: `kiln_live_` followed by 32 random base-62 characters (190 bits), shown once at
//! creation and stored only as a SHA-256 hash beside a visible prefix.

use crate::App;
use crate::db::{ApiKeyRecord, DbError, NewApiKey};
use crate::tokens;
use uuid::Uuid;

pub use crate::tokens::{MAX_NAME_LEN, RandomError, hash};

pub const KEY_PREFIX: &str = "kiln_live_";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key name must be 1 to {MAX_NAME_LEN} characters, without control characters")]
    InvalidName,
    #[error("no such API key")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the operating system's random number generator failed")]
    Random(#[source] RandomError),
}

/// A freshly created key: the only time its secret exists outside the caller's hands.
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

/// Whether `value` has the shape of a Kiln API key (so that anything else can be refused without a
/// database round trip).
pub fn looks_like_key(value: &str) -> bool {
    tokens::has_shape(value, KEY_PREFIX)
}

fn generate() -> Result<String, KeyError> {
    tokens::generate(KEY_PREFIX).map_err(KeyError::Random)
}

pub async fn create(
    app: &App,
    tenant_id: Uuid,
    user_id: Uuid,
    name: &str,
    actor: &str,
) -> Result<CreatedKey, KeyError> {
    let name = tokens::valid_name(name).ok_or(KeyError::InvalidName)?;
    let secret = generate()?;
    let prefix = tokens::visible_part(&secret, KEY_PREFIX);
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant_id,
        created_by: user_id,
        name,
        prefix,
        key_hash: &hash(&secret),
    };
    let record = app.db.insert_api_key(&new, actor).await?;
    tracing::info!(api_key.id = %record.id, api_key.prefix = %record.prefix, "API key created");
    Ok(CreatedKey { record, secret })
}

/// The live key whose secret is `key`, if there is one, marked as used now.
pub async fn use_key(app: &App, key: &str) -> Result<Option<ApiKeyRecord>, KeyError> {
    Ok(app.db.use_api_key(&hash(key)).await?)
}

/// The tenant's keys, live and revoked, newest first.
pub async fn list(app: &App, tenant_id: Uuid) -> Result<Vec<ApiKeyRecord>, KeyError> {
    Ok(app.db.api_keys_of(tenant_id).await?)
}

/// Revokes one of the tenant's keys: requests using it fail from now on.
pub async fn revoke(
    app: &App,
    tenant_id: Uuid,
    id: Uuid,
    actor: &str,
) -> Result<ApiKeyRecord, KeyError> {
    app.db
        .revoke_api_key(tenant_id, id, actor)
        .await?
        .ok_or(KeyError::NotFound)
}

/// Revokes every live key of the tenant, and returns them.
pub async fn revoke_all(
    app: &App,
    tenant_id: Uuid,
    actor: &str,
) -> Result<Vec<ApiKeyRecord>, KeyError> {
    Ok(app.db.revoke_all_api_keys(tenant_id, actor).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(looks_like_key(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_PREFIX.len() + tokens::RANDOM_LEN);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn only_well_formed_keys_look_like_keys() {
        let cases = [
            ("kiln_live_0123456789abcdefABCDEF0123456789", true),
            ("kiln_live_0123456789abcdefABCDEF012345678", false),
            ("kiln_test_0123456789abcdefABCDEF0123456789", false),
            ("kiln_live_0123456789abcdefABCDEF012345678!", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(looks_like_key(value), expected, "{value}");
        }
    }
}
