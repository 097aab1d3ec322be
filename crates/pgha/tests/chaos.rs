//! `pgha chaos` against a real 3-member `pgha up`: a short synchronous campaign loses nothing,
//! exits 0 and puts the cluster back (also when interrupted); an unhealthy cluster is refused;
//! an asynchronous cluster whose standbys are held back loses writes when its primary crashes,
//! and `pgha chaos` must say so and exit 4; against three `pgha agent`s on etcd, a campaign
//! through the agents' API and a pause of this host's agent loses nothing either; on test hosts
//! (network namespaces), an isolated leader host and a fault command that stops etcd neither.
//!
//! The tests of this file run one at a time (a 2-core machine runs one 3-member cluster well).

mod common;
#[path = "common/dist.rs"]
mod dist;
#[path = "common/netns.rs"]
mod netns;

#[path = "chaos/agents.rs"]
mod agents;
#[path = "chaos/campaigns.rs"]
mod campaigns;
#[path = "chaos/held_back.rs"]
mod held_back;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::cluster::Cluster;
use common::{pgha, pgha_bin, stderr_of};
use pgha_testkit::{connect, refused};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);

/// `pgha chaos --dir DIR ARGS...` to completion.
fn chaos(c: &Cluster, args: &[&str]) -> Output {
    let mut all = vec!["chaos", "--dir", c.dir()];
    all.extend(args);
    pgha(&all)
}

/// `pgha chaos --dir DIR ARGS...` in the background, stdout and stderr into files in `dir`.
fn spawn_chaos(c: &Cluster, dir: &Path, args: &[&str]) -> Child {
    let out = std::fs::File::create(dir.join("chaos.out")).unwrap();
    let err = std::fs::File::create(dir.join("chaos.err")).unwrap();
    Command::new(pgha_bin())
        .args(["chaos", "--dir", c.dir()])
        .args(args)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn pgha chaos")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The JSON a campaign printed; fails with its output otherwise.
fn summary_of(stdout: &str, stderr: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("no JSON from pgha chaos ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

/// Checks the promises a passed campaign reports, and that its numbers hang together.
fn assert_passed(j: &Value, faults: usize, context: &str) {
    assert_eq!(j["verdict"], "passed", "{context}");
    assert_eq!(j["lost"], 0, "{context}");
    assert_eq!(j["two_writers"].as_array().unwrap().len(), 0, "{context}");
    assert!(j["broken"].as_array().unwrap().is_empty(), "{context}");
    let list = j["faults"].as_array().unwrap();
    assert!(list.len() >= faults, "{context}");
    for f in list {
        assert!(
            f["recovered"].is_i64(),
            "fault not recovered: {f}\n{context}"
        );
        assert!(f["unavailable_ms"].as_f64().is_some(), "{context}");
        assert!(f["rejoin_ms"].as_f64().unwrap() <= f["recovery_ms"].as_f64().unwrap());
    }
    let acked = j["writes_acknowledged"].as_u64().unwrap();
    assert!(acked > 100, "only {acked} writes acknowledged\n{context}");
    assert!(acked <= j["writes_attempted"].as_u64().unwrap());
    let by_member: u64 = j["acknowledged_by_member"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_member, acked, "{context}");
    // A fault that moves the leader moves the writes: someone else answered them.
    let moved = list.iter().any(|f| f["leader_after"] != f["leader_before"]);
    if moved {
        assert!(
            j["acknowledged_by_member"].as_object().unwrap().len() >= 2,
            "{context}"
        );
    }
    let per_kind: u64 = j["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["injected"].as_u64().unwrap())
        .sum();
    assert_eq!(per_kind as usize, list.len(), "{context}");
    let cleanup: Vec<&str> = j["cleanup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(cleanup.contains(&"dropped pgha_chaos_writes"), "{context}");
}

/// Waits until n1 leads again with both standbys streaming, and the campaign's table is gone.
async fn assert_put_back(c: &Cluster) {
    c.wait_converged("n1", &[]).await;
    let table: Option<String> = connect(&c.member_url("n1"))
        .await
        .query_one("SELECT to_regclass('pgha_chaos_writes')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(table, None, "the campaign's table was left behind");
}

#[test]
fn help_teaches_the_faults_and_the_exit_status() {
    let out = pgha(&["chaos", "--help"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "kill-primary",
        "crash-primary",
        "restart-standby",
        "change-config",
        "isolate-host",
        "lossy-host",
        "--report",
        "--seed",
        "Exit status",
        "refuses to start unless the cluster is healthy",
    ] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
    let out = pgha(&[
        "chaos",
        "--dir",
        "/nonexistent",
        "--faults",
        "unplug-the-moon",
    ]);
    let why = refused("an unknown fault", &out);
    assert!(why.contains("unplug-the-moon"), "{why}");
}
