//! Day-2 operations, each checked the same way against a local cluster (`pgha up`, `--dir`)
//! and a distributed one (three `pgha agent`s over etcd, `--config`): `pgha stop`, `start`
//! and `url`, `pgha reload`, the member metrics, `pgha config edit`, `pgha restart
//! --in-place`, `status --topology`, `switchover --at`, the health checks, the failover-time
//! histogram, in both modes. One cluster at a time (the binary's serial lock).

mod common;
#[path = "common/dist.rs"]
mod dist;

#[path = "day2/configuration.rs"]
mod configuration;
#[path = "day2/member_control.rs"]
mod member_control;
#[path = "day2/monitoring.rs"]
mod monitoring;
#[path = "day2/scheduled_switchover.rs"]
mod scheduled_switchover;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use configuration::{config_edit, lower_a_hot_standby_setting, restart_in_place};
use dist::AgentSet;
use member_control::{reload, reload_unanswered, stop_start_url};
use monitoring::{failover_histogram, health_checks, metrics};
use pgha_testkit::{refused, succeeded};
use scheduled_switchover::topology_and_scheduled_switchover;
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

fn member_names(c: &dyn Day2) -> Vec<String> {
    status(c)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
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
    // last: the frozen agent's member falls behind for a while
    reload_unanswered(&c);
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
