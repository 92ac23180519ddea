//! The audit log: who changed what in a tenant's account (domains, keys, password, purges and
//! warms), written by the operations themselves in the same transaction as the change (see
//! [`crate::db`]), read here.

use crate::App;
use crate::db::{AuditRecord, DbError};
use uuid::Uuid;

/// The tenant's audit log, newest first, continuing below the event id `before` when given.
pub async fn events(
    app: &App,
    tenant_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRecord>, DbError> {
    app.db.audit_events_of(tenant_id, before, limit).await
}
