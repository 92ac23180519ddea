//! `/api/v1/auth/…`: sign-up, log-in, log-out, the current user, password changes.

use crate::extract::ApiJson;
use crate::responses::{JsonBodyErrors, SessionErrors};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_control::accounts::{self, AccountError, Email};
use kiln_control::db::UserRecord;
use kiln_frontdoor::ApiError;
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::{SessionUser, append_cookie, cleared_cookie, session_cookie};
use kiln_frontdoor::limits::client_ip;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(example = "jane@example.com")]
    pub email: String,
    /// At least 10 characters and hard to guess.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// The logged-in user.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        UserView {
            id: user.id,
            tenant_id: user.tenant_id,
            email: user.email.clone(),
            created_at: user.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    /// How many other sessions were logged out.
    pub sessions_revoked: u64,
}

/// Creates an account (a tenant and its user) and logs it in.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created; the session cookie is set", body = UserView),
        (status = 409, description = "The email is taken", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "Invalid email or weak password, or a body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = kiln_frontdoor::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        JsonBodyErrors,
    ))]
pub async fn sign_up(
    State(ctx): State<Ctx>,
    ApiJson(input): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&input.email)?;
    let user = accounts::sign_up(&ctx.app, &email, &input.password).await?;
    logged_in(&ctx, &user, StatusCode::CREATED).await
}

/// Logs in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = UserView),
        (status = 401, description = "Wrong email or password (a malformed email is a wrong one)", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "A body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        (status = 429, description = "Too many attempts from this address (for this account, or in all), or too many failed ones for this account from an address that failed before", body = kiln_frontdoor::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        JsonBodyErrors,
    ))]
pub async fn log_in(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&input.email).map_err(|_| AccountError::InvalidCredentials)?;
    let ip = client_ip(peer.ip(), &headers, &ctx.trusted_proxies);
    ctx.account_limiter
        .check_log_in(email.as_str(), ip)
        .map_err(ApiError::too_many)?;
    let authenticated = accounts::authenticate(&ctx.app, &email, &input.password).await;
    if matches!(authenticated, Ok(_) | Err(AccountError::InvalidCredentials)) {
        ctx.account_limiter
            .log_in_ended(email.as_str(), ip, authenticated.is_ok());
    }
    let user = match authenticated {
        Ok(user) => user,
        Err(error) => {
            tracing::info!(auth.outcome = "refused", "log-in refused");
            return Err(error.into());
        }
    };
    let response = logged_in(&ctx, &user, StatusCode::OK).await?;
    tracing::info!(user.id = %user.id, "logged in");
    Ok(response)
}

/// Starts a session for `user` and answers with the user and the session's cookie.
async fn logged_in(ctx: &Ctx, user: &UserRecord, status: StatusCode) -> Result<Response, ApiError> {
    let (_, token) = accounts::start_session(&ctx.app, &ctx.sessions, user).await?;
    let mut response = (status, axum::Json(UserView::from(user))).into_response();
    append_cookie(&mut response, session_cookie(ctx, token));
    Ok(response)
}

/// Ends the current session and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security(("session" = [])),
    responses(
        (status = 204, description = "Logged out"),
        SessionErrors,
    ))]
pub async fn log_out(State(ctx): State<Ctx>, who: SessionUser) -> Result<Response, ApiError> {
    accounts::log_out(&ctx.app, who.caller.tenant_id, who.session_id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    append_cookie(&mut response, cleared_cookie(&ctx));
    Ok(response)
}

/// The logged-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    security(("session" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        SessionErrors,
    ))]
pub async fn me(who: SessionUser) -> axum::Json<UserView> {
    axum::Json(UserView::from(&who.user))
}

/// Changes the password; every other session is logged out.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordChange,
    security(("session" = [])),
    responses(
        (status = 200, description = "Changed", body = PasswordChanged),
        (status = 401, description = "Not logged in, or the current password is wrong", body = kiln_frontdoor::ErrorBody),
        (status = 403, description = "Called with an API key", body = kiln_frontdoor::ErrorBody),
        (status = 422, description = "The new password is too weak, or a body of the wrong shape", body = kiln_frontdoor::ErrorBody),
        (status = 429, description = "Too many attempts for this account", body = kiln_frontdoor::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        JsonBodyErrors,
    ))]
pub async fn change_password(
    State(ctx): State<Ctx>,
    who: SessionUser,
    ApiJson(input): ApiJson<PasswordChange>,
) -> Result<axum::Json<PasswordChanged>, ApiError> {
    ctx.account_limiter
        .check_password_change(&who.user.email)
        .map_err(ApiError::too_many)?;
    let sessions_revoked = accounts::change_password(
        &ctx.app,
        &who.user,
        who.session_id,
        &input.current_password,
        &input.new_password,
    )
    .await?;
    Ok(axum::Json(PasswordChanged { sessions_revoked }))
}
