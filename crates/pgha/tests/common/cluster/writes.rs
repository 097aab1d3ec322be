//! The test table: writes, reads, what was lost, and writers that keep writing.

use super::*;

use std::collections::BTreeSet;

use pgha_testkit::{connect, Writer, WriterOptions};

impl Cluster {
    /// Creates [`CREATE_TABLE`] on n1.
    pub async fn create_table(&self) {
        connect(&self.member_url("n1"))
            .await
            .batch_execute(CREATE_TABLE)
            .await
            .unwrap();
    }

    /// Inserts `ids` on `member`, which must acknowledge each.
    pub async fn write(&self, member: &str, stage: &str, ids: std::ops::Range<i64>) {
        let client = connect(&self.member_url(member)).await;
        for id in ids {
            client
                .execute("INSERT INTO t(id, stage) VALUES ($1, $2)", &[&id, &stage])
                .await
                .unwrap_or_else(|e| self.fail(&format!("write {id} on {member}: {e}")));
        }
    }

    /// `SHOW setting` on `member`.
    pub async fn show(&self, member: &str, setting: &str) -> String {
        connect(&self.member_url(member))
            .await
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap_or_else(|e| self.fail(&format!("SHOW {setting} on {member}: {e}")))
            .get(0)
    }

    /// How many of `ids` `member` holds.
    pub async fn count(&self, member: &str, ids: impl IntoIterator<Item = i64>) -> i64 {
        let ids: Vec<i64> = ids.into_iter().collect();
        connect(&self.member_url(member))
            .await
            .query_one("SELECT count(*) FROM t WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap_or_else(|e| self.fail(&format!("count on {member}: {e}")))
            .get(0)
    }

    /// The ids of `acked` that `member` does not hold.
    pub async fn lost(&self, member: &str, acked: &[i64]) -> Vec<i64> {
        let present: BTreeSet<i64> = connect(&self.member_url(member))
            .await
            .query("SELECT id FROM t WHERE id = ANY($1)", &[&acked])
            .await
            .unwrap_or_else(|e| self.fail(&format!("read the acknowledged rows on {member}: {e}")))
            .iter()
            .map(|r| r.get(0))
            .collect();
        acked
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect()
    }

    /// A writer through the read-write entry point, inserting into `t` from `first_id` on,
    /// connecting within `connect` and each write within `write`.
    pub fn entry_writer(&self, first_id: i64, connect: Duration, write: Duration) -> Writer {
        let insert = "INSERT INTO t(id, stage) VALUES ($1, 'writer')";
        let opts = WriterOptions {
            connect_timeout: connect,
            write_timeout: write,
            ..WriterOptions::new(insert, first_id)
        };
        Writer::to_url(self.up.url(None), opts)
    }

    /// A writer straight to whichever member leads and runs as primary (found with `pgha
    /// status`, reached with `pgha url --member`), reading the WAL position after each commit.
    pub fn primary_writer(&self, first_id: i64, pause: Duration) -> Writer {
        let dir = self.dir().to_string();
        let insert = "INSERT INTO t(id, stage) VALUES ($1, 'writer')";
        let opts = WriterOptions {
            pause,
            read_lsn: true,
            ..WriterOptions::new(insert, first_id)
        };
        Writer::start(opts, move || {
            let out = pgha(&["status", "--dir", &dir, "--json"]);
            let name = primary_of(&serde_json::from_slice(&out.stdout).ok()?)?;
            let url = pgha(&["url", "--password", "--dir", &dir, "--member", &name]);
            Some((
                name,
                String::from_utf8_lossy(&url.stdout).trim().to_string(),
            ))
        })
    }

    /// Waits until `writer` had `n` more writes acknowledged.
    pub async fn wait_writes(&self, writer: &Writer, n: usize, timeout: Duration) {
        if let Err(e) = writer.wait_more(n, timeout).await {
            self.fail(&e);
        }
    }
}
