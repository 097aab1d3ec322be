//! Issue 14: the `clonefrom` tag, in both modes. A member re-cloned by `pgha reinit` clones
//! from the standby tagged `clonefrom` (while it streams from the leader), not from the
//! primary, leaves no replication slot on that standby, and then streams from the leader.

mod common;
#[path = "common/dist.rs"]
mod dist;

use std::process::Output;
use std::time::Duration;

use dist::AgentSet;
use pgha_testkit::{succeeded, wait_until};
use serde_json::Value;

/// A cluster the check drives through its CLI.
trait Cloning {
    /// `pgha ARGS` with `--dir` or with the config of the host that runs `member`.
    fn cli(&self, member: &str, args: &[&str]) -> Output;
    /// Everything the agents logged so far.
    fn logs(&self) -> String;
}

fn status(c: &dyn Cloning, via: &str) -> Value {
    let out = succeeded("status", &c.cli(via, &["status", "--json"]));
    serde_json::from_str(&out).expect("status JSON")
}

/// Member `name` in a status (`Null` while it is not in it: a member re-cloning in
/// distributed mode publishes itself again once it runs).
fn member<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or(&Value::Null)
}

/// `members`: [a member that is not tagged, the `clonefrom` one, the one re-cloned].
fn reinit_clones_from_the_tagged_standby(c: &dyn Cloning, members: [&str; 3]) {
    let [other, source, target] = members;
    let s = status(c, other);
    assert_eq!(
        member(&s, source)["tags"]["clonefrom"],
        true,
        "the tag is not published: {s}"
    );
    // The source leads first, so that it is a former primary with slots of its own when it
    // becomes the standby the clone is taken from.
    if s["leader"] != source {
        succeeded(
            "switchover to the tagged member",
            &c.cli(other, &["switchover", "--to", source]),
        );
    }
    // The switchover back needs its target streaming from the new leader (the whole suite
    // once asked before the old leader had rejoined: "n1 is not streaming from the leader").
    wait_until(
        "the tagged member leading, the other streaming from it",
        Duration::from_secs(60),
        || {
            let s = status(c, other);
            let back = member(&s, other);
            (s["leader"] == source && back["state"] == "streaming" && back["upstream"] == source)
                .then_some(())
        },
    );
    succeeded(
        "switchover to the untagged member",
        &c.cli(other, &["switchover", "--to", other]),
    );
    wait_until("both standbys streaming", Duration::from_secs(60), || {
        let s = status(c, other);
        (s["leader"] == other
            && [source, target]
                .iter()
                .all(|m| member(&s, m)["state"] == "streaming"))
        .then_some(())
    });
    let slots_on = |name: &str| {
        let uri = succeeded(
            "url --member",
            &c.cli(name, &["url", "--member", name, "--password"]),
        );
        let rows = pgha_testkit::run_sql(uri.trim(), "SELECT slot_name FROM pg_replication_slots")
            .expect("query slots");
        rows.into_iter()
            .filter_map(|r| r[0].clone())
            .collect::<Vec<String>>()
    };
    // Streaming from the new leader, the former primary drops the slots it made as leader:
    // nobody streams from a standby, and they would hold its WAL.
    wait_until(
        &format!("{source} dropping its slots"),
        Duration::from_secs(20),
        || slots_on(source).is_empty().then_some(()),
    );
    let dropped = format!("{source}: dropped replication slot {target}");
    wait_until("the drop logged", Duration::from_secs(10), || {
        c.logs().contains(&dropped).then_some(())
    });
    let out = succeeded("reinit", &c.cli(target, &["reinit", target, "--force"]));
    assert!(out.contains(target), "{out}");
    wait_until(
        &format!("{target} streaming from {other} again"),
        Duration::from_secs(90),
        || {
            let s = status(c, other);
            let m = member(&s, target);
            (m["state"] == "streaming" && m["upstream"] == other).then_some(())
        },
    );
    let logs = c.logs();
    assert!(
        logs.contains(&format!(
            "{target}: no data directory: cloning from {source}"
        )),
        "{target} did not clone from {source}:\n{logs}"
    );
    assert!(
        logs.contains(&format!(
            "{target}: cloning {source} with pg_basebackup (a standby: no slot)"
        )),
        "{logs}"
    );
    // The clone left no slot on the standby it cloned from; its own slot is on the leader.
    assert_eq!(slots_on(source), Vec::<String>::new());
    assert!(
        slots_on(other).iter().any(|s| s.contains(target)),
        "{:?}",
        slots_on(other)
    );
}

struct Local(common::UpProcess);

impl Cloning for Local {
    fn cli(&self, _member: &str, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--dir", self.0.dir.to_str().unwrap()]);
        common::pgha(&all)
    }
    fn logs(&self) -> String {
        self.0.log()
    }
}

#[test]
fn a_local_member_reinitialised_clones_from_the_clonefrom_standby() {
    let _serial = pgha_testkit::serial();
    let tmp = common::test_dir();
    let dir = tmp.path().join("cf");
    let base = common::UpProcess::create_stopped(&dir, 3);
    let config = dir.join("pgha.toml");
    let text = std::fs::read_to_string(&config).unwrap() + "\n[tags.n2]\nclonefrom = true\n";
    std::fs::write(&config, text).unwrap();
    let mut up = common::UpProcess::spawn(&dir, 3, base, &[]);
    up.wait_streaming(Duration::from_secs(90));
    reinit_clones_from_the_tagged_standby(&Local(up), ["n1", "n2", "n3"]);
}

struct Distributed(dist::DistCluster);

impl Cloning for Distributed {
    fn cli(&self, member: &str, args: &[&str]) -> Output {
        self.0.cli_as(member, args)
    }
    fn logs(&self) -> String {
        self.0.whole_logs()
    }
}

#[test]
fn a_distributed_member_reinitialised_clones_from_the_clonefrom_standby() {
    let _serial = pgha_testkit::serial();
    let mut c = dist::DistCluster::prepare(&dist::Options::default());
    let config = &c.agent("node2").config;
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("[member]\n"), "{text}");
    std::fs::write(
        config,
        text.replace("[member]\n", "[member]\nclonefrom = true\n"),
    )
    .unwrap();
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    reinit_clones_from_the_tagged_standby(&Distributed(c), ["node1", "node2", "node3"]);
}
