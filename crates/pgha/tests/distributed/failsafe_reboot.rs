//! A member that confirmed a leader during a store outage reboots and comes back on etcd's
//! side while that leader still writes on its members' confirmations.

use super::*;

use nix::sys::signal::Signal;
use pgha_store::Store;

use super::writers::{assert_one_writer, Writers};

/// design.md, the leave row's last part: "a failsafe promise written before a reboot runs its
/// whole length again from the agent's start". Every member is cut off from etcd (ttl 10 s):
/// the leader L writes on under failsafe, every member confirming it. Six seconds in, S, a
/// member that confirmed it, goes through what a reboot does to it: every process of it killed
/// at once (agent, supervisor, postmaster), its promises' file left as a boot before this one
/// wrote it (another boot id, a boot-clock deadline that means nothing now), and it comes back
/// with its link to etcd, where L's key still stands. Once that key runs out S finds nobody
/// ahead of it, but it promised L not to take the lease: it must wait that promise out from
/// its start, while L, no longer confirmed by S, writes on until its last confirmations end
/// (past its key's end). One writer.
#[test]
fn a_member_rebooted_within_a_ttl_of_confirming_a_leader_waits_out_its_promise() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::prepare(&Options {
        relays: true,
        ..Options::default()
    });
    bootstrap_ttl(&c, 10000);
    c.launch();
    let leader = c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    sql(
        &rt,
        c.agent(&leader),
        "CREATE TABLE pgha_probe(member text, at timestamptz DEFAULT now()); SELECT 'ok'",
    )
    .expect("the probe table");
    let li = c.index(&leader);
    let si = (li + 1) % c.agents.len();
    let rebooted = c.agents[si].name.clone();
    let writers = {
        let all: Vec<&Agent> = c.agents.iter().collect();
        Writers::start(&rt, &all, Duration::from_millis(50))
    };
    let store = etcd_store(&rt, &c);

    let confirmed = |c: &DistCluster| {
        c.agents[li]
            .log()
            .matches("every member confirmed this leader")
            .count()
    };
    let before = confirmed(&c);
    let cut_at = Instant::now();
    for relay in &c.relays {
        relay.sever();
    }
    wait_until(
        "every member to confirm the leader cut off",
        Duration::from_secs(10),
        || (confirmed(&c) > before).then_some(()),
    );
    // Late enough for confirmations to carry the leader past its key's end in etcd (about 10
    // s after the cut), early enough that the member, back, still sees that key: it has seen a
    // leader since it started, so it runs as soon as the key is gone (a member that has seen
    // none waits up to a ttl for the last leader to report first).
    std::thread::sleep(Duration::from_secs(6).saturating_sub(cut_at.elapsed()));
    // The reboot: every process of the member at once, then its promises as another boot left
    // them.
    let postmaster = c.agents[si].postmaster_pid().expect("a running postmaster");
    let supervisor = parent_of(postmaster).expect("the postmaster's supervisor");
    c.agents[si].kill();
    for pid in [supervisor, postmaster] {
        pgha_testkit::signal(pid, Signal::SIGKILL);
    }
    let promises = c.root.join(format!("{rebooted}.failsafe"));
    let written = std::fs::read_to_string(&promises).expect("the member's promises");
    let from_another_boot: String = written
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 3, "a promise line: {line:?}");
            format!("0f-another-boot 0 {}\n", fields[2..].join(" "))
        })
        .collect();
    assert!(
        written.contains(&format!(" {leader} ")),
        "{rebooted} kept no promise to {leader}: {written:?}"
    );
    std::fs::write(&promises, &from_another_boot).unwrap();
    c.relays[si].heal();
    let key_held = rt
        .block_on(store.snapshot())
        .ok()
        .and_then(|s| s.leader)
        .map(|l| l.holder);
    assert_eq!(
        key_held.as_deref(),
        Some(leader.as_str()),
        "{leader}'s key was gone before {rebooted} came back: the arrangement needs it there"
    );
    let back_at = Instant::now();
    c.agents[si].start();

    let (next, took_writes_at) = writers.await_another_writer(&leader, cut_at);
    let attempts = writers.finish_after(Duration::from_millis(500), &rt);
    eprintln!(
        "{rebooted} back {:.1} s after the cut; {next} took writes {:.1} s after that",
        back_at.duration_since(cut_at).as_secs_f64(),
        took_writes_at.duration_since(back_at).as_secs_f64()
    );
    assert_one_writer(&attempts, cut_at);
    let log = c.agents[si].log();
    assert!(
        log.contains("failsafe: a promise not to take the lease for"),
        "{rebooted} read no promise from before its reboot:\n{log}"
    );

    for relay in &c.relays {
        relay.heal();
    }
    c.wait_converged(Duration::from_secs(60));
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}
