//! API keys: create (shown once), list, revoke.

use super::format;
use super::{
    Chrome, CsrfForm, FieldErrors, Nav, PageResult, WebForm, WebUser, fail, redirect_with, render,
};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_control::api_keys::{self, KeyError};
use kiln_frontdoor::{ApiError, Ctx};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    /// The key just created: the only time its secret is shown.
    created: Option<(String, String)>,
    name: String,
    errors: FieldErrors,
}

impl KeysPage {
    /// Whether a key is live, to be revoked.
    fn any_live(&self) -> bool {
        self.keys.iter().any(|key| key.revoked.is_none())
    }
}

async fn rows(ctx: &Ctx, user: &WebUser) -> Result<Vec<KeyRow>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let keys = api_keys::list(&ctx.app, user.tenant_id).await?;
    Ok(keys
        .into_iter()
        .map(|key| KeyRow {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            created: format::when(key.created_at),
            last_used: key
                .last_used_at
                .map_or_else(|| "never".to_owned(), |at| format::relative(at, now)),
            revoked: key.revoked_at.map(format::when),
        })
        .collect())
}

pub async fn list(State(ctx): State<Ctx>, user: WebUser) -> PageResult {
    let keys = rows(&ctx, &user).await.map_err(fail)?;
    Ok(render(
        StatusCode::OK,
        &KeysPage {
            chrome: user.chrome(Nav::Keys),
            keys,
            created: None,
            name: String::new(),
            errors: FieldErrors::default(),
        },
    ))
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Creates a key and shows its secret on the response itself (no redirect: the secret must not be
/// stored anywhere to survive one, and the page is `no-store`).
pub async fn create(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<NewKeyForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let mut errors = FieldErrors::default();
    let mut created = None;
    match api_keys::create(
        &ctx.app,
        user.tenant_id,
        user.user.id,
        &form.name,
        &user.actor,
    )
    .await
    {
        Ok(key) => created = Some((key.record.name, key.secret)),
        Err(error @ KeyError::InvalidName) => errors.add("name", error.to_string()),
        Err(error) => return Err(fail(error)),
    }
    let keys = rows(&ctx, &user).await.map_err(fail)?;
    let status = if created.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        status,
        &KeysPage {
            chrome: user.chrome(Nav::Keys),
            keys,
            created,
            name: if errors.is_empty() {
                String::new()
            } else {
                form.name
            },
            errors,
        },
    ))
}

pub async fn revoke(
    State(ctx): State<Ctx>,
    user: WebUser,
    Path(id): Path<Uuid>,
    WebForm(form): WebForm<CsrfForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let record = api_keys::revoke(&ctx.app, user.tenant_id, id, &user.actor)
        .await
        .map_err(fail)?;
    Ok(redirect_with(
        "/keys",
        &format!(
            "Revoked the key “{}” ({}…); requests using it now fail.",
            record.name, record.prefix
        ),
    ))
}

pub async fn revoke_all(
    State(ctx): State<Ctx>,
    user: WebUser,
    WebForm(form): WebForm<CsrfForm>,
) -> PageResult {
    user.check_csrf(&ctx, &form.csrf)?;
    let revoked = api_keys::revoke_all(&ctx.app, user.tenant_id, &user.actor)
        .await
        .map_err(fail)?;
    let message = match revoked.len() {
        0 => "No key was live; nothing to revoke.".to_owned(),
        1 => "Revoked the one live key; requests using it now fail.".to_owned(),
        n => format!("Revoked all {n} live keys; requests using them now fail."),
    };
    Ok(redirect_with("/keys", &message))
}
