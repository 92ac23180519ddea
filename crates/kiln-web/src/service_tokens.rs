//! The render service's tokens: create (shown once), list with their last use, revoke; and how to
//! point a prerender middleware at Kiln.

use super::format;
use super::{
    Chrome, CsrfForm, FieldErrors, Nav, PageResult, WebForm, WebUser, fail, redirect_with, render,
};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_control::service_tokens::{self, MAX_RATE, NewToken, ServiceTokenError};
use kiln_frontdoor::{ApiError, Ctx};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    /// The rate and burst, or the gateways' defaults.
    pub limits: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "service_tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    /// The token just created, by name: the only time it is shown.
    created: Option<(String, String)>,
    /// Where customers' servers reach the render service (`KILN_SERVICE_HOST`); none when it is
    /// off.
    service_host: Option<String>,
    form: NewTokenForm,
    errors: FieldErrors,
}

fn limits(rate: Option<i32>, burst: Option<i32>) -> String {
    match (rate, burst) {
        (None, None) => "default".to_owned(),
        (Some(rate), None) => format!("{rate}/s"),
        (None, Some(burst)) => format!("default, burst {burst}"),
        (Some(rate), Some(burst)) => format!("{rate}/s, burst {burst}"),
    }
}

async fn rows(ctx: &Ctx, user: &WebUser) -> Result<Vec<TokenRow>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let tokens = service_tokens::list(&ctx.app, user.tenant_id).await?;
    Ok(tokens
        .into_iter()
        .map(|token| TokenRow {
            id: token.id,
            limits: limits(token.rate_per_second, token.burst),
            name: token.name,
            prefix: token.prefix,
            created: format::when(token.created_at),
            last_used: token
                .last_used_at
                .map_or_else(|| "never".to_owned(), |at| format::relative(at, now)),
            revoked: token.revoked_at.map(format::when),
        })
        .collect())
}

async fn page(
    ctx: &Ctx,
    user: &WebUser,
    status: StatusCode,
    created: Option<(String, String)>,
    form: NewTokenForm,
    errors: FieldErrors,
) -> PageResult {
    let tokens = rows(ctx, user).await.map_err(fail)?;
    Ok(render(
        status,
        &TokensPage {
            chrome: user.chrome(Nav::ServiceTokens),
            tokens,
            created,
            service_host: ctx.app.service_host.as_ref().map(ToString::to_string),
            form,
            errors,
        },
    ))
}

pub async fn list(State(ctx): State<Ctx>, user: WebUser) -> PageResult {
    let form = NewTokenForm::default();
    page(
        &ctx,
        &user,
        StatusCode::OK,
        None,
        form,
        FieldErrors::default(),
    )
    .await
}

/// The create form, as sent (the limits as typed, so a mistyped one is shown back).
#[derive(Deserialize, Default)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub rate_per_second: String,
    #[serde(default)]
    pub burst: String,
}

/// A limit field: blank for the gateways' default, else a whole number (the control plane checks
/// its range).
fn limit_field(
    errors: &mut FieldErrors,
    field: &'static str,
    text: &str,
) -> Result<Option<u32>, ()> {
    match text.trim() {
        "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| errors.add(field, limit_message())),
    }
}

fn limit_message() -> String {
    format!("must be a whole number between 1 and {MAX_RATE}, or empty")
}

/// Creates a token and shows it on the response itself (no redirect: the token must not be stored
/// anywhere to survive one, and the page is `no-store`).
pub async fn create(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<NewTokenForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let mut errors = FieldErrors::default();
    let rate = limit_field(&mut errors, "rate_per_second", &form.rate_per_second);
    let burst = limit_field(&mut errors, "burst", &form.burst);
    let mut created = None;
    if let (Ok(rate_per_second), Ok(burst)) = (rate, burst) {
        let request = NewToken {
            name: &form.name,
            rate_per_second,
            burst,
        };
        match service_tokens::create(
            &ctx.app,
            user.tenant_id,
            user.user.id,
            &request,
            &user.actor,
        )
        .await
        {
            Ok(token) => created = Some((token.record.name, token.secret)),
            Err(error @ ServiceTokenError::InvalidName) => errors.add("name", error.to_string()),
            Err(ServiceTokenError::InvalidLimit { field }) => errors.add(field, limit_message()),
            Err(error) => return Err(fail(error)),
        }
    }
    let (status, form) = if created.is_some() {
        (StatusCode::CREATED, NewTokenForm::default())
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, form)
    };
    page(&ctx, &user, status, created, form, errors).await
}

pub async fn revoke(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<CsrfForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let record = service_tokens::revoke(&ctx.app, user.tenant_id, id, &user.actor)
        .await
        .map_err(fail)?;
    Ok(redirect_with(
        "/service-tokens",
        &format!(
            "Revoked the token “{}” ({}…); the render service refuses it from now on.",
            record.name, record.prefix
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_people_say_them() {
        let cases = [
            (None, None, "default"),
            (Some(5), None, "5/s"),
            (None, Some(20), "default, burst 20"),
            (Some(5), Some(20), "5/s, burst 20"),
        ];
        for (rate, burst, expected) in cases {
            assert_eq!(limits(rate, burst), expected);
        }
    }
}
