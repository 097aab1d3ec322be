//! Day-2 operations, each checked the same way against a local cluster (`pgha up`, `--dir`)
//! and a distributed one (three `pgha agent`s over etcd, `--config`): `pgha stop`, `start`
//! and `url`, `pgha reload`, the member metrics, `pgha config edit`, `pgha restart
//! --in-place`, `status --topology`, `switchover --at`, the health checks, the failover-time
//! histogram, in both modes. One cluster at a time (the binary's serial lock).

mod common;
#[path = "common/dist.rs"]
mod dist;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dist::AgentSet;
use pgha_testkit::{refused, succeeded};
use serde_json::Value;

/// A cluster the checks drive through its CLI.
trait Day2 {
    /// `pgha ARGS --dir DIR` or `pgha ARGS --config <the first host's config>`.
    fn cli(&self, args: &[&str]) -> Output;
    /// `pgha start NAME` as an operator runs it: with the config of the member's own host in
    /// distributed mode.
    fn start(&self, name: &str) -> Output;
    /// The superuser's password (which `pgha url` must not print unless asked).
    fn password(&self) -> String;
    /// `host:port` of one host's API, and the members it runs.
    fn api(&self) -> (String, Vec<String>);
    /// `pgha config edit` with `$EDITOR` set to `editor`, no terminal on stdin.
    fn edit_config(&self, editor: &Path) -> Output;
}

/// `pgha config edit WHERE...` with `editor` as `$EDITOR`.
fn edit_with(editor: &Path, at: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["config", "edit"])
        .args(at)
        .env("EDITOR", editor)
        .env_remove("VISUAL")
        .env("PGHA_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pgha config edit")
}

struct Local(common::cluster::Cluster);

impl Day2 for Local {
    fn cli(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--dir", self.0.dir()]);
        common::pgha(&all)
    }
    fn start(&self, name: &str) -> Output {
        self.cli(&["start", name])
    }
    fn password(&self) -> String {
        let secrets = std::fs::read_to_string(self.0.up.dir.join("secrets.toml")).unwrap();
        let table: toml::Table = secrets.parse().unwrap();
        table["superuser_password"].as_str().unwrap().to_string()
    }
    fn api(&self) -> (String, Vec<String>) {
        let names = common::cluster::MEMBERS.map(String::from).to_vec();
        (format!("127.0.0.1:{}", self.0.up.base + 2), names)
    }
    fn edit_config(&self, editor: &Path) -> Output {
        edit_with(editor, &["--dir".as_ref(), self.0.dir().as_ref()])
    }
}

struct Distributed(dist::DistCluster);

impl Day2 for Distributed {
    fn cli(&self, args: &[&str]) -> Output {
        self.0.cli(args)
    }
    fn start(&self, name: &str) -> Output {
        self.0.cli_as(name, &["start", name])
    }
    fn password(&self) -> String {
        dist::SUPERUSER_PASSWORD.to_string()
    }
    fn api(&self) -> (String, Vec<String>) {
        let first = &self.0.agents[0];
        (first.api.clone(), vec![first.name.clone()])
    }
    fn edit_config(&self, editor: &Path) -> Output {
        edit_with(
            editor,
            &["--config".as_ref(), self.0.agents[0].config.as_os_str()],
        )
    }
}

fn status(c: &dyn Day2) -> Value {
    serde_json::from_str(&succeeded("status", &c.cli(&["status", "--json"]))).unwrap()
}

fn member_state(c: &dyn Day2, name: &str) -> Option<String> {
    status(c)["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["state"].as_str().unwrap_or_default().to_string())
}

/// `psql URI -Atc SQL` (libpq itself, as a user runs the URI): its output, trimmed.
fn psql(uri: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(uri)
        .args(["-X", "-Atc", sql])
        .env("PGCONNECT_TIMEOUT", "3")
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql");
    succeeded(&format!("psql {uri} -c {sql}"), &out)
        .trim()
        .to_string()
}

/// A member other than the leader that streams now.
fn a_standby(c: &dyn Day2) -> String {
    let s = status(c);
    let leader = s["leader"].as_str().unwrap().to_string();
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] != leader.as_str() && m["state"] == "streaming")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no streaming standby: {s}"))
}

/// Item 1: `pgha url` reaches the primary with libpq, the password off the command line;
/// `pgha stop` and `pgha start` reach the host that runs the member.
fn stop_start_url(c: &dyn Day2) {
    let uri = succeeded("url", &c.cli(&["url"])).trim().to_string();
    assert!(!uri.contains(&c.password()), "password in {uri}");
    assert_eq!(psql(&uri, "SELECT pg_is_in_recovery()"), "f", "{uri}");
    let inline = succeeded("url --password", &c.cli(&["url", "--password"]));
    assert!(inline.contains(&c.password()), "{inline}");

    let standby = a_standby(c);
    let member_uri = succeeded("url --member", &c.cli(&["url", "--member", &standby]));
    assert_eq!(
        psql(member_uri.trim(), "SELECT pg_is_in_recovery()"),
        "t",
        "{member_uri}"
    );
    let out = succeeded("stop", &c.cli(&["stop", &standby]));
    assert!(out.contains(&format!("{standby} stopped")), "{out}");
    dist::wait_until(
        &format!("{standby} stopped"),
        Duration::from_secs(30),
        || {
            member_state(c, &standby)
                .is_none_or(|s| s == "stopped")
                .then_some(())
        },
    );
    let out = succeeded("start", &c.start(&standby));
    assert!(out.contains(&format!("{standby} starting")), "{out}");
    dist::wait_until(
        &format!("{standby} streaming again"),
        Duration::from_secs(60),
        || (member_state(c, &standby).as_deref() == Some("streaming")).then_some(()),
    );
    let why = refused("stop of an unknown member", &c.cli(&["stop", "nosuch"]));
    assert!(why.contains("nosuch"), "{why}");
}

fn member_names(c: &dyn Day2) -> Vec<String> {
    status(c)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// When member `name` last loaded its configuration files.
fn conf_load_time(c: &dyn Day2, name: &str) -> String {
    let uri = succeeded("url --member", &c.cli(&["url", "--member", name]));
    psql(uri.trim(), "SELECT pg_conf_load_time()")
}

/// Item 2: `pgha reload` has every member (or the named ones) read its configuration again.
fn reload(c: &dyn Day2) {
    let names = member_names(c);
    let before: Vec<String> = names.iter().map(|n| conf_load_time(c, n)).collect();
    let out = succeeded("reload", &c.cli(&["reload"]));
    for (name, before) in names.iter().zip(&before) {
        assert!(out.contains(&format!("{name}: reloaded")), "{out}");
        assert_ne!(&conf_load_time(c, name), before, "{name} did not reload");
    }
    let before: Vec<String> = names.iter().map(|n| conf_load_time(c, n)).collect();
    let out = succeeded("reload one member", &c.cli(&["reload", &names[1]]));
    assert_eq!(out.trim(), format!("{}: reloaded", names[1]));
    for (i, (name, before)) in names.iter().zip(&before).enumerate() {
        let now = conf_load_time(c, name);
        assert_eq!(&now != before, i == 1, "{name}: {before} then {now}");
    }
    let why = refused("reload of an unknown member", &c.cli(&["reload", "nosuch"]));
    assert!(why.contains("nosuch"), "{why}");
}

/// The value of `family{member="NAME"}` in a Prometheus text.
fn sample(text: &str, family: &str, member: &str) -> Option<String> {
    let prefix = format!("{family}{{member=\"{member}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Item 5: /metrics has each member's server version, pending restarts, failsafe and last
/// contact with the store, at parity with Patroni's.
fn metrics(c: &dyn Day2) {
    let (api, names) = c.api();
    dist::wait_until("member metrics", Duration::from_secs(20), || {
        let (code, text) = dist::http("GET", &api, "/metrics", None, None)?;
        assert_eq!(code, 200, "{text}");
        names
            .iter()
            .all(|n| {
                let version: u64 = sample(&text, "pgha_member_server_version", n)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                version >= 140000
                    && sample(&text, "pgha_member_pending_restart", n).as_deref() == Some("0")
                    && sample(&text, "pgha_member_pending_restart_parameters", n).as_deref()
                        == Some("0")
                    && sample(&text, "pgha_member_failsafe_active", n).as_deref() == Some("0")
                    && sample(&text, "pgha_member_store_last_contact_seconds", n).as_deref()
                        == Some("0")
            })
            .then_some(())
    });
}

/// `pgha config edit`: an edit is stored (a setting changed, a PostgreSQL parameter added);
/// a wrong one changes nothing, names the key and keeps the edit in a file; no edit, no change.
fn config_edit(c: &dyn Day2) {
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

/// The health checks HAProxy and Kubernetes send, on every member of the host asked
/// (`?member=` names it; `pgha up` runs them all): OPTIONS and HEAD answer as GET does;
/// /read-only and /readiness take the primary and streaming standbys; /liveness needs only
/// the agent stepping; asynchronous standbys are /async, none /sync.
fn health_checks(c: &dyn Day2) {
    let (api, names) = c.api();
    let leader = status(c)["leader"].as_str().unwrap().to_string();
    for name in &names {
        let leads = *name == leader;
        let code = |method: &str, path: &str| {
            let path = format!("{path}?member={name}");
            dist::http(method, &api, &path, None, None).unwrap().0
        };
        let role = |ok: bool| if ok { 200 } else { 503 };
        assert_eq!(code("OPTIONS", "/primary"), role(leads), "{name}");
        assert_eq!(code("HEAD", "/primary"), role(leads), "{name}");
        assert_eq!(code("OPTIONS", "/replica"), role(!leads), "{name}");
        for path in ["/read-only", "/readiness", "/liveness"] {
            assert_eq!(code("GET", path), 200, "{name} {path}");
        }
        assert_eq!(code("GET", "/async"), role(!leads), "{name}");
        assert_eq!(code("GET", "/sync"), 503, "{name}");
    }
}

/// `pgha status --topology` draws who streams from whom; `pgha switchover --at` runs at its
/// time (shown in status until then) and a later one can be withdrawn.
fn topology_and_scheduled_switchover(c: &dyn Day2) {
    let s = status(c);
    let leader = s["leader"].as_str().unwrap().to_string();
    let tree = succeeded("status --topology", &c.cli(&["status", "--topology"]));
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], format!("{leader} (primary, running)"), "{tree}");
    let standbys = s["members"].as_array().unwrap().len() - 1;
    assert_eq!(lines.len(), 1 + standbys, "{tree}");
    assert!(
        lines[1..].iter().all(|l| l.contains("(standby, streaming")),
        "{tree}"
    );
    assert!(lines.last().unwrap().starts_with("└── "), "{tree}");

    let target = a_standby(c);
    let out = succeeded(
        "switchover --at",
        &c.cli(&["switchover", "--to", &target, "--at", "+4s"]),
    );
    assert!(out.contains("scheduled for"), "{out}");
    let table = succeeded("status", &c.cli(&["status"]));
    assert!(
        table.contains(&format!("Switchover to {target} scheduled for")),
        "{table}"
    );
    assert_eq!(
        status(c)["leader"],
        leader.as_str(),
        "it ran before its time"
    );
    dist::wait_until(
        &format!("{target} leading"),
        Duration::from_secs(60),
        || (status(c)["leader"] == target.as_str()).then_some(()),
    );
    let table = succeeded("status", &c.cli(&["status"]));
    assert!(!table.contains("scheduled"), "{table}");
    let out = succeeded(
        "switchover --at +1h",
        &c.cli(&["switchover", "--to", &leader, "--at", "+1h"]),
    );
    assert!(out.contains("scheduled for"), "{out}");
    let out = succeeded("switchover --cancel", &c.cli(&["switchover", "--cancel"]));
    assert!(
        out.contains(&format!("withdrew the switchover to {leader}")),
        "{out}"
    );
    // Every member streams from the new leader before the next step.
    dist::wait_until("the others streaming", Duration::from_secs(60), || {
        let s = status(c);
        let members = s["members"].as_array().unwrap();
        members
            .iter()
            .all(|m| m["name"] == target.as_str() || m["state"] == "streaming")
            .then_some(())
    });
}

/// `pgha restart --role primary --in-place`: the primary restarts where it is, keeping the
/// lease (no failover, no switchover in the history), and a parameter that waited for a
/// restart is applied on it.
fn restart_in_place(c: &dyn Day2) {
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
fn lower_a_hot_standby_setting(c: &dyn Day2) {
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

/// `pgha_failover_seconds`: a switchover to a member of the host whose API is asked shows
/// in its histogram, labelled `switchover`, within a bound a switchover keeps.
fn failover_histogram(c: &dyn Day2) {
    let (api, names) = c.api();
    let switch_to = |to: &str| {
        succeeded("switchover", &c.cli(&["switchover", "--to", to]));
        dist::wait_until(&format!("{to} leading"), Duration::from_secs(60), || {
            let s = status(c);
            let streaming = s["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["state"] == "streaming")
                .count();
            (s["leader"] == to && streaming + 1 == s["members"].as_array().unwrap().len())
                .then_some(())
        });
    };
    let leader = status(c)["leader"].as_str().unwrap().to_string();
    let target = match names.iter().find(|n| **n != leader) {
        Some(n) => n.clone(),
        None => {
            // This host runs only the leader: move it away first, then back.
            switch_to(&a_standby(c));
            names[0].clone()
        }
    };
    switch_to(&target);
    let labels = format!("member=\"{target}\",kind=\"switchover\"");
    let (count, sum) = dist::wait_until(
        "the switchover in the histogram",
        Duration::from_secs(10),
        || {
            let (_, text) = dist::http("GET", &api, "/metrics", None, None)?;
            let value = |series: &str| -> Option<f64> {
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!("pgha_failover_seconds_{series}{{{labels}}} "))
                    })?
                    .parse()
                    .ok()
            };
            Some((value("count")?, value("sum")?))
        },
    );
    assert!(count >= 1.0, "{count}");
    assert!(
        sum > 0.0 && sum < 30.0 * count,
        "switchovers took {sum} s in all ({count})"
    );
}

/// What both modes check the same way, in this order (the last steps move the leader).
fn the_rest(c: &dyn Day2) {
    reload(c);
    metrics(c);
    config_edit(c);
    health_checks(c);
    topology_and_scheduled_switchover(c);
    restart_in_place(c);
    lower_a_hot_standby_setting(c);
    failover_histogram(c);
}

#[test]
fn a_local_cluster_answers_day2_operations() {
    let c = Local(common::cluster::Cluster::start(
        &[],
        Duration::from_secs(30),
    ));
    // The read-write entry point is the proxy already: --proxy names the same.
    let proxy = succeeded("url --proxy", &c.cli(&["url", "--proxy"]));
    assert_eq!(proxy, succeeded("url", &c.cli(&["url"])));
    stop_start_url(&c);
    the_rest(&c);
}

#[test]
fn a_distributed_cluster_answers_day2_operations() {
    let _serial = pgha_testkit::serial();
    let c = Distributed(dist::DistCluster::start(&dist::Options::default()));
    // Every member in one URI, the primary found by libpq; the proxy's listener on request.
    let uri = succeeded("url", &c.cli(&["url"]));
    for a in &c.0.agents {
        assert!(uri.contains(&format!("127.0.0.1:{}", a.port)), "{uri}");
    }
    assert!(uri.contains("target_session_attrs=read-write"), "{uri}");
    let passfile = c.0.agents[0].dir.join("pgpass");
    assert!(
        uri.contains(&format!("passfile={}", passfile.display())),
        "{uri}"
    );
    let proxy = succeeded("url --proxy", &c.cli(&["url", "--proxy"]));
    assert_eq!(
        proxy.trim(),
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?passfile={}",
            c.0.proxy_rw,
            passfile.display()
        )
    );
    stop_start_url(&c);
    // A stopped member has left etcd: another host's config (the first one's, which `cli`
    // uses) cannot name its agent, and the refusal says which config can.
    let leader = status(&c)["leader"].as_str().unwrap().to_string();
    let standby = c.0.agents[1..]
        .iter()
        .map(|a| a.name.clone())
        .find(|n| *n != leader)
        .unwrap();
    succeeded("stop", &c.cli(&["stop", &standby]));
    let why = refused("start through another host", &c.cli(&["start", &standby]));
    assert!(
        why.contains(&format!("{standby}'s own node config")),
        "{why}"
    );
    succeeded("start through its own host", &c.start(&standby));
    c.0.wait_converged(Duration::from_secs(60));
    the_rest(&c);
}
