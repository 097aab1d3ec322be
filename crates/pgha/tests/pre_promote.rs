//! Issue 14: a `pre_promote` callback can veto a promotion, in both modes. The script runs on
//! the member about to be promoted, with the lease held; a non-zero exit makes that member let
//! go of the lease and stay out of failovers, and the next candidate is promoted instead. Once
//! another member leads, the veto is over: a switchover to the vetoed member works again.

mod common;
#[path = "common/dist.rs"]
mod dist;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use dist::AgentSet;
use pgha_testkit::{succeeded, wait_until};
use serde_json::Value;

/// A cluster the check drives through its CLI.
trait Vetoing {
    /// `pgha ARGS` with `--dir` or with the config of the host that runs `member`.
    fn cli(&self, member: &str, args: &[&str]) -> Output;
    /// Everything the agents logged so far.
    fn logs(&self) -> String;
    /// The cluster's name, as the callbacks are given it.
    fn cluster(&self) -> &str;
}

fn status(c: &dyn Vetoing, via: &str) -> Option<Value> {
    let out = c.cli(via, &["status", "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn state_of(status: &Value, name: &str) -> Option<(String, String)> {
    status["members"].as_array()?.iter().find_map(|m| {
        (m["name"] == name).then(|| {
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

/// The upstream `name`'s record names (absent while it streams from nobody).
fn upstream_of(status: &Value, name: &str) -> Option<String> {
    let members = status["members"].as_array()?;
    let member = members.iter().find(|m| m["name"] == name)?;
    member["upstream"].as_str().map(str::to_string)
}

fn primary(status: &Value) -> Option<String> {
    let members = status["members"].as_array()?;
    let leader = status["leader"].as_str()?;
    members
        .iter()
        .any(|m| m["name"] == leader && m["role"] == "primary" && m["state"] == "running")
        .then(|| leader.to_string())
}

/// The hook: logs its arguments; exits 3 for the members named in `veto` (one per line).
struct Hook {
    script: PathBuf,
    log: PathBuf,
    veto: PathBuf,
}

impl Hook {
    fn write(dir: &Path) -> Hook {
        // The script runs as the PostgreSQL OS user: it must reach and write these.
        let shared = dir.join("hook");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let hook = Hook {
            script: shared.join("pre_promote.sh"),
            log: shared.join("calls"),
            veto: shared.join("veto"),
        };
        std::fs::write(&hook.veto, "").unwrap();
        std::fs::set_permissions(&hook.veto, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(
            &hook.script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {log}\nif grep -qx \"$4\" {veto}; then\n  \
                 echo \"the virtual IP is still held\" >&2\n  exit 3\nfi\n",
                log = hook.log.display(),
                veto = hook.veto.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook.script, std::fs::Permissions::from_mode(0o755)).unwrap();
        hook
    }

    fn config(&self) -> String {
        format!(
            "\n[callbacks]\npre_promote = \"{}\"\ntimeout_s = 10\n",
            self.script.display()
        )
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The leader is stopped; of the two standbys, at the same position after its clean
/// shutdown, the one the election prefers (the smaller name) vetoes; the other is promoted.
fn the_next_candidate_takes_over(c: &dyn Vetoing, hook: &Hook, members: [&str; 3]) {
    let cluster = c.cluster();
    let s = wait_until("a primary", Duration::from_secs(30), || {
        status(c, members[0]).filter(|s| primary(s).is_some())
    });
    let old = primary(&s).unwrap();
    let mut candidates: Vec<&str> = members.into_iter().filter(|m| *m != old).collect();
    candidates.sort();
    let (vetoing, next) = (candidates[0], candidates[1]);
    std::fs::write(&hook.veto, format!("{vetoing}\n")).unwrap();

    let out = succeeded("stop of the primary", &c.cli(&old, &["stop", &old]));
    assert!(out.contains(&format!("{old} stopped")), "{out}");
    let s = wait_until(&format!("{next} primary"), Duration::from_secs(60), || {
        status(c, next).filter(|s| primary(s).as_deref() == Some(next))
    });
    let calls = hook.calls();
    assert!(
        calls.contains(&format!("pre_promote standby {cluster} {vetoing}")),
        "{vetoing} was never asked (it should have won the election first): {calls}\n{s}"
    );
    assert!(
        calls.contains(&format!("pre_promote standby {cluster} {next}")),
        "{calls}"
    );
    let logs = c.logs();
    assert!(
        logs.contains("vetoed by the pre_promote callback")
            && logs.contains("the virtual IP is still held"),
        "the veto and the script's words are not in the log:\n{logs}"
    );
    // The vetoed member follows the new leader: its PostgreSQL streams (what status probes) and
    // its agent published so (`upstream`, from its record: what a switchover is checked against;
    // the record follows within a loop).
    wait_until(
        &format!("{vetoing} streaming from {next}"),
        Duration::from_secs(60),
        || {
            let s = status(c, next)?;
            let streaming = state_of(&s, vetoing)? == ("standby".into(), "streaming".into());
            (streaming && upstream_of(&s, vetoing)?.as_str() == next).then_some(())
        },
    );
    // Another member leads: the veto is over, and a switchover back to it runs its callback
    // again, which now lets it through.
    std::fs::write(&hook.veto, "").unwrap();
    succeeded(
        "switchover to the member that vetoed",
        &c.cli(next, &["switchover", "--to", vetoing]),
    );
    wait_until(
        &format!("{vetoing} primary"),
        Duration::from_secs(60),
        || status(c, next).filter(|s| primary(s).as_deref() == Some(vetoing)),
    );
    let asked = hook
        .calls()
        .matches(&format!("pre_promote standby {cluster} {vetoing}"))
        .count();
    assert_eq!(asked, 2, "{}", hook.calls());
}

struct Local {
    up: common::UpProcess,
    cluster: String,
}

impl Vetoing for Local {
    fn cli(&self, _member: &str, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--dir", self.up.dir.to_str().unwrap()]);
        common::pgha(&all)
    }
    fn logs(&self) -> String {
        self.up.log()
    }
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

#[test]
fn a_local_cluster_promotes_the_next_candidate_when_pre_promote_vetoes() {
    let _serial = pgha_testkit::serial();
    let tmp = common::test_dir();
    let dir = tmp.path().join("veto");
    let base = common::UpProcess::create_stopped(&dir, 3);
    let hook = Hook::write(tmp.path());
    let config = dir.join("pgha.toml");
    let text = std::fs::read_to_string(&config).unwrap() + &hook.config();
    std::fs::write(&config, text).unwrap();
    let mut up = common::UpProcess::spawn(&dir, 3, base, &[]);
    up.wait_streaming(Duration::from_secs(90));
    let c = Local {
        up,
        cluster: "veto".into(),
    };
    the_next_candidate_takes_over(&c, &hook, ["n1", "n2", "n3"]);
}

struct Distributed(dist::DistCluster);

impl Vetoing for Distributed {
    fn cli(&self, member: &str, args: &[&str]) -> Output {
        self.0.cli_as(member, args)
    }
    fn logs(&self) -> String {
        self.0.whole_logs()
    }
    fn cluster(&self) -> &str {
        "demo"
    }
}

#[test]
fn a_distributed_cluster_promotes_the_next_candidate_when_pre_promote_vetoes() {
    let _serial = pgha_testkit::serial();
    let mut c = dist::DistCluster::prepare(&dist::Options::default());
    let hook = Hook::write(&c.root);
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap() + &hook.config();
        std::fs::write(&a.config, text).unwrap();
    }
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    the_next_candidate_takes_over(&Distributed(c), &hook, ["node1", "node2", "node3"]);
}
