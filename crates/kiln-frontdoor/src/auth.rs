//! Who is calling: an API key (`Authorization: Bearer kiln_live_…`) or a session cookie, resolved
//! once per request by [`authenticate`] and read by the [`Caller`] and [`SessionUser`] extractors.
//! The caller is limited per API key or user once known (see [`crate::limits`]).

use crate::ApiError;
use crate::Ctx;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use kiln_control::accounts::{self, AccountError};
use kiln_control::api_keys;
use kiln_control::db::UserRecord;
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "kiln_session";

/// An authenticated caller. Every tenant-owned query takes `tenant_id` from here, never from input.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub principal: Principal,
}

#[derive(Clone, Debug)]
pub enum Principal {
    User {
        user: Box<UserRecord>,
        session_id: Uuid,
    },
    ApiKey {
        id: Uuid,
    },
}

impl Caller {
    /// Who did it, as the audit log records it.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::User { user, .. } => format!("user:{}", user.id),
            Principal::ApiKey { id } => format!("api_key:{id}"),
        }
    }
}

/// What the authentication middleware found.
#[derive(Clone, Debug)]
enum Auth {
    Anonymous,
    Refused(&'static str),
    Unavailable,
    Caller(Caller),
}

/// A request from a logged-in user (a session, not an API key): what managing keys and the
/// password requires, so that a leaked key cannot mint more keys.
pub struct SessionUser {
    pub caller: Caller,
    pub user: UserRecord,
    pub session_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Auth>() {
            Some(Auth::Caller(caller)) => Ok(caller.clone()),
            Some(Auth::Refused(reason)) => Err(ApiError::unauthorized(*reason)),
            Some(Auth::Unavailable) => Err(ApiError::unavailable(
                "the database is unavailable, so the request cannot be authenticated",
            )),
            Some(Auth::Anonymous) | None => Err(ApiError::unauthorized(
                "authenticate with `Authorization: Bearer <API key>` or log in",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match &caller.principal {
            Principal::User { user, session_id } => Ok(SessionUser {
                user: (**user).clone(),
                session_id: *session_id,
                caller: caller.clone(),
            }),
            Principal::ApiKey { .. } => Err(ApiError::forbidden(
                "this endpoint needs a logged-in user; API keys cannot manage keys or passwords",
            )),
        }
    }
}

/// Resolves the caller before the handler runs, and renews a session token past half its life on
/// the way out.
pub async fn authenticate(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    let (auth, renewal) = resolve(&ctx, req.headers()).await;
    if let Auth::Caller(caller) = &auth
        && let Err(wait) = ctx.caller_limiter.check(caller.limit_key())
    {
        tracing::debug!(caller = %caller.actor(), wait_secs = wait, "API rate limit reached");
        return over_rate_limit(caller, wait).into_response();
    }
    req.extensions_mut().insert(auth);
    let mut response = next.run(req).await;
    let handler_set_cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(SESSION_COOKIE.as_bytes()));
    if let Some(token) = renewal
        && !handler_set_cookie
    {
        append_cookie(&mut response, session_cookie(&ctx, token));
    }
    response
}

async fn resolve(ctx: &Ctx, headers: &HeaderMap) -> (Auth, Option<String>) {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| api_keys::looks_like_key(key));
        let Some(key) = key else {
            return (
                Auth::Refused("the Authorization header must be `Bearer kiln_live_…`"),
                None,
            );
        };
        return match api_keys::use_key(&ctx.app, key).await {
            Ok(Some(record)) => (
                Auth::Caller(Caller {
                    tenant_id: record.tenant_id,
                    principal: Principal::ApiKey { id: record.id },
                }),
                None,
            ),
            Ok(None) => (
                Auth::Refused("the API key is not valid or has been revoked"),
                None,
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot check an API key");
                (Auth::Unavailable, None)
            }
        };
    }

    let Some(token) = session_token(headers) else {
        return (Auth::Anonymous, None);
    };
    let Some(claims) = ctx.sessions.verify(&token) else {
        return (
            Auth::Refused("the session has expired or is not valid; log in again"),
            None,
        );
    };
    match accounts::resume_session(&ctx.app, &claims).await {
        Ok((session, user)) => {
            let renewal = if ctx.sessions.due_for_renewal(&claims) {
                ctx.sessions.issue(&session).ok()
            } else {
                None
            };
            let caller = Caller {
                tenant_id: user.tenant_id,
                principal: Principal::User {
                    user: Box::new(user),
                    session_id: session.id,
                },
            };
            (Auth::Caller(caller), renewal)
        }
        Err(AccountError::SessionEnded) => {
            (Auth::Refused("the session has ended; log in again"), None)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot check a session");
            (Auth::Unavailable, None)
        }
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    request_cookie(headers, SESSION_COOKIE)
}

/// The value of the request's cookie `name`.
pub fn request_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| Cookie::parse(pair.trim()).ok())
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// The session cookie: `HttpOnly` (no script can read it), `SameSite=Lax` (not sent on cross-site
/// POSTs), `Secure` when the dashboard is served over https.
pub fn session_cookie(ctx: &Ctx, token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(ctx.secure_cookies)
        .max_age(time::Duration::seconds(ctx.sessions.ttl().as_secs() as i64))
        .build()
}

/// A cookie that deletes the session cookie.
pub fn cleared_cookie(ctx: &Ctx) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(ctx.secure_cookies)
        .max_age(time::Duration::ZERO)
        .build()
}

pub fn append_cookie(response: &mut Response, cookie: Cookie<'static>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A caller over its API rate limit (see [`crate::limits::CallerLimiter`]).
fn over_rate_limit(caller: &Caller, retry_after: u64) -> ApiError {
    let who = match caller.principal {
        Principal::ApiKey { .. } => "this API key",
        Principal::User { .. } => "this user",
    };
    let retry_after = retry_after.max(1);
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for {who}; try again in {retry_after} s"),
        )
    }
}

impl Caller {
    /// Whose requests these are, for the per-caller limit: the API key, or the user.
    fn limit_key(&self) -> Uuid {
        match &self.principal {
            Principal::User { user, .. } => user.id,
            Principal::ApiKey { id } => *id,
        }
    }
}
