//! PostgreSQL clients for tests: connecting (bounded or not), simple queries, rows, LSNs.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A connection to a libpq URI or key/value conninfo; panics when there is none.
pub async fn connect(url: &str) -> Client {
    connect_within(url, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A connection within `timeout`, or why not (the server's message when it sent one).
pub async fn connect_within(url: &str, timeout: Duration) -> Result<Client, String> {
    let (client, conn) = tokio::time::timeout(timeout, tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| format!("connect timed out after {timeout:?}"))?
        .map_err(|e| format!("connect: {}", pg_error(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A connection within `timeout`, or `None`.
pub async fn try_connect(url: &str, timeout: Duration) -> Option<Client> {
    connect_within(url, timeout).await.ok()
}

/// The first column of the one row `sql` returns; panics, naming the statement, on an error.
pub async fn query_value<T: FromSqlOwned>(client: &Client, sql: &str) -> T {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The first column of every row `sql` returns; panics, naming the statement, on an error.
pub async fn query_column<T: FromSqlOwned>(client: &Client, sql: &str) -> Vec<T> {
    let rows = client.query(sql, &[]).await;
    let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|row| row.get(0)).collect()
}

/// Whether the value `sql` answers on `url` (first column of its one row, on a fresh
/// connection every 100 ms) satisfies `ok` within `timeout`.
pub async fn value_becomes<T: FromSqlOwned>(
    url: &str,
    sql: &str,
    timeout: Duration,
    ok: impl Fn(&T) -> bool,
) -> bool {
    let ok = &ok;
    let check = || async move {
        let client = try_connect(url, Duration::from_secs(3)).await?;
        let row = client.query_one(sql, &[]).await.ok()?;
        ok(&row.get::<_, T>(0)).then_some(())
    };
    crate::poll_async(timeout, Duration::from_millis(100), check)
        .await
        .is_some()
}

/// Runs `sql`, which the server must refuse because the session is read-only.
pub async fn assert_read_only(client: &Client, sql: &str) {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("a write accepted by a read-only session");
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{sql}: {err}"
    );
}

/// The server's message when there is one ("sorry, too many clients already"), else the error.
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The rows of a simple-protocol answer, as text.
pub fn simple_rows(msgs: Vec<SimpleQueryMessage>) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// A single-threaded tokio runtime, for SQL from a plain thread.
pub fn small_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `query` (simple protocol) on a fresh connection from the calling thread (connect bound
/// 3 s, query 5 s): its rows as text, or why not.
pub fn run_sql(conninfo: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    small_runtime().block_on(async {
        let client = connect_within(conninfo, Duration::from_secs(3)).await?;
        let msgs = tokio::time::timeout(Duration::from_secs(5), client.simple_query(query))
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| pg_error(&e))?;
        Ok(simple_rows(msgs))
    })
}

/// Application names streaming from the PostgreSQL at `url` (empty when it cannot be reached
/// within 3 s).
pub async fn streaming_standbys(url: &str) -> BTreeSet<String> {
    let Some(client) = try_connect(url, Duration::from_secs(3)).await else {
        return BTreeSet::new();
    };
    client
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// Row count and an md5 over every row of table `t(id, stage)`, in id order.
pub async fn checksum(url: &str) -> Option<(i64, String)> {
    let client = try_connect(url, Duration::from_secs(3)).await?;
    let row = client
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(id::text || ':' || stage, ',' ORDER BY id)), '') FROM t",
            &[],
        )
        .await
        .ok()?;
    Some((row.get(0), row.get(1)))
}

/// An LSN as PostgreSQL prints it (`16/B374D848`), as a number.
pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// An LSN as PostgreSQL prints it.
pub fn fmt_lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff)
}
