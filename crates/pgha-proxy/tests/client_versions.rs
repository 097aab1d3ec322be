//! psql of every supported PostgreSQL major version (14 to 18), each with its own libpq, through
//! the proxy terminating TLS in front of PostgreSQL 18 members: the proxy's name verified
//! (`sslmode=verify-full`), a SCRAM role authenticated by the proxy with libpq's default
//! channel binding, a read-write and a read-only session, COPY in and out (`\copy` from and to
//! a file, `COPY ... TO STDOUT`), direct TLS where libpq has it (17+), and Ctrl-C's cancel.
//! Needs what `scripts/install-deps.sh test` installs; a missing version fails, naming it.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::ca_cluster::{start_ca_cluster, CaCluster, APP_PASSWORD};
use common::clients::*;
use common::*;
use pgha_testkit::servers::{bin_dir, MAJORS};

fn cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-psql", &pg18_bin(), 1))
}

const ROWS: usize = 5000;

/// What psql `major` did wrong through the proxy (nothing when all went as it should).
async fn one_version(
    c: &CaCluster,
    p: &TestProxy,
    major: u32,
    bin: &Path,
    dir: &Path,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let rows_in = dir.join("rows.tsv");
    let rows_out = dir.join(format!("out-{major}.tsv"));
    let rw = format!("{} user=app", c.verify_full(p.rw));
    let ro = format!("{} user=app", c.verify_full(p.ro));
    // Read-write: a temporary table filled by `\copy ... from FILE` (COPY FROM STDIN on the
    // wire), read back by `\copy ... to FILE` (COPY TO STDOUT), in one session.
    let copy_in = format!("\\copy t from '{}'", rows_in.display());
    let copy_out = format!(
        "\\copy (select * from t order by id) to '{}'",
        rows_out.display()
    );
    let check = "select count(*), sum(id), pg_is_in_recovery(), \
                 (select ssl from pg_stat_ssl where pid = pg_backend_pid()) from t";
    let (ok, out, err, _) = psql_as(
        bin,
        &rw,
        APP_PASSWORD,
        &[
            "create temp table t(id int, v text)",
            &copy_in,
            &copy_out,
            check,
        ],
    )
    .await;
    let sum = ROWS * (ROWS + 1) / 2;
    if !ok || out.lines().last() != Some(&format!("{ROWS}|{sum}|f|t")) {
        wrong.push(format!("rw COPY: {out}{err}"));
    }
    let copied = std::fs::read_to_string(&rows_out).unwrap_or_default();
    if copied != std::fs::read_to_string(&rows_in).unwrap() {
        wrong.push(format!(
            "rw COPY out: {} bytes back, not the {ROWS} rows copied in",
            copied.len()
        ));
    }
    // Read-only: a standby, COPY TO STDOUT.
    let (ok, out, err, _) = psql_as(
        bin,
        &ro,
        APP_PASSWORD,
        &[
            "select pg_is_in_recovery()",
            "copy (select generate_series(1, 3)) to stdout",
        ],
    )
    .await;
    if !ok || out != "t\n1\n2\n3\n" {
        wrong.push(format!("ro: {out}{err}"));
    }
    if major >= 17 {
        let direct = format!("{rw} sslnegotiation=direct");
        let (ok, out, err, _) = psql_as(bin, &direct, APP_PASSWORD, &["select 1"]).await;
        if !ok || out != "1\n" {
            wrong.push(format!("direct TLS: {out}{err}"));
        }
    }
    // Ctrl-C: psql's cancel reaches the session's backend through the proxy.
    let su = format!("{} user=postgres", c.verify_full(p.rw));
    let (took, stderr) = psql_ctrl_c(bin, &su, c.port(0)).await;
    if !stderr.contains("canceling statement due to user request") || took >= CANCEL_WITHIN {
        wrong.push(format!("Ctrl-C: after {took:?}: {stderr}"));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_of_every_supported_version_works_through_the_proxy() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (1..=ROWS).map(|i| format!("{i}\tv{i}\n")).collect();
    std::fs::write(dir.path().join("rows.tsv"), rows).unwrap();
    let mut failures = Vec::new();
    for major in MAJORS {
        let bin = bin_dir(major);
        let version = stdout_of_success(
            &tokio::process::Command::new(bin.join("psql"))
                .arg("--version")
                .output()
                .await
                .unwrap(),
        );
        assert!(
            version.contains(&format!("(PostgreSQL) {major}.")),
            "{}: {version}",
            bin.display()
        );
        for what in one_version(c, &p, major, &bin, dir.path()).await {
            failures.push(format!("psql {major}: {what}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every app session was authenticated by the proxy itself (SCRAM with channel binding),
    // on both listeners.
    let snap = p.metrics.snapshot();
    for listener in ["rw", "ro"] {
        let l = snap.listener(listener).unwrap();
        assert!(l.scram_by_proxy >= MAJORS.len() as u64, "{listener}: {l:?}");
    }
}
