//! Campaigns against `pgha agent`s on etcd: through the agents' API, and on test hosts.

use super::*;

use pgha_testkit::serial;

use crate::dist::{AgentSet, DistCluster, Options};

#[test]
fn a_distributed_campaign_through_the_agents_api_and_a_paused_agent_lose_nothing() {
    let _serial = serial();
    let mut c = DistCluster::start(&Options::default());
    let original = c.wait_converged(Duration::from_secs(60));
    // Synchronous, so that nothing acknowledged may be lost: asynchronous replication may
    // lose the last writes a fenced leader acknowledged (a campaign reports them, as it must).
    let out = c.cli(&["config", "set", "synchronous_mode=on"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    pgha_testkit::wait_until("a synchronous standby", Duration::from_secs(30), || {
        let s = c.status_json();
        (s["synchronous"]["set"]
            .as_array()
            .is_some_and(|set| !set.is_empty())
            && s["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["sync_state"] == "sync"))
        .then_some(())
    });
    let chaos = |host: &str, args: &[&str]| {
        config_campaign(
            Command::new(pgha_bin()),
            &c.agent(host).config,
            args,
            "120s",
            || c.logs(40),
        )
    };
    // Run from the leader's "host": its agent stopped for twice the ttl, its PostgreSQL is
    // fenced by the supervisor and another member takes the lease; then it rejoins.
    let (j, context) = chaos(
        &original,
        &["--rounds", "1", "--faults", "pause-agent", "--seed", "1"],
    );
    assert_passed(&j, 1, &context);
    assert_eq!(j["settings"]["mode"], "distributed");
    let f = &j["faults"][0];
    assert_eq!(
        (f["kind"].as_str(), f["victim"].as_str()),
        (Some("pause-agent"), Some(original.as_str()))
    );
    let paused_for = f["recovery_ms"].as_f64().unwrap();
    assert!(
        paused_for >= 2.0 * TTL_MS,
        "recovered {paused_for} ms after the pause began\n{context}"
    );
    // Control-plane faults through each member's own agent, a settings change among them
    // (stored in etcd by the agent's API), put back at the end.
    let settings = |c: &DistCluster| {
        let out = c.cli(&["config", "show"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = settings(&c);
    let faults = "switchover,failover,restart-standby,stop-primary,change-config";
    let (j, context) = chaos(
        "node1",
        &["--rounds", "4", "--faults", faults, "--seed", "5"],
    );
    assert_passed(&j, 4, &context);
    for f in j["faults"].as_array().unwrap() {
        assert!(faults.split(',').any(|k| f["kind"] == k), "{f}");
    }
    assert!(
        j["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "change-config"),
        "{context}"
    );
    assert_eq!(c.wait_converged(Duration::from_secs(60)), original);
    assert_eq!(settings(&c), before, "{context}");

    // A standby's agent paused for longer than the recovery bound (its member key expires
    // meanwhile, and is back within a loop or two of the pause's end): the bound runs from the
    // fault's end (found by bench/chaos_dist.sh seed 2802: lossy-host, twice a ttl raised to
    // 15 s by change-config, outlasted the 60 s bound and was reported as not recovered).
    let standby = c
        .agents
        .iter()
        .map(|a| a.name.clone())
        .find(|n| *n != original)
        .unwrap();
    let (j, context) = config_campaign(
        Command::new(pgha_bin()),
        &c.agent(&standby).config,
        &[
            "--rounds",
            "1",
            "--faults",
            "pause-agent",
            "--seed",
            "2",
            "--agent-pause",
            "10s",
        ],
        "6s",
        || c.logs(40),
    );
    assert_passed(&j, 1, &context);
    assert_eq!(j["faults"][0]["victim"].as_str(), Some(standby.as_str()));

    // That agent killed and started again: PostgreSQL ran on under its supervisor, whose parent
    // is no longer an agent. The agent is still found, by the member's lock (before: "the
    // supervisor's parent is not `pgha agent`", and the fault could not be injected).
    c.agent_mut(&standby).kill();
    c.agent_mut(&standby).start();
    assert_eq!(c.wait_converged(Duration::from_secs(60)), original);
    let (j, context) = config_campaign(
        Command::new(pgha_bin()),
        &c.agent(&standby).config,
        &["--rounds", "1", "--faults", "pause-agent", "--seed", "3"],
        "60s",
        || c.logs(40),
    );
    assert_passed(&j, 1, &context);
    assert_eq!(j["faults"][0]["victim"].as_str(), Some(standby.as_str()));
}

/// `pgha chaos --config CONFIG ARGS` (short gaps, JSON, recovery `bound`: 120 s where a
/// fenced leader may rewind only after failing to stream) run by `cmd` (the binary, or
/// `ip netns exec` of it), which must exit 0; its summary, and its output with `explain()`.
fn config_campaign(
    mut cmd: Command,
    config: &Path,
    args: &[&str],
    bound: &str,
    explain: impl Fn() -> String,
) -> (Value, String) {
    let out = cmd
        .args(["chaos", "--config"])
        .arg(config)
        .args(args)
        .args(["--min-gap", "500ms", "--max-gap", "1s", "--json"])
        .args(["--recovery-bound", bound])
        .output()
        .expect("run pgha chaos");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr_of(&out));
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\n{}", explain());
    assert_eq!(out.status.code(), Some(0), "{context}");
    (summary_of(&stdout, &stderr), context)
}

/// The test clusters' lease ttl, in ms (`dist::TTL`).
const TTL_MS: f64 = dist::TTL.as_millis() as f64;

/// On test hosts (a network namespace each, see common/netns.rs), run from the leader's host:
/// isolate-host cuts that host off from etcd and the other members (iptables in its
/// namespace, both ways) for twice the ttl, lossy-host makes the links of the host that leads
/// then lose 30 % of their packets for four ttl, and a `--fault-command` (etcd-stall) stops
/// etcd for 4 s. In synchronous mode nothing acknowledged is lost and no second member
/// acknowledges writes; the isolated leader loses the lease and comes back as a standby, and
/// its host keeps no rule of the campaign afterwards.
#[test]
fn isolate_host_and_a_fault_command_on_test_hosts_lose_nothing() {
    let dynamic = vec![("synchronous_mode".to_string(), "\"on\"".to_string())];
    let c = netns::Cluster::start(&netns::Opts {
        dynamic,
        ..Default::default()
    });
    let leader = c.wait_converged(Duration::from_secs(60));
    pgha_testkit::wait_until("a synchronous standby", Duration::from_secs(30), || {
        c.sql_one(
            &leader,
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .filter(|n| n != "0")
    });
    let chaos = |host: &str, args: &[&str]| {
        let on_host = c.net.command(host, common::pgha_bin());
        config_campaign(on_host, &c.member(host).config, args, "120s", String::new)
    };

    let (j, context) = chaos(
        &leader,
        &["--rounds", "1", "--faults", "isolate-host", "--seed", "3"],
    );
    assert_passed(&j, 1, &context);
    let f = &j["faults"][0];
    assert_eq!(f["kind"], "isolate-host", "{context}");
    assert_eq!(f["victim"].as_str(), Some(leader.as_str()), "{context}");
    assert_ne!(
        f["leader_after"].as_str(),
        Some(leader.as_str()),
        "{context}"
    );
    let rules_left = |host: &str| {
        let rules = c
            .net
            .command(host, "iptables")
            .args(["-w", "-S"])
            .output()
            .expect("iptables -S");
        let rules = String::from_utf8_lossy(&rules.stdout).to_string();
        rules.contains("PGHA_CHAOS").then_some(rules)
    };
    assert_eq!(rules_left(&leader), None, "rules left behind");

    // The host that leads now loses 30 % of its packets for twice --agent-pause: whether it
    // keeps the lease or not, nothing is lost, and no rule stays.
    let leader = c.wait_converged(Duration::from_secs(60));
    let (j, context) = chaos(
        &leader,
        &["--rounds", "1", "--faults", "lossy-host", "--seed", "5"],
    );
    assert_passed(&j, 1, &context);
    let f = &j["faults"][0];
    assert_eq!(f["kind"], "lossy-host", "{context}");
    assert_eq!(f["victim"].as_str(), Some(leader.as_str()), "{context}");
    assert_eq!(rules_left(&leader), None, "rules left behind");

    let pids = Command::new("ip")
        .args(["netns", "pids", &c.net.host("etcd").ns])
        .output()
        .expect("ip netns pids");
    let etcd: u32 = String::from_utf8_lossy(&pids.stdout)
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("etcd runs in its namespace");
    let stall = format!("etcd-stall=kill -STOP {etcd}; sleep 4; kill -CONT {etcd}");
    let (j, context) = chaos(
        &leader,
        &[
            "--rounds",
            "1",
            "--faults",
            "etcd-stall",
            "--fault-command",
            &stall,
            "--seed",
            "4",
        ],
    );
    assert_passed(&j, 1, &context);
    assert_eq!(j["faults"][0]["kind"], "etcd-stall", "{context}");
    assert!(pgha_testkit::alive(etcd), "etcd was left stopped or gone");
}
