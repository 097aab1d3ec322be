//! Issue 14: what pgha.toml says of members, beside their parameters. Callbacks on role
//! changes, as a DBA hooks a virtual IP or a pooler to them: the scripts of `[callbacks]` run
//! as the PostgreSQL OS user with `ACTION ROLE CLUSTER MEMBER` when PostgreSQL starts, and
//! when a member is promoted or demoted by a switchover. Tags: a `noloadbalance` standby
//! takes no read-only sessions and fails `/replica`. Both in a local cluster (`[tags.NAME]`
//! and `[callbacks]` in pgha.toml) and a distributed one (`[member]` tags and `[callbacks]`
//! in each node config).

mod common;
#[path = "common/dist.rs"]
mod dist;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

#[test]
fn callbacks_run_on_role_changes_and_tags_keep_reads_off_a_member() {
    let tmp = test_dir();
    let dir = tmp.path().join("hooks");
    let d = dir.to_str().unwrap();
    let base = UpProcess::create_stopped(&dir, 3);

    let (script, log) = write_hook(tmp.path());
    let config = dir.join("pgha.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[callbacks]\non_start = \"{s}\"\non_role_change = \"{s}\"\n\n[tags.n3]\nnoloadbalance = true\n",
        s = script.display()
    ));
    std::fs::write(&config, text).unwrap();

    let mut up = UpProcess::spawn(&dir, 3, base, &[]);
    up.wait_streaming(Duration::from_secs(90));

    // n3 is tagged noloadbalance: /replica says no, and read-only sessions all go to n2.
    let api = format!("127.0.0.1:{}", base + 2);
    let replica = |m: &str| {
        pgha_testkit::wait_until("an answer of /replica", Duration::from_secs(10), || {
            pgha_testkit::http("GET", &api, &format!("/replica?member={m}"), None, None)
                .map(|(code, _)| code)
        })
    };
    assert_eq!(replica("n3"), 503);
    let table = pgha_testkit::succeeded("pgha status", &pgha(&["status", "--dir", d]));
    assert!(table.contains("Tags: n3 noloadbalance"), "{table}");
    pgha_testkit::wait_until("n2 a replica", Duration::from_secs(20), || {
        (replica("n2") == 200).then_some(())
    });
    let ro = up
        .url(None)
        .replace(&format!(":{base}/"), &format!(":{}/", base + 1));
    let n2_port = members_port(&up, "n2");
    for _ in 0..6 {
        let port = pgha_testkit::wait_until("a read-only session", Duration::from_secs(20), || {
            let rows = pgha_testkit::run_sql(&ro, "SHOW port").ok()?;
            rows[0][0].clone()
        });
        assert_eq!(port, n2_port, "a read-only session reached n3");
    }
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    pgha_testkit::wait_until("on_start of both members", Duration::from_secs(20), || {
        let text = calls();
        (text.contains("on_start primary hooks n1")
            && text.contains("on_start standby hooks n2")
            && text.contains("on_start standby hooks n3"))
        .then_some(())
    });

    switchover_calls_role_changes(
        || pgha(&["switchover", "--dir", d, "--to", "n2"]),
        &log,
        "hooks",
        ("n1", "n2"),
    );
    // Nothing else is called: no stop hook was configured.
    assert!(!calls().contains("on_stop"), "{}", calls());
}

/// The callback script, and the log it appends its arguments to (where the PostgreSQL OS
/// user, which runs it, can write).
fn write_hook(root: &Path) -> (PathBuf, PathBuf) {
    let hooks = root.join("hook-log");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = hooks.join("calls");
    let script = root.join("hook.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

/// A switchover `from` → `to` calls on_role_change on both (retried: right after a restart
/// the leader may not have published `to` as streaming yet).
fn switchover_calls_role_changes(
    switchover: impl Fn() -> std::process::Output,
    log: &Path,
    cluster: &str,
    (from, to): (&str, &str),
) {
    pgha_testkit::wait_until(
        &format!("a switchover to {to}"),
        Duration::from_secs(20),
        || switchover().status.success().then_some(()),
    );
    pgha_testkit::wait_until(
        "on_role_change of both members",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            (text.contains(&format!("on_role_change primary {cluster} {to}"))
                && text.contains(&format!("on_role_change standby {cluster} {from}")))
            .then_some(())
        },
    );
}

/// The port member `name` listens on, from `pgha status --json`.
fn members_port(up: &UpProcess, name: &str) -> String {
    let status = up.status().unwrap();
    status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["port"].to_string())
        .unwrap()
}

#[test]
fn a_distributed_cluster_runs_callbacks_and_keeps_reads_off_a_tagged_member() {
    use dist::{AgentApi, AgentSet};
    let _serial = pgha_testkit::serial();
    let mut c = dist::DistCluster::prepare(&dist::Options::default());
    let (script, log) = write_hook(&c.root);
    for a in &c.agents {
        let mut text = std::fs::read_to_string(&a.config).unwrap();
        if a.name == "node3" {
            text = text.replace("[member]\n", "[member]\nnoloadbalance = true\n");
        }
        text.push_str(&format!(
            "\n[callbacks]\non_start = \"{s}\"\non_role_change = \"{s}\"\n",
            s = script.display()
        ));
        std::fs::write(&a.config, text).unwrap();
    }
    c.launch();
    // `wait_converged` asks /replica, which a noloadbalance member fails: ask the status.
    let converged = |c: &dist::DistCluster| {
        pgha_testkit::wait_until(
            "one primary, two streaming",
            Duration::from_secs(60),
            || {
                // Right after the launch no agent may answer yet: not an error, not yet.
                let out = c.cli(&["status", "--json"]);
                let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                let members = s["members"].as_array()?;
                let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
                let leader = s["leader"].as_str()?.to_string();
                (streaming == 2 && members.len() == 3).then_some(leader)
            },
        )
    };
    let mut leader = converged(&c);
    c.wait_bootstrapped(Duration::from_secs(30));
    if leader == "node3" {
        // The tagged member bootstrapped: /read-only answers for a leader; move it away.
        c.cli_ok(&["switchover", "--to", "node1"]);
        leader = pgha_testkit::wait_until("node1 leading", Duration::from_secs(60), || {
            let l = converged(&c);
            (l == "node1").then_some(l)
        });
    }

    // node3 is tagged noloadbalance: /replica and /read-only say no; status shows the tag.
    let node3 = c.agent("node3");
    assert_eq!(node3.get("/replica").map(|(code, _)| code), Some(503));
    assert_eq!(node3.get("/read-only").map(|(code, _)| code), Some(503));
    let table = c.cli_ok(&["status"]);
    assert!(table.contains("Tags: node3 noloadbalance"), "{table}");

    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    pgha_testkit::wait_until("on_start of every member", Duration::from_secs(20), || {
        let text = calls();
        c.agents
            .iter()
            // As what each started depends on who bootstrapped (and on the switchover
            // away from node3 if it did): either role.
            .all(|a| {
                ["primary", "standby"]
                    .iter()
                    .any(|role| text.contains(&format!("on_start {role} demo {}", a.name)))
            })
            .then_some(())
    });
    let target = if leader == "node2" { "node1" } else { "node2" };
    switchover_calls_role_changes(
        || c.cli(&["switchover", "--to", target]),
        &log,
        "demo",
        (&leader, target),
    );
    assert!(!calls().contains("on_stop"), "{}", calls());
}
