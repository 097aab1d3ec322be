//! Issue 12: every supported PostgreSQL major version (14 to 18) runs the core scenarios against
//! real servers: bootstrap, stop-primary failover and rejoin, the best standby promoted after a
//! crash, a divergent rejoin through pg_rewind, a switchover, and synchronous mode `on` losing no
//! acknowledged write when the primary is killed.
//!
//! 15 is Debian's (`/usr/lib/postgresql/15/bin`); 14, 16, 17 and 18 are the relocatable server
//! builds `scripts/install-deps.sh test` fetches into `$PGHA_CACHE` (default `/var/cache/pgha`).
//! A missing one fails its test, naming the command that fetches it: nothing is skipped.
//!
//! One test per version, one 3-member `pgha up --pg-bin-dir` each, one at a time.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, MEMBERS};
use common::status::{events, members, no_rewind, pair, primary_of};
use common::{pgha, stderr_of};
use nix::sys::signal::Signal;
use pgha_testkit::poll_async;
use pgha_testkit::servers::{bin_dir, FETCHED};
use pgha_testkit::{children_of, cmdline, connect, is_stopped, signal, wait_until};

const CONVERGE: Duration = Duration::from_secs(30);

/// The core scenarios on PostgreSQL `major`, in one cluster.
async fn core_scenarios(major: u32) {
    let t0 = Instant::now();
    let mut steps: Vec<String> = Vec::new();
    let mut lap = Instant::now();
    let mut step = |name: &str| {
        steps.push(format!("{name} {:.1}s", lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let bin = bin_dir(major);

    // Bootstrap: a primary and two streaming standbys, all running the version asked for.
    let c = Cluster::start(&["--pg-bin-dir", bin.to_str().unwrap()], CONVERGE);
    c.wait_converged("n1", &[]).await;
    let mut versions = BTreeSet::new();
    for name in MEMBERS {
        let client = connect(&c.member_url(name)).await;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
                &[],
            )
            .await
            .unwrap();
        let (version, num): (String, i32) = (row.get(0), row.get(1));
        if num / 10_000 != major as i32 || !version.starts_with(&format!("{major}.")) {
            c.fail(&format!(
                "{name} runs PostgreSQL {version} ({num}), not {major} from {}",
                bin.display()
            ));
        }
        versions.insert(version);
    }
    eprintln!(
        "PostgreSQL {major}: SHOW server_version = {versions:?} on n1, n2, n3 ({})",
        bin.display()
    );
    c.create_table().await;
    c.write("n1", "bootstrap", 0..10).await;
    c.wait_identical("n1", &MEMBERS).await;
    step("bootstrap");

    // Stop-primary failover: a clean stop, a caught-up standby takes over, the old primary
    // follows it without a rewind.
    c.ok("stop", &["n1"]);
    let first = c.wait_new_primary(&["n1"]);
    c.write(&first, "after-stop", 10..20).await;
    c.ok("start", &["n1"]);
    c.wait_converged(&first, &[]).await;
    assert_eq!(c.wait_identical(&first, &MEMBERS).await.0, 20);
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [pair("n1", &first)],
        "{history:#?}"
    );
    assert!(
        no_rewind(&history),
        "a cleanly stopped primary needs no rewind: {history:#?}"
    );
    step("stop-failover");

    // Crash under writes, made deterministic: the primary's WAL sender to the standby the
    // tie-break favours (the smaller name) is frozen, rows go to the other standby only; then
    // both senders are frozen and rows go to the primary only (WAL no standby has). The
    // primary is killed: the standby that is ahead must win, the other follows it, and the old
    // primary, which diverged, rejoins through pg_rewind (not a re-clone).
    let old = first.clone();
    // A standby would give up on its frozen sender after pgha's replication timeout (5 s
    // here) and stream again from a new one.
    c.replication_timeouts_of_a_minute().await;
    let mut standbys: Vec<&str> = MEMBERS.into_iter().filter(|n| *n != old).collect();
    standbys.sort();
    let (behind, ahead) = (standbys[0], standbys[1]);
    let senders: Vec<(i32, String)> = connect(&c.member_url(&old))
        .await
        .query(
            "SELECT pid, application_name FROM pg_stat_replication WHERE application_name <> ''",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let sender_to = |name: &str| {
        senders
            .iter()
            .find(|(_, app)| app == name)
            .map(|(pid, _)| *pid as u32)
            .unwrap_or_else(|| c.fail(&format!("no WAL sender to {name}: {senders:?}")))
    };
    let freeze = |pid: u32| {
        assert!(signal(pid, Signal::SIGSTOP), "SIGSTOP to WAL sender {pid}");
        wait_until("a frozen WAL sender", Duration::from_secs(5), || {
            is_stopped(pid).then_some(())
        });
    };
    let frozen = [sender_to(behind), sender_to(ahead)];
    freeze(frozen[0]);
    c.write(&old, "ahead-only", 100..120).await;
    let received = poll_async(CONVERGE, Duration::from_millis(50), || async {
        (c.count(ahead, 100..120).await == 20).then_some(())
    })
    .await;
    if received.is_none() {
        c.fail(&format!("{ahead} did not receive the rows {behind} lacks"));
    }
    freeze(frozen[1]);
    c.write(&old, "diverged", 200..220).await;
    assert_eq!(c.count(behind, 100..120).await, 0, "{behind} got rows");
    // An immediate stop: once the postmaster has sent SIGQUIT to its children (its
    // checkpointer is gone), the frozen senders are killed without ever running again.
    let postmaster = c.postmaster_pid(&old);
    let stop = {
        let (dir, old) = (c.dir().to_string(), old.clone());
        std::thread::spawn(move || pgha(&["stop", "--dir", &dir, &old, "--mode", "immediate"]))
    };
    wait_until(
        "the old primary's immediate shutdown",
        Duration::from_secs(30),
        || {
            let left = children_of(postmaster);
            if !left
                .iter()
                .any(|pid| cmdline(*pid).contains("checkpointer"))
            {
                for pid in frozen {
                    signal(pid, Signal::SIGKILL);
                }
            }
            stop.is_finished().then_some(())
        },
    );
    let out = stop.join().unwrap();
    if !out.status.success() {
        c.fail(&format!(
            "pgha stop {old} --mode immediate: {}",
            stderr_of(&out)
        ));
    }
    let promoted = c.wait_new_primary(&[&old]);
    if promoted != ahead {
        c.fail(&format!(
            "{promoted} was promoted, but {ahead} had received more WAL than {behind}"
        ));
    }
    assert_eq!(
        c.count(ahead, 200..220).await,
        0,
        "{ahead} got diverged rows"
    );
    c.write(ahead, "after-crash", 300..320).await;
    c.ok("start", &[&old]);
    c.wait_converged(ahead, &[]).await;
    assert_eq!(c.wait_identical(ahead, &MEMBERS).await.0, 60);
    for name in MEMBERS {
        assert_eq!(c.count(name, 200..220).await, 0, "diverged rows on {name}");
    }
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [pair("n1", &old), pair(&old, ahead)],
        "{history:#?}"
    );
    let rewinds = events(&history, "rejoin_rewind");
    assert!(
        rewinds.iter().any(|(from, _)| *from == old),
        "{old} diverged but did not rejoin through pg_rewind: {history:#?}"
    );
    assert!(
        !rewinds.iter().any(|(from, _)| from == behind),
        "{behind} was behind, not diverged: it must follow without a rewind: {history:#?}"
    );
    assert!(
        events(&history, "rejoin_reclone").is_empty(),
        "re-cloned instead of rewound: {history:#?}"
    );
    let kept_aside: Vec<String> = std::fs::read_dir(c.up.dir.join(&old))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("data.old"))
        .collect();
    assert!(kept_aside.is_empty(), "{old} was re-cloned: {kept_aside:?}");
    step("crash-best-standby-rewind");

    // Switchover to the member that followed: planned, nothing lost, no rewind.
    c.ok("switchover", &["--to", behind]);
    if primary_of(&c.up.status().unwrap()).as_deref() != Some(behind) {
        c.fail(&format!("{behind} does not lead after the switchover"));
    }
    c.write(behind, "after-switchover", 400..410).await;
    c.wait_converged(behind, &[]).await;
    assert_eq!(c.wait_identical(behind, &MEMBERS).await.0, 70);
    let history = c.history();
    assert_eq!(
        events(&history, "switchover"),
        [pair(ahead, behind)],
        "{history:#?}"
    );
    assert_eq!(events(&history, "rejoin_rewind").len(), 1, "{history:#?}");
    step("switchover");

    // Synchronous mode `on`, set live; the primary is killed under writes through the
    // read-write entry point: every acknowledged write is on the new primary.
    c.config_ok("set", &["synchronous_mode=on"]);
    c.wait_status("a settled synchronous standby", CONVERGE, |s| {
        let sync = members(s)
            .iter()
            .filter(|m| m["sync_state"] == "sync")
            .count();
        let set = s["synchronous"]["set"].as_array().map_or(0, |a| a.len());
        (primary_of(s).as_deref() == Some(behind) && sync == 1 && set == 2).then_some(())
    });
    let names = c.show(behind, "synchronous_standby_names").await;
    assert!(!names.is_empty(), "synchronous_standby_names is empty");
    let writer = c.entry_writer(1_000_000, Duration::from_secs(3), Duration::from_secs(30));
    c.wait_writes(&writer, 50, CONVERGE).await;
    c.kill_postmaster(behind);
    c.ok("stop", &[behind, "--mode", "immediate"]);
    let last = c.wait_new_primary(&[behind]);
    c.wait_writes(&writer, 50, CONVERGE).await;
    let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
    let lost = c.lost(&last, &acked).await;
    if !lost.is_empty() {
        c.fail(&format!(
            "synchronous mode on: {} of {} acknowledged writes lost after {behind} → {last}: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    step("sync-on-kill");
    eprintln!(
        "PostgreSQL {major}: {} writes acknowledged through the kill, none lost; {} in {:.1}s",
        acked.len(),
        steps.join(", "),
        t0.elapsed().as_secs_f64()
    );
}

/// One test per version, each `postgresql_<major>`.
macro_rules! version_tests {
    ($($name:ident: $major:literal),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            core_scenarios($major).await;
        }
    )*};
}

version_tests!(postgresql_14: 14, postgresql_15: 15, postgresql_16: 16, postgresql_17: 17, postgresql_18: 18);

/// `wal_status` of the replication slot `slot` on the server `client` is connected to.
async fn slot_status(client: &tokio_postgres::Client, slot: &str) -> String {
    client
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

/// A standby stopped while its primary writes past `max_slot_wal_keep_size`: PostgreSQL
/// invalidates its slot and removes the WAL it needs. Once started again it cannot stream, so
/// it is re-cloned (its data moved aside, kept), and streams again through a slot made anew.
/// On PostgreSQL 18 an invalidated physical slot refuses even pg_basebackup: before, every
/// clone failed ("can no longer access replication slot") and the member stayed without data
/// for good (PostgreSQL 15 revives such a slot once used, and never showed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_slot_was_invalidated_is_recloned_and_streams_again() {
    let bin = bin_dir(18);
    let c = Cluster::start(&["--pg-bin-dir", bin.to_str().unwrap()], CONVERGE);
    c.wait_converged("n1", &[]).await;
    c.config_ok(
        "set",
        &[
            "postgresql.max_slot_wal_keep_size=32MB",
            "stream_timeout_ms=3000",
        ],
    );
    c.create_table().await;
    c.ok("stop", &["n3"]);
    // WAL past wal_keep_size (128MB, pgha's) and max_slot_wal_keep_size, in whole segments.
    let primary = connect(&c.member_url("n1")).await;
    primary
        .batch_execute("CREATE TABLE filler(x text)")
        .await
        .unwrap();
    for _ in 0..12 {
        primary
            .batch_execute(
                "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000); \
                 SELECT pg_switch_wal()",
            )
            .await
            .unwrap();
    }
    primary.batch_execute("CHECKPOINT").await.unwrap();
    let status = slot_status(&primary, "n3").await;
    assert_eq!(
        status, "lost",
        "the slot was not invalidated: the setup is wrong"
    );
    c.write("n1", "while-n3-was-away", 0..10).await;
    c.ok("start", &["n3"]);
    c.wait_converged("n1", &[]).await;
    assert_eq!(c.wait_identical("n1", &MEMBERS).await.0, 10);
    let moved_aside = std::fs::read_dir(c.data_dir("n3").parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("data.old-"));
    assert!(moved_aside, "n3's old data was not kept beside the new");
    let status = slot_status(&primary, "n3").await;
    assert_eq!(status, "reserved");
}

/// The versions tested here are the supported range pgha announces, and install-deps.sh
/// fetches exactly the builds this file expects.
#[test]
fn tested_versions_are_the_supported_range_and_fetched() {
    use pgha_pg::binaries::{MAX_TESTED_MAJOR, MIN_MAJOR};
    let mut majors: Vec<u32> = FETCHED.iter().map(|(m, _)| *m).collect();
    majors.push(15);
    majors.sort();
    assert_eq!(majors, (MIN_MAJOR..=MAX_TESTED_MAJOR).collect::<Vec<_>>());
    assert_eq!(majors, pgha_testkit::servers::MAJORS);
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/install-deps.sh"
    ))
    .unwrap();
    let fetched: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fetch_pg "))
        .collect();
    for (_, version) in FETCHED {
        assert!(
            fetched.contains(version),
            "scripts/install-deps.sh does not fetch PostgreSQL {version}: {fetched:?}"
        );
    }
}
