//! Helpers shared by several topics: starved walsenders, write gaps, disks, watched roles.

use super::*;

use nix::sys::signal::Signal;
use pgha_testkit::{alive, children_of, cmdline, crash_postmaster, signal};

/// How long before PostgreSQL must stop taking writes (the supervisor's deadline, the agent's
/// demotion) the walsender-starving tests stop the walsenders.
pub(super) const STARVED_BEFORE_DEADLINE: Duration = Duration::from_millis(120);

/// Sleeps until the boot-clock instant `at_ms` (the clock of fencing deadlines).
pub(super) fn sleep_until_boot_ms(at_ms: u64) {
    std::thread::sleep(Duration::from_millis(at_ms.saturating_sub(boot_clock_ms())));
}

/// Stops (SIGSTOP) the walsenders of postmaster `pm`, `member`'s, [`STARVED_BEFORE_DEADLINE`]
/// before the boot-clock instant `due` (`what` says what is due then), as a host out of CPU
/// would starve them; marks it and returns their pids for [`resume`].
pub(super) fn starve_walsenders(
    ck: &Checker,
    member: &str,
    pm: u32,
    due: u64,
    what: &str,
) -> Vec<u32> {
    sleep_until_boot_ms(due - STARVED_BEFORE_DEADLINE.as_millis() as u64);
    let walsenders: Vec<u32> = children_of(pm)
        .into_iter()
        .filter(|p| cmdline(*p).contains("walsender"))
        .filter(|p| signal(*p, Signal::SIGSTOP))
        .collect();
    let postmaster = if alive(pm) { "alive" } else { "gone" };
    ck.mark(&format!(
        "SIGSTOP of {member}'s walsenders {walsenders:?}, {} ms before {what} (postmaster \
         {postmaster})",
        due as i64 - boot_clock_ms() as i64
    ));
    walsenders
}

/// SIGCONT of the processes [`starve_walsenders`] stopped.
pub(super) fn resume(pids: &[u32]) {
    for p in pids {
        signal(*p, Signal::SIGCONT);
    }
}

/// A cluster on disks of its own, writers writing, whose leader's PostgreSQL crashed (kill -9
/// of the postmaster and every backend) while its disk is frozen, once its agent has begun to
/// start it again as the primary: the start hangs on the disk.
pub(super) struct HungRestart {
    pub(super) c: Cluster,
    pub(super) leader: String,
    pub(super) ck: Checker,
    /// The pids killed, the postmaster first (those waiting on the disk die when it thaws).
    pub(super) killed: Vec<u32>,
    /// The leader's log before the crash.
    pub(super) log_at: usize,
}

/// Starts the cluster, freezes the leader's disk, kills its PostgreSQL, and waits until its
/// agent restarts it ([`HungRestart`]).
pub(super) fn restart_hung_on_frozen_disk() -> HungRestart {
    let (mut c, leader) = start(&Opts {
        member_disks: true,
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    let pm = running_postmaster(&c, &leader);
    let log_at = c.log_len(&leader);
    c.freeze_disk(&leader);
    ck.mark(&format!("{leader}'s disk frozen (fsfreeze)"));
    // commits wait on the frozen disk from now on; let the WAL senders pass on what was
    // flushed (and acknowledged) before the freeze
    std::thread::sleep(Duration::from_millis(300));
    let killed = crash_postmaster(pm);
    ck.mark(&format!(
        "SIGKILL of {leader}'s postmaster {pm} and its {} children (those waiting on the disk \
         die when it thaws)",
        killed.len() - 1
    ));
    wait_logged(
        &c,
        &leader,
        log_at,
        "restarting it",
        &format!("{leader}'s agent restarting its crashed primary"),
        Duration::from_secs(20),
    );
    HungRestart {
        c,
        leader,
        ck,
        killed,
        log_at,
    }
}

/// Whether `member` acknowledges a write within `within` of `since`; marks when it first did
/// (after `what`, as the mark says).
pub(super) fn writes_back_on(
    ck: &Checker,
    member: &str,
    since: Instant,
    within: Duration,
    what: &str,
) -> bool {
    let back = ck.wait_acks(member, since, 1, within);
    let ms = ck
        .first_ack_by(member, since)
        .map(|t| t.duration_since(since).as_millis());
    ck.mark(&format!("writes on {member} {ms:?} ms after {what}"));
    back
}

/// The longest time within [`from`, `to`) without an acknowledged write (by any member).
pub(super) fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|a| a.acked)
        .filter(|t| *t >= from && *t < to)
        .collect();
    times.sort();
    let mut edges = vec![from];
    edges.extend(times);
    edges.push(to);
    edges
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// A synchronous cluster whose members' data sit on disks of their own (with `host_disks`,
/// each member directory on a small file system of its own, the data disk inside it), writers
/// writing to its leader.
pub(super) fn start_writing_on_disks(host_disks: bool) -> (Cluster, String, Checker) {
    let (c, leader) = start_sync_with(Opts {
        member_disks: true,
        host_disks,
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    (c, leader, ck)
}

/// The data directories `member` moved aside (`data.old-*`) for a re-clone.
pub(super) fn moved_aside(c: &Cluster, member: &str) -> Vec<String> {
    std::fs::read_dir(&c.member(member).dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("data.old-"))
                .collect()
        })
        .unwrap_or_default()
}

/// What every member's `/primary` answered, polled while a fault lasts: expected are 200 from
/// the leader and anything else from the others.
#[derive(Default)]
pub(super) struct RoleWatch {
    last: std::collections::BTreeMap<String, Option<u16>>,
    /// Each unexpected answer, when it began.
    pub(super) odd: Vec<String>,
}

impl RoleWatch {
    /// Polls every 200 ms until `hold` has passed; marks each change to or from an unexpected
    /// answer.
    pub(super) fn watch(&mut self, c: &Cluster, ck: &Checker, leader: &str, hold: Duration) {
        let deadline = Instant::now() + hold;
        while Instant::now() < deadline {
            for m in &c.members {
                let answer = m.get("/primary").map(|r| r.0);
                let expected = |a: Option<u16>| (m.name == leader) == (a == Some(200));
                let before = self.last.insert(m.name.clone(), answer);
                let changed = before.is_some_and(|b| b != answer);
                if !expected(answer) && (changed || before.is_none()) {
                    let what = format!("{} /primary answers {answer:?}", m.name);
                    ck.mark(&what);
                    self.odd
                        .push(format!("[{} ms] {what}", ck.ms(Instant::now())));
                } else if changed && before.is_some_and(|b| !expected(b)) {
                    ck.mark(&format!("{} /primary answers {answer:?} again", m.name));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
