//! `ALTER SYSTEM` over the parameters pgha owns: which of them `postgresql.auto.conf` sets
//! (PostgreSQL reads it after pgha's own file), and resetting them.

use tokio_postgres::Client;

use crate::error::{PgError, Result};

/// The parameters among `owned` that `ALTER SYSTEM` set (`postgresql.auto.conf`, which
/// PostgreSQL reads last): as the files say now, applied yet or not.
pub async fn set_by_alter_system(
    client: &Client,
    member: &str,
    owned: &[&str],
) -> Result<Vec<String>> {
    let owned: Vec<String> = owned.iter().map(|p| p.to_string()).collect();
    let rows = client
        .query(
            "SELECT DISTINCT name::text FROM pg_file_settings \
             WHERE sourcefile LIKE '%/postgresql.auto.conf' AND name = ANY($1) ORDER BY 1",
            &[&owned],
        )
        .await
        .map_err(PgError::sql(member))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `ALTER SYSTEM RESET` each of `parameters` (names from pgha's own list, never a user's
/// text), then a reload: pgha's file speaks for them again.
pub async fn reset_alter_system(client: &Client, member: &str, parameters: &[&str]) -> Result<()> {
    for parameter in parameters {
        client
            .batch_execute(&format!("ALTER SYSTEM RESET {parameter}"))
            .await
            .map_err(PgError::sql(member))?;
    }
    client
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .map_err(PgError::sql(member))?;
    Ok(())
}
