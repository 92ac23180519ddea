//! The render log as the dashboard's activity page filters it.

use super::{Db, DbError, RenderRecord};
use kiln_core::RenderVia;
use uuid::Uuid;

/// Which renders to show; `None` fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct RenderFilter {
    pub domain_id: Option<Uuid>,
    /// `stored`, `rendered` or `failed`.
    pub outcome: Option<String>,
    /// `desktop` or `mobile`.
    pub device: Option<String>,
    /// `bot`, `warm` or `preview`.
    pub purpose: Option<String>,
    /// A case-insensitive part of the bot's User-Agent, e.g. `googlebot`.
    pub user_agent: Option<String>,
    /// How the request that caused the render reached Kiln.
    pub via: Option<RenderVia>,
}

/// `text` with LIKE's wildcards escaped, so a search for `50%` means those characters.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl Db {
    /// The tenant's renders matching `filter`, newest first, continuing after the entry `before`
    /// (a stream id) when given.
    pub async fn renders_matching(
        &self,
        tenant_id: Uuid,
        filter: &RenderFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RenderRecord>, DbError> {
        let user_agent = filter
            .user_agent
            .as_deref()
            .map(|text| format!("%{}%", like_escape(text)));
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT stream_id, domain_id, at, url, device, purpose, outcome, status, reason, \
             duration_ms, bytes, user_agent, via FROM renders \
             WHERE tenant_id = $1 \
             AND ($2::uuid IS NULL OR domain_id = $2) \
             AND ($3::text IS NULL OR outcome = $3) \
             AND ($4::text IS NULL OR device = $4) \
             AND ($5::text IS NULL OR purpose = $5) \
             AND ($6::text IS NULL OR user_agent ILIKE $6) \
             {via} \
             AND ($7::text IS NULL OR (at, stream_id) < \
                  (SELECT at, stream_id FROM renders WHERE stream_id = $7 AND tenant_id = $1)) \
             ORDER BY at DESC, stream_id DESC LIMIT $8",
            via = super::activity::via_condition(filter.via),
        )))
        .bind(tenant_id)
        .bind(filter.domain_id)
        .bind(filter.outcome.as_deref())
        .bind(filter.device.as_deref())
        .bind(filter.purpose.as_deref())
        .bind(user_agent)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::like_escape(r"50%_off\"), r"50\%\_off\\");
    }
}
