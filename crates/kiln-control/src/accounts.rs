//! Accounts and sessions: sign-up, log-in, password changes, and the signed session tokens that a
//! session cookie carries.
//!
//! Passwords are hashed with Argon2id at the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's
//! recommendation) on the blocking pool, so a burst of log-ins cannot stall the async runtime.
//!
//! A session is a row in `sessions` plus a short-lived HS256 JWT naming it. The token is renewed
//! while it is used; the row is what log-out and a password change revoke, and every request checks
//! it, so a copied cookie dies with its session rather than at its expiry.

use crate::App;
use crate::db::{DbError, NewUser, SessionRecord, UserRecord};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Passwords shorter than this are refused whatever their entropy estimate.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longer passwords are refused: hashing megabytes on request would be a denial-of-service lever.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The longest a session lives, however often its token is renewed.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error("an account with this email already exists; log in instead")]
    EmailTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the session has ended; log in again")]
    SessionEnded,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("hashing a password failed")]
    Hashing(#[source] argon2::password_hash::Error),
    #[error("the task hashing a password failed")]
    HashingTask(#[source] tokio::task::JoinError),
    #[error("signing a session token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// An email address, trimmed and lowercased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Accepts what a sign-up form should: one `@`, a non-empty local part, a domain with a dot, no
    /// spaces or control characters, at most 254 characters (RFC 5321's path limit). Deliverability is
    /// not checked; full RFC 5322 syntax (quoted local parts, comments) is deliberately refused.
    pub fn parse(input: &str) -> Result<Self, AccountError> {
        let email = input.trim().to_lowercase();
        let invalid = || AccountError::InvalidEmail(input.trim().chars().take(100).collect());
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid());
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses passwords that are short, huge, or easy to guess (zxcvbn score below 3 of 4, which takes
/// the email into account), with zxcvbn's advice in the message.
pub fn check_password(password: &str, email: &Email) -> Result<(), AccountError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(format!(
            "the password is too long: use at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let local = email.as_str().split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(password, &[email.as_str(), local, "kiln"]);
    if u8::from(estimate.score()) >= 3 {
        return Ok(());
    }
    let mut message = "the password is too easy to guess".to_owned();
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!(": {warning}"));
        }
        let advice: Vec<String> = feedback
            .suggestions()
            .iter()
            .map(ToString::to_string)
            .collect();
        if !advice.is_empty() {
            message.push_str(&format!(" ({})", advice.join(" ")));
        }
    }
    Err(AccountError::WeakPassword(message))
}

async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(AccountError::Hashing)
    })
    .await
    .map_err(AccountError::HashingTask)?
}

async fn password_matches(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, checked against when the email is unknown so that a failed log-in
/// takes as long whether or not the account exists (no account enumeration by timing).
static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default()
        .hash_password(Uuid::new_v4().as_bytes())
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

/// Creates an account: a tenant and its first user.
pub async fn sign_up(app: &App, email: &Email, password: &str) -> Result<UserRecord, AccountError> {
    check_password(password, email)?;
    let password_hash = hash_password(password.to_owned()).await?;
    let new = NewUser {
        tenant_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        email: email.as_str(),
        password_hash: &password_hash,
    };
    match app.db.insert_user(&new).await {
        Ok(user) => {
            tracing::info!(user.id = %user.id, tenant.id = %user.tenant_id, "account created");
            Ok(user)
        }
        Err(DbError::Conflict { constraint }) if constraint == crate::db::USERS_EMAIL_KEY => {
            Err(AccountError::EmailTaken)
        }
        Err(error) => Err(error.into()),
    }
}

/// Checks an email and password.
pub async fn authenticate(
    app: &App,
    email: &Email,
    password: &str,
) -> Result<UserRecord, AccountError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::InvalidCredentials);
    }
    let user = app.db.user_by_email(email.as_str()).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| DECOY_HASH.clone(), |user| user.password_hash.clone());
    let matches = password_matches(password.to_owned(), hash).await;
    match user {
        Some(user) if matches => Ok(user),
        _ => Err(AccountError::InvalidCredentials),
    }
}

/// Changes a user's password after checking the current one, and ends every other session.
pub async fn change_password(
    app: &App,
    user: &UserRecord,
    session_id: Uuid,
    current: &str,
    new: &str,
) -> Result<u64, AccountError> {
    if !password_matches(current.to_owned(), user.password_hash.clone()).await {
        return Err(AccountError::WrongCurrentPassword);
    }
    let email = Email::parse(&user.email)?;
    check_password(new, &email)?;
    let hash = hash_password(new.to_owned()).await?;
    let revoked = app
        .db
        .change_password(user.tenant_id, user.id, &hash, session_id)
        .await?;
    tracing::info!(user.id = %user.id, sessions.revoked = revoked, "password changed");
    Ok(revoked)
}

/// What a session token says. Short field names keep the cookie small.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The user's tenant.
    pub tid: Uuid,
    /// The session row.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks session tokens. Cheap to clone.
#[derive(Clone)]
pub struct SessionKeys {
    inner: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // Only HS256 is accepted: a token naming another algorithm (`none`, RS256 with the secret as
        // a public key) is refused before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        SessionKeys {
            inner: Arc::new(Keys {
                encoding: EncodingKey::from_secret(bytes),
                decoding: DecodingKey::from_secret(bytes),
                validation,
                ttl,
            }),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// A token for `session`, valid for the configured lifetime (never past the session's end).
    pub fn issue(&self, session: &SessionRecord) -> Result<String, AccountError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let exp = (now + self.inner.ttl.as_secs() as i64).min(session.expires_at.unix_timestamp());
        let claims = Claims {
            sub: session.user_id,
            tid: session.tenant_id,
            sid: session.id,
            iat: now,
            exp,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(AccountError::Signing)
    }

    /// The claims of a genuine, unexpired token; `None` for anything else (tampered, expired,
    /// another algorithm, garbage).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// Whether a token this old should be replaced: past half its life.
    pub fn due_for_renewal(&self, claims: &Claims) -> bool {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        now - claims.iat >= (self.inner.ttl.as_secs() / 2) as i64
    }
}

/// Opens a session for a user who just proved who they are.
pub async fn start_session(
    app: &App,
    keys: &SessionKeys,
    user: &UserRecord,
) -> Result<(SessionRecord, String), AccountError> {
    let expires_at = OffsetDateTime::now_utc() + SESSION_MAX_AGE;
    let session = app
        .db
        .insert_session(Uuid::new_v4(), user.tenant_id, user.id, expires_at)
        .await?;
    let token = keys.issue(&session)?;
    Ok((session, token))
}

/// The live session and its user named by verified claims.
pub async fn resume_session(
    app: &App,
    claims: &Claims,
) -> Result<(SessionRecord, UserRecord), AccountError> {
    let session = app
        .db
        .live_session(claims.tid, claims.sub, claims.sid)
        .await?
        .ok_or(AccountError::SessionEnded)?;
    let user = app
        .db
        .user_of(claims.tid, claims.sub)
        .await?
        .ok_or(AccountError::SessionEnded)?;
    Ok((session, user))
}

/// Ends a session (log-out): its token stops working at once, wherever it is.
pub async fn log_out(app: &App, tenant_id: Uuid, session_id: Uuid) -> Result<(), AccountError> {
    app.db.revoke_session(tenant_id, session_id).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let good = [
            ("a@b.co", "a@b.co"),
            ("  Jane.Doe+kiln@Example.COM ", "jane.doe+kiln@example.com"),
            ("x@sub.example.org", "x@sub.example.org"),
        ];
        for (input, expected) in good {
            assert_eq!(Email::parse(input).unwrap().as_str(), expected, "{input}");
        }
        let bad = [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@b@example.com",
            "a@.example.com",
            "a@example..com",
            "a@-x.com",
        ];
        for input in bad {
            assert!(Email::parse(input).is_err(), "{input} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords() {
        let email = Email::parse("jane.doe@example.com").unwrap();
        for weak in [
            "short",
            "password123",
            "jane.doe@example.com",
            "qwertyuiop",
            "aaaaaaaaaaaaaaaa",
        ] {
            let error = check_password(weak, &email).unwrap_err().to_string();
            assert!(error.starts_with("the password is too"), "{weak}: {error}");
        }
        let huge = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(check_password(&huge, &email).is_err());
        for strong in ["correct horse battery staple", "kT9#vW2!pL6@rQ"] {
            assert!(check_password(strong, &email).is_ok(), "{strong}");
        }
    }

    fn keys(secret: &str, ttl: u64) -> SessionKeys {
        SessionKeys::new(&SecretString::from(secret), Duration::from_secs(ttl))
    }

    fn session() -> SessionRecord {
        SessionRecord {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            created_at: OffsetDateTime::now_utc(),
            expires_at: OffsetDateTime::now_utc() + SESSION_MAX_AGE,
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_forgeries() {
        let keys = keys("0123456789abcdef0123456789abcdef", 1800);
        let session = session();
        let token = keys.issue(&session).unwrap();
        let claims = keys.verify(&token).expect("a fresh token verifies");
        assert_eq!(
            (claims.sub, claims.tid, claims.sid),
            (session.user_id, session.tenant_id, session.id)
        );
        assert!(!keys.due_for_renewal(&claims));

        // Another key's token.
        let other = self::keys("fedcba9876543210fedcba9876543210", 1800);
        assert!(other.verify(&token).is_none());

        // A flipped payload byte.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload = parts[1].clone().into_bytes();
        payload[5] ^= 1;
        parts[1] = String::from_utf8(payload).unwrap();
        assert!(keys.verify(&parts.join(".")).is_none());

        // alg: none with the same claims.
        // Unpadded URL-safe base64, as JWTs use.
        let encode = |bytes: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let none_header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = encode(serde_json::to_string(&claims).unwrap().as_bytes());
        assert!(keys.verify(&format!("{none_header}.{body}.")).is_none());

        // Expired.
        let expired = Claims {
            iat: claims.iat - 4000,
            exp: claims.iat - 10,
            ..claims.clone()
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &keys.inner.encoding,
        )
        .unwrap();
        assert!(keys.verify(&token).is_none());

        // Garbage.
        for junk in ["", "a.b.c", "not a token", "...."] {
            assert!(keys.verify(junk).is_none(), "{junk}");
        }
    }
}
