//! The audit log: who changed what, and how.

use super::format;
use super::{Chrome, Nav, PageResult, WebUser, fail, render};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use kiln_control::db::AuditRecord;
use kiln_frontdoor::Ctx;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

const PAGE_SIZE: i64 = 50;

pub struct EventRow {
    pub when: String,
    pub iso: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `field: before → after`, one per changed value.
    pub changes: Vec<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    events: Vec<EventRow>,
    next: Option<i64>,
    paged: bool,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

pub async fn page(
    State(ctx): State<Ctx>,
    user: WebUser,
    Query(query): Query<AuditQuery>,
) -> PageResult {
    let records =
        kiln_control::audit::events(&ctx.app, user.tenant_id, query.before, PAGE_SIZE + 1)
            .await
            .map_err(fail)?;
    let keys: HashMap<Uuid, String> = kiln_control::api_keys::list(&ctx.app, user.tenant_id)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|key| (key.id, format!("API key “{}” ({}…)", key.name, key.prefix)))
        .collect();
    let more = records.len() as i64 > PAGE_SIZE;
    let shown: Vec<&AuditRecord> = records.iter().take(PAGE_SIZE as usize).collect();
    let next = more.then(|| shown.last().map(|r| r.id)).flatten();
    let events = shown
        .into_iter()
        .map(|record| EventRow {
            when: format::when(record.created_at),
            iso: format::iso(record.created_at),
            actor: actor(&record.actor, &user, &keys),
            action: record.action.clone(),
            target: record.target.clone(),
            changes: changes(record.before.as_ref(), record.after.as_ref()),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            chrome: user.chrome(Nav::Audit),
            events,
            next,
            paged: query.before.is_some(),
        },
    ))
}

/// The audit log's actor as a person reads it.
fn actor(actor: &str, user: &WebUser, keys: &HashMap<Uuid, String>) -> String {
    match actor.split_once(':') {
        Some(("user", id)) if id == user.user.id.to_string() => user.user.email.clone(),
        Some(("user", _)) => "another user".to_owned(),
        Some(("api_key", id)) => Uuid::parse_str(id)
            .ok()
            .and_then(|id| keys.get(&id).cloned())
            .unwrap_or_else(|| "an API key".to_owned()),
        Some(("system", "verifier")) => "Kiln (DNS check)".to_owned(),
        Some(("operator", _)) => "Kiln operator".to_owned(),
        _ => actor.to_owned(),
    }
}

/// Flattens a JSON document into `a.b.c` → scalar text.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        Value::String(text) => {
            out.insert(prefix.to_owned(), text.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// What an event changed: every value that differs between before and after (or, for events
/// without a before, what was recorded).
pub fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    if let Some(before) = before {
        flatten("", before, &mut old);
    }
    if let Some(after) = after {
        flatten("", after, &mut new);
    }
    let mut fields: Vec<&String> = old.keys().chain(new.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|field| !matches!(field.as_str(), "id" | "tenant_id"))
        .filter_map(|field| match (old.get(field), new.get(field)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!("{field}: {a} → {b}")),
            (None, Some(b)) if before.is_some() => Some(format!("{field}: (none) → {b}")),
            (None, Some(b)) => Some(format!("{field}: {b}")),
            (Some(a), None) if after.is_some() => Some(format!("{field}: {a} → (none)")),
            (Some(a), None) => Some(format!("{field}: {a}")),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::changes;
    use serde_json::json;

    #[test]
    fn changes_name_each_changed_value() {
        let before = json!({"id": 1, "origin": "https://a.example", "settings": {"cache_ttl_secs": 3600, "blocking": {"images": true}}});
        let after = json!({"id": 1, "origin": "https://a.example", "settings": {"cache_ttl_secs": 60, "blocking": {"images": false}}});
        assert_eq!(
            changes(Some(&before), Some(&after)),
            vec![
                "settings.blocking.images: true → false",
                "settings.cache_ttl_secs: 3600 → 60"
            ]
        );
        assert_eq!(
            changes(None, Some(&json!({"purged": 3, "prefix": "/blog/"}))),
            vec!["prefix: /blog/", "purged: 3"]
        );
    }
}
