//! Logical replication slots as a member reports them: on a primary, which follow a failover;
//! on a PostgreSQL 17+ standby, its synchronized copies and whether they are usable yet.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::{PgError, Result};

/// One logical slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalSlot {
    pub name: String,
    /// Created with `failover = true` (17+): standbys keep a copy in sync.
    pub failover: bool,
    /// A standby's copy, synchronized from the primary (17+).
    pub synced: bool,
    /// A synchronized copy a promotion would make usable: persistent, not invalidated. On a
    /// primary: the slot is not invalidated.
    pub ready: bool,
}

/// The logical slots of the server whose `server_version_num` is `version`.
pub async fn logical_slots(
    client: &Client,
    member: &str,
    version: i32,
) -> Result<Vec<LogicalSlot>> {
    let sql = if version >= 170000 {
        "SELECT slot_name::text, failover, synced, \
         NOT temporary AND invalidation_reason IS NULL \
         FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY 1"
    } else {
        "SELECT slot_name::text, false, false, wal_status IS DISTINCT FROM 'lost' \
         FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY 1"
    };
    let rows = client.query(sql, &[]).await.map_err(PgError::sql(member))?;
    Ok(rows
        .iter()
        .map(|r| LogicalSlot {
            name: r.get(0),
            failover: r.get(1),
            synced: r.get(2),
            ready: r.get(3),
        })
        .collect())
}
