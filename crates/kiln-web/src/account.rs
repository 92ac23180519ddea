//! Signing up, logging in and out, and changing the password.

use super::{
    Chrome, CsrfForm, FieldErrors, Flash, Nav, PageResult, WebForm, WebUser, fail, is_local_path,
    redirect_with, render,
};
use askama::Template;
use axum::Extension;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use kiln_control::accounts::{self, AccountError, Email};
use kiln_frontdoor::Ctx;
use kiln_frontdoor::auth::{append_cookie, cleared_cookie, request_cookie, session_cookie};
use kiln_frontdoor::csrf::{self, VISITOR_COOKIE};
use kiln_frontdoor::limits::client_ip;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    chrome: Chrome,
    email: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    email: String,
    created: String,
    errors: FieldErrors,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
    #[serde(default)]
    csrf: String,
}

/// The visitor's CSRF cookie value, and a `Set-Cookie` when it has to be created.
struct Visitor {
    value: String,
    new: Option<Cookie<'static>>,
}

fn visitor(ctx: &Ctx, headers: &HeaderMap) -> Visitor {
    match request_cookie(headers, VISITOR_COOKIE).filter(|v| v.len() >= 32) {
        Some(value) => Visitor { value, new: None },
        None => {
            let value = csrf::new_visitor_value();
            let cookie = Cookie::build((VISITOR_COOKIE, value.clone()))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(ctx.secure_cookies)
                .build();
            Visitor {
                value,
                new: Some(cookie),
            }
        }
    }
}

fn with_visitor(mut response: Response, visitor: Visitor) -> Response {
    if let Some(cookie) = visitor.new {
        append_cookie(&mut response, cookie);
    }
    response
}

fn next_or_home(next: &str) -> String {
    if is_local_path(next) && !next.starts_with("/login") && !next.starts_with("/signup") {
        next.to_owned()
    } else {
        "/domains".to_owned()
    }
}

pub async fn login_page(
    State(ctx): State<Ctx>,
    user: Result<WebUser, Response>,
    headers: HeaderMap,
    Extension(Flash(flash)): Extension<Flash>,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.next.unwrap_or_default();
    if user.is_ok() {
        return Redirect::to(&next_or_home(&next)).into_response();
    }
    let visitor = visitor(&ctx, &headers);
    let page = LoginPage {
        chrome: Chrome::anonymous(ctx.csrf.for_visitor(&visitor.value), flash),
        email: String::new(),
        next,
        error: None,
    };
    with_visitor(render(StatusCode::OK, &page), visitor)
}

pub async fn log_in(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    WebForm(form): WebForm<LoginForm>,
) -> Response {
    let visitor = visitor(&ctx, &headers);
    let again = |status: StatusCode, error: String, visitor: Visitor| {
        let page = LoginPage {
            chrome: Chrome::anonymous(ctx.csrf.for_visitor(&visitor.value), None),
            email: form.email.clone(),
            next: form.next.clone(),
            error: Some(error),
        };
        with_visitor(render(status, &page), visitor)
    };
    if !ctx.csrf.verify_visitor(&visitor.value, &form.csrf) {
        return again(
            StatusCode::FORBIDDEN,
            "The form had expired. Please try again.".to_owned(),
            visitor,
        );
    }
    let Ok(email) = Email::parse(&form.email) else {
        return again(
            StatusCode::UNAUTHORIZED,
            super::capitalise(&AccountError::InvalidCredentials.to_string()),
            visitor,
        );
    };
    let ip = client_ip(peer.ip(), &headers, &ctx.trusted_proxies);
    if let Err(wait) = ctx.account_limiter.check_log_in(email.as_str(), ip) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts for this account; try again in {wait} s."),
            visitor,
        );
    }
    let authenticated = accounts::authenticate(&ctx.app, &email, &form.password).await;
    if matches!(authenticated, Ok(_) | Err(AccountError::InvalidCredentials)) {
        ctx.account_limiter
            .log_in_ended(email.as_str(), ip, authenticated.is_ok());
    }
    let user = match authenticated {
        Ok(user) => user,
        Err(error @ AccountError::InvalidCredentials) => {
            tracing::info!(auth.outcome = "refused", "log-in refused");
            return again(
                StatusCode::UNAUTHORIZED,
                super::capitalise(&error.to_string()),
                visitor,
            );
        }
        Err(error) => return fail(error),
    };
    let token = match accounts::start_session(&ctx.app, &ctx.sessions, &user).await {
        Ok((_, token)) => token,
        Err(error) => return fail(error),
    };
    tracing::info!(user.id = %user.id, "logged in");
    let mut response = Redirect::to(&next_or_home(&form.next)).into_response();
    append_cookie(&mut response, session_cookie(&ctx, token));
    response
}

pub async fn signup_page(
    State(ctx): State<Ctx>,
    user: Result<WebUser, Response>,
    headers: HeaderMap,
) -> Response {
    if user.is_ok() {
        return Redirect::to("/domains").into_response();
    }
    let visitor = visitor(&ctx, &headers);
    let page = SignupPage {
        chrome: Chrome::anonymous(ctx.csrf.for_visitor(&visitor.value), None),
        email: String::new(),
        errors: FieldErrors::default(),
    };
    with_visitor(render(StatusCode::OK, &page), visitor)
}

pub async fn sign_up(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    WebForm(form): WebForm<SignupForm>,
) -> Response {
    let visitor = visitor(&ctx, &headers);
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if !ctx.csrf.verify_visitor(&visitor.value, &form.csrf) {
        errors.add("form", "the form had expired; please try again");
        status = StatusCode::FORBIDDEN;
    } else if form.password != form.password_confirm {
        errors.add("password_confirm", "the two passwords differ");
    } else {
        match Email::parse(&form.email) {
            Err(error) => errors.add("email", error.to_string()),
            Ok(email) => match accounts::sign_up(&ctx.app, &email, &form.password).await {
                Ok(user) => {
                    let token = match accounts::start_session(&ctx.app, &ctx.sessions, &user).await
                    {
                        Ok((_, token)) => token,
                        Err(error) => return fail(error),
                    };
                    tracing::info!(user.id = %user.id, "signed up");
                    let mut response =
                        redirect_with("/domains/new", "Welcome to Kiln! Add your first domain.");
                    append_cookie(&mut response, session_cookie(&ctx, token));
                    return response;
                }
                Err(error @ (AccountError::InvalidEmail(_) | AccountError::EmailTaken)) => {
                    errors.add("email", error.to_string());
                }
                Err(error @ AccountError::WeakPassword(_)) => {
                    errors.add("password", error.to_string());
                }
                Err(error) => return fail(error),
            },
        }
    }
    let page = SignupPage {
        chrome: Chrome::anonymous(ctx.csrf.for_visitor(&visitor.value), None),
        email: form.email,
        errors,
    };
    with_visitor(render(status, &page), visitor)
}

pub async fn log_out(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<CsrfForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    kiln_control::accounts::log_out(&ctx.app, user.tenant_id, user.session_id)
        .await
        .map_err(fail)?;
    let mut response = redirect_with("/login", "You are logged out.");
    append_cookie(&mut response, cleared_cookie(&ctx));
    Ok(response)
}

pub async fn page(user: WebUser) -> Response {
    let page = AccountPage {
        chrome: user.chrome(Nav::Account),
        created: super::format::when(user.user.created_at),
        email: user.user.email.clone(),
        errors: FieldErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn change_password(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<PasswordForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if form.new_password != form.new_password_confirm {
        errors.add("new_password_confirm", "the two new passwords differ");
    } else if let Err(wait) = ctx.account_limiter.check_password_change(&user.user.email) {
        status = StatusCode::TOO_MANY_REQUESTS;
        errors.add(
            "current_password",
            format!("too many attempts; try again in {wait} s"),
        );
    } else {
        match accounts::change_password(
            &ctx.app,
            &user.user,
            user.session_id,
            &form.current_password,
            &form.new_password,
        )
        .await
        {
            Ok(ended) => {
                let message = match ended {
                    0 => "Password changed.".to_owned(),
                    1 => "Password changed; your one other session was logged out.".to_owned(),
                    n => format!("Password changed; your {n} other sessions were logged out."),
                };
                return Ok(redirect_with("/account", &message));
            }
            Err(error @ AccountError::WrongCurrentPassword) => {
                status = StatusCode::UNAUTHORIZED;
                errors.add("current_password", error.to_string());
            }
            Err(error @ AccountError::WeakPassword(_)) => {
                errors.add("new_password", error.to_string());
            }
            Err(error) => return Err(fail(error)),
        }
    }
    let page = AccountPage {
        chrome: user.chrome(Nav::Account),
        created: super::format::when(user.user.created_at),
        email: user.user.email.clone(),
        errors,
    };
    Ok(render(status, &page))
}
