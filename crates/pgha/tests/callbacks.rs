//! Issue 14: callbacks on role changes, as a DBA hooks a virtual IP or a pooler to them: the
//! scripts of `[callbacks]` in pgha.toml run as the PostgreSQL OS user with
//! `ACTION ROLE CLUSTER MEMBER` when PostgreSQL starts, and when a member is promoted or
//! demoted by a switchover.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

#[test]
fn callbacks_run_on_start_and_on_each_role_change() {
    let tmp = test_dir();
    let dir = tmp.path().join("hooks");
    let d = dir.to_str().unwrap();
    let mut up = UpProcess::spawn(&dir, 2, free_base_port(2), &[]);
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
        "\n[callbacks]\non_start = \"{s}\"\non_role_change = \"{s}\"\n",
        s = script.display()
    ));
    std::fs::write(&config, text).unwrap();

    let mut up = UpProcess::spawn(&dir, 2, base, &[]);
    up.wait_streaming(Duration::from_secs(90));
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    pgha_testkit::wait_until("on_start of both members", Duration::from_secs(20), || {
        let text = calls();
        (text.contains("on_start primary hooks n1") && text.contains("on_start standby hooks n2"))
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
