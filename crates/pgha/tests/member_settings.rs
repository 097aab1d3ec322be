//! Issue 14: what pgha.toml says of members, beside their parameters. Callbacks on role
//! changes, as a DBA hooks a virtual IP or a pooler to them: the scripts of `[callbacks]` run
//! as the PostgreSQL OS user with `ACTION ROLE CLUSTER MEMBER` when PostgreSQL starts, and
//! when a member is promoted or demoted by a switchover. Tags: a `noloadbalance` standby
//! takes no read-only sessions and fails `/replica`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

#[test]
fn callbacks_run_on_role_changes_and_tags_keep_reads_off_a_member() {
    let tmp = test_dir();
    let dir = tmp.path().join("hooks");
    let d = dir.to_str().unwrap();
    let mut up = UpProcess::spawn(&dir, 3, free_base_port(3), &[]);
    up.wait_streaming(Duration::from_secs(90));
    let base = up.base;
    assert_eq!(up.terminate(), Some(0), "{}", up.log());
    drop(up);

    // The script appends its arguments to a log the PostgreSQL OS user can write.
    let hooks = tmp.path().join("hook-log");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = hooks.join("calls");
    let script = tmp.path().join("hook.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
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

    // Right after a restart the leader may not have published n2 as streaming yet.
    pgha_testkit::wait_until("a switchover to n2", Duration::from_secs(20), || {
        pgha(&["switchover", "--dir", d, "--to", "n2"])
            .status
            .success()
            .then_some(())
    });
    pgha_testkit::wait_until(
        "on_role_change of both members",
        Duration::from_secs(30),
        || {
            let text = calls();
            (text.contains("on_role_change primary hooks n2")
                && text.contains("on_role_change standby hooks n1"))
            .then_some(())
        },
    );
    // Nothing else is called: no stop hook was configured.
    assert!(!calls().contains("on_stop"), "{}", calls());
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
