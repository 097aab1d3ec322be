//! `pgha config edit`, and restarts that apply a changed setting.

use super::*;

use std::path::PathBuf;

/// `pgha config edit`: an edit is stored (a setting changed, a PostgreSQL parameter added);
/// a wrong one changes nothing, names the key and keeps the edit in a file; no edit, no change.
pub(super) fn config_edit(c: &dyn Day2) {
    let dir = tempfile::tempdir().unwrap();
    let editor = |name: &str, script: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
        path
    };
    let good = editor(
        "good",
        "sed -i 's/^loop_wait_ms *=.*/loop_wait_ms = 700/' \"$1\"\n\
         echo 'postgresql.work_mem = 8MB' >> \"$1\"",
    );
    succeeded("config edit", &c.edit_config(&good));
    let show = succeeded("config show", &c.cli(&["config", "show"]));
    let value = |key: &str| {
        show.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == key))
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(value("loop_wait_ms").as_deref(), Some("700"), "{show}");
    assert_eq!(
        value("postgresql.work_mem").as_deref(),
        Some("8MB"),
        "{show}"
    );

    let bad = editor("bad", "sed -i 's/^ttl_ms *=.*/ttl_ms = banana/' \"$1\"");
    let err = refused("a wrong edit", &c.edit_config(&bad));
    assert!(err.contains("ttl_ms"), "{err}");
    let kept = err
        .split("kept in ")
        .nth(1)
        .map(|rest| PathBuf::from(rest.split_whitespace().next().unwrap()))
        .unwrap_or_else(|| panic!("the edit's file is not named: {err}"));
    assert!(std::fs::read_to_string(&kept).unwrap().contains("banana"));
    std::fs::remove_file(kept).unwrap();
    let after = succeeded("config show", &c.cli(&["config", "show"]));
    assert_eq!(after, show, "a refused edit changed something");

    let untouched = succeeded("an unchanged edit", &c.edit_config(&editor("none", "true")));
    assert!(untouched.contains("no change"), "{untouched}");
}

/// `pgha restart --role primary --in-place`: the primary restarts where it is, keeping the
/// lease (no failover, no switchover in the history), and a parameter that waited for a
/// restart is applied on it.
pub(super) fn restart_in_place(c: &dyn Day2) {
    let leader = status(c)["leader"].as_str().unwrap().to_string();
    let uri = succeeded("url --member", &c.cli(&["url", "--member", &leader]));
    let started = || psql(uri.trim(), "SELECT pg_postmaster_start_time()");
    let before = started();
    let history = |c: &dyn Day2| {
        let entries: Value =
            serde_json::from_str(&succeeded("history", &c.cli(&["history", "--json"]))).unwrap();
        entries.as_array().unwrap().len()
    };
    let entries = history(c);
    let setting = "postgresql.max_prepared_transactions=4";
    succeeded("config set", &c.cli(&["config", "set", setting]));
    dist::wait_until(
        "the pending restart on the leader",
        Duration::from_secs(20),
        || {
            status(c)["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| {
                    m["name"] == leader.as_str()
                        && m["pending_restart"].to_string().contains("max_prepared")
                })
                .then_some(())
        },
    );
    let out = succeeded(
        "restart --in-place",
        &c.cli(&["restart", "--role", "primary", "--in-place"]),
    );
    assert!(
        out.contains(&format!("{leader}: primary, restarting in place")),
        "{out}"
    );
    assert!(out.contains("restart done"), "{out}");
    let s = status(c);
    assert_eq!(s["leader"], leader.as_str(), "the lease moved: {s}");
    assert_ne!(started(), before, "the postmaster was not restarted");
    assert_eq!(psql(uri.trim(), "SHOW max_prepared_transactions"), "4");
    assert_eq!(psql(uri.trim(), "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(history(c), entries, "a restart in place is not a failover");
    // The primary now needs max_prepared_transactions of 4 on its standbys too: PostgreSQL
    // pauses their replay at its record of the change (a promotion would shut them down).
    // Each agent restarts its standby with the primary's value, and replay goes on.
    psql(uri.trim(), "CREATE TABLE IF NOT EXISTS day2_replay(x int)");
    let lsn = psql(
        uri.trim(),
        "WITH written AS (INSERT INTO day2_replay VALUES (1) RETURNING x) \
         SELECT pg_current_wal_lsn() FROM written",
    );
    let standbys: Vec<String> = member_names(c)
        .into_iter()
        .filter(|m| *m != leader)
        .collect();
    for name in &standbys {
        let uri = succeeded("url --member", &c.cli(&["url", "--member", name]));
        dist::wait_until(
            &format!("{name} replaying past {lsn} with the primary's setting"),
            Duration::from_secs(30),
            || {
                let row = Command::new("psql")
                    .arg(uri.trim())
                    .args(["-X", "-Atc"])
                    .arg(format!(
                        "SELECT current_setting('max_prepared_transactions'), \
                         pg_get_wal_replay_pause_state(), \
                         pg_last_wal_replay_lsn() >= '{lsn}'"
                    ))
                    .env("PGCONNECT_TIMEOUT", "3")
                    .output()
                    .ok()?;
                (String::from_utf8_lossy(&row.stdout).trim() == "4|not paused|t").then_some(())
            },
        );
    }
    wait_nothing_pending(c);
    let explained = succeeded("status", &c.cli(&["status"]));
    assert_eq!(status(c)["leader"], leader.as_str(), "{explained}");
}

/// Waits until no member shows a pending restart.
fn wait_nothing_pending(c: &dyn Day2) {
    dist::wait_until("nothing pending", Duration::from_secs(20), || {
        status(c)["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("pending_restart").is_none())
            .then_some(())
    });
}

/// Lowering a setting a hot standby needs at the primary's value (after
/// [`restart_in_place`] raised it): a rolling restart, standbys first, keeps them at the
/// primary's value (with less PostgreSQL would not start them) and finishes; the primary
/// restarted in place then runs with the lower value, and the standbys follow once
/// restarted. Every member then runs with it and nothing is pending.
pub(super) fn lower_a_hot_standby_setting(c: &dyn Day2) {
    let setting = "postgresql.max_prepared_transactions=0";
    succeeded("config set", &c.cli(&["config", "set", setting]));
    dist::wait_until("the change pending", Duration::from_secs(20), || {
        let s = status(c);
        let leader = s["leader"].as_str()?.to_string();
        s["members"]
            .as_array()?
            .iter()
            .any(|m| m["name"] == leader.as_str() && m.get("pending_restart").is_some())
            .then_some(())
    });
    let out = succeeded("restart", &c.cli(&["restart"]));
    assert!(out.contains("restart done"), "{out}");
    let out = succeeded(
        "restart --role primary --in-place",
        &c.cli(&["restart", "--role", "primary", "--in-place"]),
    );
    assert!(out.contains("restart done"), "{out}");
    let out = succeeded(
        "restart --role standby",
        &c.cli(&["restart", "--role", "standby"]),
    );
    assert!(out.contains("restart done"), "{out}");
    for name in member_names(c) {
        let uri = succeeded("url --member", &c.cli(&["url", "--member", &name]));
        assert_eq!(
            psql(uri.trim(), "SHOW max_prepared_transactions"),
            "0",
            "{name}"
        );
    }
    wait_nothing_pending(c);
}
