//! Acceptance 4: durability under a killed primary.

use super::*;

use common::status::primary_of;

/// The machine under `pgha up` loses power, synchronous mode on, PostgreSQL with `fsync=on`:
/// `pgha up` and every supervisor, postmaster and backend killed in one instant, a writer
/// writing, the disk keeping only what was synced. `pgha up` again brings the same cluster
/// back: every row whose commit was acknowledged, the settings its store held (one changed just
/// before), the history it had recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_under_pgha_up_loses_no_acknowledged_commit() {
    let extra = ["--synchronous-mode", "on", "--param", "fsync=on"];
    let mut c = Cluster::start_on_own_disk(&extra, CONVERGE);
    c.wait_settled_sync(CONVERGE);
    c.create_table().await;
    c.config_ok("set", &["maximum_lag_on_failover=2097152"]);
    let history = c.history();
    let writer = writer(&c, 1);
    c.wait_writes(&writer, 50, Duration::from_secs(20)).await;
    let lost_power = Instant::now();
    c.lose_power();
    let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
    let mut squatters = c.reuse_postmaster_pids();
    c.power_back();
    let status = c.up.status().unwrap();
    let primary = primary_of(&status).unwrap_or_else(|| c.fail("no primary"));
    eprintln!(
        "power back: {primary} primary, every standby streaming {:?} after the loss; {} writes \
         acknowledged before it",
        lost_power.elapsed(),
        acked.len()
    );
    let lost = c.lost(&primary, &acked).await;
    if !lost.is_empty() {
        c.fail(&format!(
            "{} acknowledged rows lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    assert_eq!(c.show(&primary, "fsync").await, "on");
    let shown = c.config_ok("show", &[]);
    assert!(
        shown.contains("synchronous_mode") && shown.contains("2097152"),
        "the settings after the power loss:\n{shown}"
    );
    let after = c.history();
    assert_eq!(
        after.get(..history.len()),
        Some(&history[..]),
        "the history before the power loss is not the start of the one after"
    );
    assert_eq!(
        squatters.gone(),
        Vec::<u32>::new(),
        "processes holding the pids of the lost postmasters were signalled"
    );
    let log = c.up.log();
    assert!(
        log.contains("which is not a postmaster of this data directory"),
        "pgha up's log does not say why it disregarded a postmaster.pid:\n{}",
        pgha_testkit::tail_of(&log, 40)
    );
}

fn durability_rounds() -> usize {
    std::env::var("PGHA_DURABILITY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Kills the primary (postmaster SIGKILL, then `pgha stop --mode immediate`) at a random moment
/// under a writer going through the read-write entry point, `rounds` times; after each
/// failover every acknowledged row must be on the new primary.
async fn durability(mode: &str) {
    use rand::Rng;
    let rounds = durability_rounds();
    let (c, _) = start_sync(&["--synchronous-mode", mode]).await;
    let mut all_acked: Vec<i64> = Vec::new();
    let mut next_id = 1i64;
    let mut failover_times = Vec::new();
    for round in 1..=rounds {
        let status = c.up.status().unwrap();
        let old = primary_of(&status).unwrap_or_else(|| c.fail("no primary"));
        let writer = writer(&c, next_id);
        c.wait_writes(&writer, 20, Duration::from_secs(20)).await;
        let delay = rand::thread_rng().gen_range(0..2000);
        tokio::time::sleep(Duration::from_millis(delay)).await;

        c.kill_postmaster(&old);
        let killed = Instant::now();
        c.ok("stop", &[&old, "--mode", "immediate"]);
        let new = c.wait_new_primary(&[&old]);
        // The writer goes on through the entry point, on the new primary.
        c.wait_writes(&writer, 20, CONVERGE).await;
        failover_times.push(killed.elapsed());
        let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
        next_id = acked.last().copied().unwrap_or(next_id) + 1_000;
        all_acked.extend(&acked);

        let lost = c.lost(&new, &all_acked).await;
        eprintln!(
            "{mode} round {round}/{rounds}: killed {old} after {delay} ms, {new} took over, \
             {} acknowledged this round ({} in all), {} lost",
            acked.len(),
            all_acked.len(),
            lost.len()
        );
        if !lost.is_empty() {
            c.fail(&format!(
                "{mode} round {round}: {} acknowledged rows lost after {old} → {new}: {:?}",
                lost.len(),
                &lost[..lost.len().min(20)]
            ));
        }

        // Heal: the old primary rejoins, and the synchronous set holds both standbys again.
        c.ok("start", &[&old]);
        c.wait_settled_sync(Duration::from_secs(60));
    }
    failover_times.sort();
    eprintln!(
        "{mode}: {rounds} kills, {} acknowledged rows, 0 lost; kill → writes resumed: median {:?}, max {:?}",
        all_acked.len(),
        failover_times[failover_times.len() / 2],
        failover_times.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_on() {
    durability("on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_strict() {
    durability("strict").await;
}
