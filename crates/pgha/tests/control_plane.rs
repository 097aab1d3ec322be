//! One control plane (issue 10): the same scenario, with the same commands and the same
//! expectations, against a local cluster (`pgha up`, embedded store) and a distributed one
//! (three `pgha agent`s over real etcd). Both are a host serving one API that one client
//! reaches; what differs is only the store and where the hosts are.

mod common;
#[path = "common/dist.rs"]
mod dist;

use std::process::Output;
use std::time::Duration;

use pgha_testkit::{refused, succeeded};
use serde_json::Value;

/// A cluster the scenario drives: its CLI (with `--dir` or `--config` added) and one host's
/// API.
trait Control {
    fn cli(&self, args: &[&str]) -> Output;
    /// `host:port` of one host's API.
    fn api(&self) -> String;
    fn token(&self) -> String;
    /// `SHOW name` on member `member`.
    fn show(&self, member: &str, name: &str) -> String;
}

fn show_on(conninfo: &str, name: &str) -> String {
    let rows = pgha_testkit::run_sql(conninfo, &format!("SHOW {name}")).unwrap();
    rows[0][0].clone().unwrap()
}

struct Local(common::UpProcess);

impl Control for Local {
    fn cli(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--dir", self.0.dir.to_str().unwrap()]);
        common::pgha(&all)
    }
    fn api(&self) -> String {
        format!("127.0.0.1:{}", self.0.base + 2)
    }
    fn token(&self) -> String {
        let secrets = std::fs::read_to_string(self.0.dir.join("secrets.toml")).unwrap();
        let table: toml::Table = secrets.parse().unwrap();
        table["api_token"].as_str().unwrap().to_string()
    }
    fn show(&self, member: &str, name: &str) -> String {
        show_on(&self.0.url(Some(member)), name)
    }
}

struct Distributed(dist::DistCluster);

impl Control for Distributed {
    fn cli(&self, args: &[&str]) -> Output {
        self.0.cli(args)
    }
    fn api(&self) -> String {
        self.0.agents[0].api.clone()
    }
    fn token(&self) -> String {
        dist::API_TOKEN.to_string()
    }
    fn show(&self, member: &str, name: &str) -> String {
        show_on(&self.0.agent(member).conninfo(), name)
    }
}

fn status(c: &dyn Control) -> Value {
    serde_json::from_str(&succeeded("status", &c.cli(&["status", "--json"]))).unwrap()
}

/// `config set postgresql.max_prepared_transactions=N`, a setting PostgreSQL applies only on a
/// restart; waits until every member reports it pending.
fn set_pending_restart(c: &dyn Control, n: u32) {
    let setting = format!("postgresql.max_prepared_transactions={n}");
    succeeded(
        &format!("config set {setting}"),
        &c.cli(&["config", "set", &setting]),
    );
    dist::wait_until(
        "pending restart on every member",
        Duration::from_secs(15),
        || {
            status(c)["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| {
                    m["pending_restart"]
                        .to_string()
                        .contains("max_prepared_transactions")
                })
                .then_some(())
        },
    );
}

/// The scenario: status, settings, pause, the API's token and shapes, a switchover, a
/// refused failover, the history — each checked the same way in both modes.
fn control_scenario(c: &dyn Control) {
    let s = status(c);
    assert_eq!(s["managed"], true, "{s}");
    assert_eq!(s["paused"], false, "{s}");
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{s}");
    let leader = s["leader"].as_str().unwrap().to_string();
    let standby = members
        .iter()
        .find(|m| m["name"] != leader.as_str() && m["state"] == "streaming")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no streaming standby: {s}"));

    // Dynamic settings: changed, shown, and a bad key refused naming it.
    succeeded(
        "config set",
        &c.cli(&["config", "set", "synchronous_mode=on"]),
    );
    let shown = succeeded("config show", &c.cli(&["config", "show"]));
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["synchronous_mode", "=", "on"]),
        "{shown}"
    );
    assert_eq!(status(c)["synchronous"]["mode"], "on");
    succeeded(
        "config set",
        &c.cli(&["config", "set", "synchronous_mode=off"]),
    );
    let why = refused("an unknown key", &c.cli(&["config", "set", "colour=blue"]));
    assert!(why.contains("unknown setting `colour`"), "{why}");

    // Issue 14: PostgreSQL parameters, live. A reloadable one reaches every member; one
    // that needs a restart shows as pending restart; pgha's own are refused naming the key.
    let names: Vec<String> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    succeeded(
        "config set postgresql.work_mem",
        &c.cli(&["config", "set", "postgresql.work_mem=12345kB"]),
    );
    let shown = succeeded("config show", &c.cli(&["config", "show"]));
    assert!(shown.contains("postgresql.work_mem"), "{shown}");
    for name in &names {
        dist::wait_until(
            &format!("work_mem on {name}"),
            Duration::from_secs(15),
            || (c.show(name, "work_mem") == "12345kB").then_some(()),
        );
    }
    set_pending_restart(c, 7);
    let table = succeeded("status", &c.cli(&["status"]));
    assert!(table.contains("Pending restart on"), "{table}");
    // Back to the value it runs with: nothing waits for a restart any more (PostgreSQL keeps
    // a removed restart-only setting pending until a restart, so this sets it, then removes).
    succeeded(
        "config set postgresql.max_prepared_transactions=0",
        &c.cli(&["config", "set", "postgresql.max_prepared_transactions=0"]),
    );
    dist::wait_until("no pending restart", Duration::from_secs(15), || {
        let s = status(c);
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("pending_restart").is_none())
            .then_some(())
    });
    succeeded(
        "config set to remove parameters",
        &c.cli(&[
            "config",
            "set",
            "postgresql.max_prepared_transactions=",
            "postgresql.work_mem=",
        ]),
    );
    let shown = succeeded("config show", &c.cli(&["config", "show"]));
    assert!(!shown.contains("postgresql."), "{shown}");
    let why = refused(
        "a parameter pgha owns",
        &c.cli(&["config", "set", "postgresql.primary_conninfo=host=evil"]),
    );
    assert!(why.contains("postgresql.primary_conninfo"), "{why}");
    // A misspelt name or a value PostgreSQL cannot parse, once in every member's file, would
    // stop each member's next start: refused before it is stored, in PostgreSQL's words.
    for (bad, said) in [
        (
            "postgresql.shared_bufers=1GB",
            "unrecognized configuration parameter \"shared_bufers\"",
        ),
        (
            "postgresql.work_mem=lots",
            "invalid value for parameter \"work_mem\"",
        ),
    ] {
        let why = refused(bad, &c.cli(&["config", "set", "ttl_ms=9000", bad]));
        assert!(
            why.contains(said) && why.contains("nothing was changed"),
            "{why}"
        );
    }
    let shown = succeeded("config show", &c.cli(&["config", "show"]));
    assert!(
        !shown.contains("postgresql.") && !shown.contains("9000"),
        "{shown}"
    );

    // Maintenance mode.
    assert!(succeeded("pause", &c.cli(&["pause"])).contains("paused"));
    assert_eq!(status(c)["paused"], true);
    succeeded("resume", &c.cli(&["resume"]));
    assert_eq!(status(c)["paused"], false);

    // The API: changes need the token; a failure is {kind, error}; /cluster is the store.
    let api = c.api();
    let (code, body) = dist::http("POST", &api, "/pause", None, Some("{}")).unwrap();
    assert_eq!(code, 401, "{body}");
    let failure: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(failure["kind"], "unauthorised", "{body}");
    // Giving back failsafe promises is control too (it frees a member to take the lease).
    let give_back = r#"{"leader": "n1", "term": 1, "promises": [1]}"#;
    let (code, body) = dist::http("POST", &api, "/failsafe/return", None, Some(give_back)).unwrap();
    assert_eq!(code, 401, "{body}");
    let token = c.token();
    let bad = r#"{"to": "nosuch"}"#;
    let (code, body) = dist::http("POST", &api, "/failover", Some(&token), Some(bad)).unwrap();
    assert_eq!(code, 409, "{body}");
    let failure: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(failure["kind"], "refused", "{body}");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("nosuch is not a live member"),
        "{body}"
    );
    let (code, body) = dist::http("GET", &api, "/cluster", None, None).unwrap();
    assert_eq!(code, 200, "{body}");
    let cluster: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["leader"], leader.as_str(), "{body}");
    assert_eq!(cluster["members"].as_object().unwrap().len(), 3, "{body}");

    // The same refusal through the CLI.
    let why = refused(
        "failover to nosuch",
        &c.cli(&["failover", "--to", "nosuch"]),
    );
    assert!(why.contains("nosuch is not a live member"), "{why}");

    // A switchover through the CLI waits until the target leads.
    let out = succeeded("switchover", &c.cli(&["switchover", "--to", &standby]));
    assert!(out.contains(&format!("{standby} is the primary")), "{out}");
    let s = status(c);
    assert_eq!(s["leader"], standby.as_str(), "{s}");
    let history: Value =
        serde_json::from_str(&succeeded("history", &c.cli(&["history", "--json"]))).unwrap();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "switchover" && e["to"] == standby.as_str()),
        "{history}"
    );

    // Issue 14: a parameter that needs a restart, applied by a rolling restart: standbys
    // first, the primary after a switchover, every member streaming again, nothing pending.
    set_pending_restart(c, 3);
    let out = succeeded("restart --pending", &c.cli(&["restart", "--pending"]));
    assert!(out.contains("restart done"), "{out}");
    assert!(out.contains("handing over by switchover"), "{out}");
    let s = status(c);
    assert_ne!(
        s["leader"],
        standby.as_str(),
        "the primary was restarted in place: {s}"
    );
    for m in s["members"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(m.get("pending_restart").is_none(), "{s}");
        assert!(
            matches!(m["state"].as_str(), Some("running" | "streaming")),
            "{s}"
        );
        assert_eq!(c.show(name, "max_prepared_transactions"), "3", "{name}");
    }
    let why = refused(
        "restart of an unknown member",
        &c.cli(&["restart", "nosuch"]),
    );
    assert!(why.contains("nosuch"), "{why}");
}

#[test]
fn a_local_cluster_answers_the_control_scenario() {
    let dir = common::test_dir();
    let up = common::UpProcess::start(&dir.path().join("c"), 3);
    control_scenario(&Local(up));
}

#[test]
fn a_distributed_cluster_answers_the_control_scenario() {
    let c = dist::DistCluster::start(&dist::Options::default());
    control_scenario(&Distributed(c));
}
