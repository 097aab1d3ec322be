//! One campaign: checks the cluster is healthy, starts the clients, injects faults one at a
//! time at random moments and waits for each recovery, then reads back what the final primary
//! holds, puts the cluster back and judges.

use std::collections::BTreeSet;
use std::time::Duration;

use pgha_core::{ClusterConfig, CommitLevel, SyncMode};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::cleanup;
use crate::clock::{duration, Clock, Micros};
use crate::config_change::ConfigChanges;
use crate::error::ChaosError;
use crate::faults::{self, FaultKind};
use crate::health;
use crate::monitor::Monitor;
use crate::not_injected::NotInjected;
use crate::progress::Progress;
use crate::recover;
use crate::summary::{self, FaultRecord, Gathered, Settings, Summary};
use crate::target::Target;
use crate::workload::{Ack, Workload, WorkloadOptions, CONNECT_TIMEOUT, TABLE};

/// After this many faults in a row that could not be injected (e.g. kills of a primary that
/// runs on another host), the campaign stops.
const MAX_SKIPPED: usize = 20;

/// When to stop injecting.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    Rounds(u64),
    Duration(Duration),
}

/// What a campaign does.
#[derive(Debug, Clone)]
pub struct Options {
    pub faults: Vec<FaultKind>,
    pub length: Length,
    pub seed: u64,
    /// How long the cluster may take to recover from one fault.
    pub recovery_bound: Duration,
    /// How long after a recovery the cluster may take to be healthy again before the next
    /// fault; past it the campaign stops (with the reasons why it is not).
    pub settle: Duration,
    /// The random pause before each fault is drawn from this range.
    pub pause: (Duration, Duration),
    /// How long `pause-agent` stops the agent [default: twice the lease ttl].
    pub agent_pause: Option<Duration>,
    pub workload: WorkloadOptions,
}

/// A finished campaign: its summary, and every acknowledged write (for the timeline).
pub struct Outcome {
    pub summary: Summary,
    pub acks: Vec<Ack>,
}

/// Runs a campaign against `target` until its length is reached or `cancel` turns true.
pub async fn run(
    target: &Target,
    opts: &Options,
    mut cancel: watch::Receiver<bool>,
    progress: &Progress,
) -> Result<Outcome, ChaosError> {
    let names: Vec<String> = target.members.iter().map(|m| m.name.clone()).collect();
    progress.status("checking the cluster");
    let before = health::check(&target.client, &names).await?;
    let faults_usable = faults::usable(&opts.faults, target);
    if faults_usable.is_empty() {
        return Err(ChaosError::Usage(
            "none of the faults asked for can be injected from here (kills need the member's \
             data directory on this machine)"
                .into(),
        ));
    }
    let config: ClusterConfig = target.client.get("/config").await?;
    let settings = settings(&config, opts, target);
    let mut changes = ConfigChanges::new(config);
    progress.event(format!(
        "pgha chaos: seed {}, leader {}, synchronous_mode {} (synchronous_commit {}), faults {}",
        opts.seed,
        before.leader,
        settings.synchronous_mode,
        settings.synchronous_commit,
        faults_usable
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    cleanup::create_table(target).await?;
    let clock = Clock::start();
    let monitor = Monitor::start(target.client.clone(), clock);
    let workload = Workload::start(target, clock, &opts.workload);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut problems = Vec::new();
    let mut interrupted = false;
    let mut stopped_by_us: BTreeSet<String> = BTreeSet::new();
    progress.status("waiting for the first acknowledged writes");
    match wait_first_writes(&workload, &mut cancel).await {
        Ok(true) => {}
        // Ctrl-C before anything happened: nothing to judge but the writes so far.
        Ok(false) => interrupted = true,
        Err(e) => {
            problems.push(e);
            interrupted = true;
        }
    }
    let mut current = before.clone();
    let mut skipped = 0;
    while !interrupted && !done(opts.length, records.len() as u64, clock.now()) {
        if skipped >= MAX_SKIPPED {
            problems.push(format!(
                "{MAX_SKIPPED} faults in a row could not be injected: see the lines above"
            ));
            break;
        }
        let pause = draw(&mut rng, opts.pause);
        progress.status(format!("next fault in {:.1} s", pause.as_secs_f64()));
        if cancelled_during(pause, &mut cancel).await {
            interrupted = true;
            break;
        }
        let kind = *faults_usable.choose(&mut rng).expect("not empty");
        progress.status(format!("injecting {kind}"));
        let at = clock.now();
        // Twice the ttl in force: a change-config may have changed it.
        let agent_pause = opts
            .agent_pause
            .unwrap_or(Duration::from_millis(2 * changes.in_force().ttl_ms));
        let injected =
            match faults::inject(kind, target, &current, &mut rng, agent_pause, &mut changes).await
            {
                Ok(i) => i,
                Err(e) => {
                    let then = NotInjected::after(&e);
                    let said = then.line(kind.name(), &e);
                    match then {
                        NotInjected::Skip => progress.event(said),
                        NotInjected::SkipOnceHealthy => {
                            progress.event(said);
                            match cleanup::wait_healthy(target, opts.settle).await {
                                Ok(h) => current = h,
                                Err(reasons) => {
                                    let e = ChaosError::Unhealthy { reasons };
                                    problems.push(format!("after {kind} was not injected: {e}"));
                                    interrupted = true;
                                    break;
                                }
                            }
                        }
                        NotInjected::Stop => {
                            problems.push(said);
                            interrupted = true;
                            break;
                        }
                    }
                    skipped += 1;
                    continue;
                }
            };
        skipped = 0;
        if let Some(m) = &injected.start_later {
            stopped_by_us.insert(m.clone());
        }
        progress.status(format!(
            "{kind} of {}: waiting for recovery",
            injected.victim
        ));
        let r = recover::wait(
            target,
            &injected,
            at,
            clock,
            &workload.record,
            opts.recovery_bound,
        )
        .await;
        if r.recovered.is_some() {
            if let Some(m) = &injected.start_later {
                stopped_by_us.remove(m);
            }
        }
        let record = FaultRecord {
            index: records.len() + 1,
            kind,
            victim: injected.victim.clone(),
            promoted: injected.promoted.clone(),
            detail: injected.detail.clone(),
            leader_before: current.leader.clone(),
            leader_after: r.leader_after.clone(),
            at,
            recovered: r.recovered,
            rejoined: r.rejoined,
            note: r.note.clone(),
            no_takeover: r.no_takeover,
        };
        progress.event(line(&record));
        progress.fault_done(duration(clock.now()));
        records.push(record);
        if r.recovered.is_none() {
            // The next fault would hit a cluster that has not recovered: stop here.
            interrupted = true;
            break;
        }
        // Recovered means every member streamed at one instant; one just back may stop for a
        // moment after (a follower's WAL receiver switching to the new timeline): the next
        // fault waits for the cluster to be healthy, for a while.
        match cleanup::wait_healthy(target, opts.settle).await {
            Ok(h) => current = h,
            Err(reasons) => {
                let e = ChaosError::Unhealthy { reasons };
                problems.push(format!("after fault {}: {e}", records.len()));
                interrupted = true;
                break;
            }
        }
    }
    if *cancel.borrow() {
        interrupted = true;
        progress.event("interrupted: stopping the clients, checking and cleaning up");
    }
    progress.status("stopping the clients");
    let record = workload.finish().await;
    let duration_us = clock.now();
    let leadership = monitor.finish().await;
    progress.status("reading back what the final primary holds");
    let settle = cleanup::wait_healthy(target, opts.recovery_bound).await;
    let (final_leader, present) = match &settle {
        Ok(h) => (Some(h.leader.clone()), read_ids(target, &h.leader).await),
        Err(why) => {
            problems.push(format!("not healthy at the end: {}", why.join("; ")));
            (None, None)
        }
    };
    progress.status("putting the cluster back");
    let stopped: Vec<String> = stopped_by_us.into_iter().collect();
    let cleanup = cleanup::restore(
        target,
        &before.leader,
        &stopped,
        changes.restore(),
        opts.recovery_bound,
    )
    .await;
    let acks = record.acks.lock().unwrap().clone();
    let failures = record.failures.lock().unwrap().clone();
    let summary = summary::summarize(Gathered {
        settings,
        started_unix_ms: clock.start_epoch_us() / 1000,
        duration: duration_us,
        interrupted,
        original_leader: before.leader,
        final_leader,
        acks: &acks,
        failures: &failures,
        attempts: record.attempts.load(std::sync::atomic::Ordering::Relaxed),
        reads_ok: record.reads_ok.load(std::sync::atomic::Ordering::Relaxed),
        present,
        faults: records,
        leadership,
        cleanup,
        problems,
    });
    progress.finish();
    Ok(Outcome { summary, acks })
}

/// What pgha promises under `config`.
fn settings(config: &ClusterConfig, opts: &Options, target: &Target) -> Settings {
    let waits = !matches!(
        config.synchronous_commit,
        CommitLevel::Off | CommitLevel::Local
    );
    Settings {
        seed: opts.seed,
        mode: target.mode,
        synchronous_mode: config.synchronous_mode,
        synchronous_commit: config.synchronous_commit,
        no_loss_promised: config.synchronous_mode != SyncMode::Off && waits,
        recovery_bound_s: opts.recovery_bound.as_secs_f64(),
        writers: opts.workload.writers,
        write_routes: target.writes.iter().map(ToString::to_string).collect(),
    }
}

fn done(length: Length, faults: u64, now: Micros) -> bool {
    match length {
        Length::Rounds(n) => faults >= n,
        Length::Duration(d) => now >= d.as_micros() as Micros,
    }
}

fn draw(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.gen_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}

/// Sleeps `d`; true when cancelled meanwhile.
async fn cancelled_during(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    if *cancel.borrow() {
        return true;
    }
    let sleep = tokio::time::sleep(d);
    tokio::select! {
        _ = sleep => {}
        _ = cancel.wait_for(|c| *c) => {}
    }
    let cancelled = *cancel.borrow();
    cancelled
}

/// Waits up to 30 s for the writers' first acknowledgements: `Ok(false)` when cancelled
/// meanwhile.
async fn wait_first_writes(
    workload: &Workload,
    cancel: &mut watch::Receiver<bool>,
) -> Result<bool, String> {
    for _ in 0..300 {
        if workload.record.acked() >= 10 {
            return Ok(true);
        }
        if cancelled_during(Duration::from_millis(100), cancel).await {
            return Ok(false);
        }
    }
    let errors = workload.record.failures.lock().unwrap();
    Err(format!(
        "the writers got no acknowledgement within 30 s (last error: {})",
        errors
            .last()
            .map_or("none".to_string(), |e| e.class.to_string())
    ))
}

/// Every id the campaign's table holds on `leader` (`None` when it cannot be read).
async fn read_ids(target: &Target, leader: &str) -> Option<BTreeSet<i64>> {
    let member = target.member(leader)?;
    let client = target.connect_member(member, CONNECT_TIMEOUT).await.ok()?;
    let rows = client
        .query(&format!("SELECT id FROM {TABLE}"), &[])
        .await
        .ok()?;
    Some(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// One fault as a line of the event log.
fn line(r: &FaultRecord) -> String {
    let secs = |t: Option<Micros>| {
        t.map_or("-".to_string(), |t| {
            format!("{:.2} s", (t - r.at) as f64 / 1e6)
        })
    };
    format!(
        "#{:<3} {:<15} {:<4} leader {} -> {}  recovered {}  rejoined {}{}{}",
        r.index,
        r.kind.name(),
        r.victim,
        r.leader_before,
        r.leader_after.as_deref().unwrap_or("?"),
        secs(r.recovered),
        secs(r.rejoined),
        r.detail
            .as_deref()
            .map(|d| format!("  [{d}]"))
            .unwrap_or_default(),
        r.note
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default()
    )
}
