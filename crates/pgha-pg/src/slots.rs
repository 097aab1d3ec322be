//! Physical replication slots on a member: the leader's, one per other member, and what a
//! standby drops; a slot PostgreSQL invalidated is replaced, never kept as if usable.

use tokio_postgres::Client;

use crate::error::{PgError, Result};
use crate::probe::first_column;

/// Creates the physical replication slot `slot`, reserving WAL from now, unless a usable one
/// exists; whether it made one. A slot PostgreSQL invalidated (`wal_status = 'lost'`: it
/// held back more WAL than `max_slot_wal_keep_size` allows, and the WAL is gone) streams
/// nothing ever again: it is dropped and made anew, so that its member, once re-cloned,
/// streams through it.
pub async fn ensure_slot(client: &Client, member: &str, slot: &str) -> Result<bool> {
    let lost: Option<bool> = client
        .query_opt(
            "SELECT wal_status IS NOT DISTINCT FROM 'lost' FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(PgError::sql(member))?
        .map(|row| row.get(0));
    if lost == Some(false) {
        return Ok(false);
    }
    if lost == Some(true) && drop_slot(client, member, slot).await? {
        tracing::warn!(
            "{member}: replication slot {slot} was invalidated (it held more WAL than \
             max_slot_wal_keep_size allows): made anew; the member it is for re-clones if the \
             WAL it needs is gone"
        );
    }
    match client
        .execute(
            "SELECT pg_create_physical_replication_slot($1, true)",
            &[&slot],
        )
        .await
    {
        Ok(_) => Ok(true),
        // Created meanwhile by another caller (the leader and a cloning member race for it).
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => Ok(false),
        Err(e) => Err(PgError::sql(member)(e)),
    }
}

/// Names of the usable physical replication slots on the server: an invalidated one
/// (`wal_status = 'lost'`) counts as none, so the leader makes it anew ([`ensure_slot`]).
pub async fn list_slots(client: &Client, member: &str) -> Result<Vec<String>> {
    first_column(
        client,
        member,
        "SELECT slot_name::text FROM pg_replication_slots \
         WHERE slot_type = 'physical' AND wal_status IS DISTINCT FROM 'lost' ORDER BY 1",
    )
    .await
}

/// Drops physical replication slot `slot` unless it is in use; true if it was dropped.
pub async fn drop_slot(client: &Client, member: &str, slot: &str) -> Result<bool> {
    let dropped = client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
            &[&slot],
        )
        .await
        .map_err(PgError::sql(member))?;
    Ok(dropped > 0)
}

/// On a PostgreSQL 17+ standby: drops the logical failover slots it kept from a time it was
/// primary (not synchronized, not in use). A slot of the same name as one of the primary's
/// would stop the standby from synchronizing any slot; the primary's are synchronized here
/// instead. Returns the names dropped.
pub async fn drop_stale_failover_slots(client: &Client, member: &str) -> Result<Vec<String>> {
    first_column(
        client,
        member,
        "SELECT slot_name::text, pg_drop_replication_slot(slot_name) IS NULL \
             FROM pg_replication_slots \
             WHERE slot_type = 'logical' AND failover AND NOT synced AND NOT active",
    )
    .await
}
