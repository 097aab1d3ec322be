//! Fencing (I1) that does not need this agent to be alive: after every step the agent writes
//! the instant by which PostgreSQL must have stopped accepting writes into the member's lease
//! file; the member's supervisor process (`pgha supervise`, the postmaster's parent) kills
//! PostgreSQL once that instant passes, whether this agent is running, dead or paused.

use pgha_pg::lease_file::{boot_clock_ms, LeaseFile};

// The supervisor's fast shutdown begins no earlier than a live agent demotes (half a margin
// before the deadline it writes), whatever margin the configuration sets.
const _: () = assert!(
    pgha_pg::supervisor::STOP_FAST_BEFORE.as_millis() * 2
        <= pgha_core::config::MIN_SAFETY_MARGIN_MS as u128
);

/// What the agent knows after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceState {
    /// The lease holder: PostgreSQL must be stopped by this boot-clock instant (ms), the
    /// core's fence deadline (between its own demotion deadline and the store's expiry).
    LeaseUntil(u64),
    /// No lease, and PostgreSQL is confirmed stopped or read-only: nothing to fence.
    NothingWritable,
    /// No lease, but PostgreSQL may still be writable (a demote in flight, a probe that failed):
    /// the deadline armed earlier stays.
    Unsure,
    /// As `Unsure`, but a renewal sent and not answered may end the lease sooner: an armed
    /// deadline later than this boot-clock instant (ms) is brought forward to it; a disarmed
    /// file stays disarmed.
    NoLaterThan(u64),
}

/// What the agent knows of its member after a step, to choose the [`FenceState`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AfterStep {
    /// The core's fence deadline on the boot clock (ms), while it holds the lease.
    pub deadline: Option<u64>,
    /// Maintenance mode.
    pub paused: bool,
    /// A job in flight may leave PostgreSQL writable (a primary started, a promotion).
    pub job_may_make_writable: bool,
    /// A postmaster is running.
    pub postmaster_running: bool,
    /// The last probe answered: a standby (in recovery), not writable.
    pub read_only: bool,
    /// Without a lease: the core's fence cap on the boot clock (ms), from renewals sent and
    /// not answered (`Member::fence_cap`).
    pub cap: Option<u64>,
}

impl AfterStep {
    /// PostgreSQL is not writable, nor may a job in flight make it so: no postmaster, or a
    /// standby that answered. (What is left to fence without a lease; a lease or the
    /// maintenance mode does not change it.)
    pub fn known_not_writable(&self) -> bool {
        !self.job_may_make_writable && (!self.postmaster_running || self.read_only)
    }
}

impl FenceState {
    /// The state the lease file must show after a step.
    pub fn after(step: AfterStep) -> FenceState {
        match step.deadline {
            // Maintenance mode: no member takes the lease on its own, so the agent may stop or
            // be upgraded without PostgreSQL being fenced (as Patroni disables its watchdog).
            Some(_) if step.paused => FenceState::NothingWritable,
            Some(at) => FenceState::LeaseUntil(at),
            // A job that starts a primary (or promotes) may make it writable after the lease
            // lapsed: the deadline stays armed, so its supervisor never starts it past the
            // deadline and kills it at the deadline if it started before.
            None if step.known_not_writable() => FenceState::NothingWritable,
            None => FenceState::unsure(step.cap),
        }
    }

    fn unsure(cap: Option<u64>) -> FenceState {
        cap.map_or(FenceState::Unsure, FenceState::NoLaterThan)
    }
}

/// The agent's side of the lease file.
pub struct Fencing {
    lease: LeaseFile,
    /// What this agent last wrote (`None`: nothing yet; a restarted agent keeps the file as the
    /// previous one left it until it knows better).
    written: Option<Option<u64>>,
    /// The postmaster this agent asked to promote.
    promotion_asked_of: Option<i32>,
    /// The deadline a previous agent left armed beside a running postmaster, as this agent
    /// first found them: `None` until its first step looked.
    inherited: Option<Inherited>,
    /// The watchdog's timeout fitted half the margin when last looked at.
    room_fitted: bool,
    /// The running postmaster and the watchdog room (ms) of the supervisor it runs under, as
    /// read from that supervisor's command line.
    supervisor_room: Option<(i32, u64)>,
}

/// A deadline this agent found armed: until when, beside which postmaster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inherited {
    Armed { until: u64, postmaster: i32 },
    Nothing,
}

impl Fencing {
    pub fn new(lease: LeaseFile) -> Self {
        Fencing {
            lease,
            written: None,
            promotion_asked_of: None,
            inherited: None,
            room_fitted: true,
            supervisor_room: None,
        }
    }

    /// How long (ms) after its last keep-alive the watchdog of the supervisor running
    /// postmaster `pid` may reset the host (0: none, or no `pgha supervise` runs it): that
    /// supervisor may have been started by an earlier agent, its timeout chosen from another
    /// safety margin than this agent's. Read once per postmaster.
    pub fn running_supervisors_room(&mut self, pid: Option<i32>) -> u64 {
        let Some(pid) = pid else {
            self.supervisor_room = None;
            return 0;
        };
        match self.supervisor_room {
            Some((known, room)) if known == pid => room,
            _ => {
                let room = pgha_pg::supervisor::watchdog_of_supervisor(pid)
                    .map_or(0, |w| w.reset_after_ms());
                self.supervisor_room = Some((pid, room));
                room
            }
        }
    }

    /// Whether a watchdog timeout of `room_ms` stopped fitting half the `margin_ms` since the
    /// last call (true once per time it stops).
    pub fn room_stopped_fitting(&mut self, room_ms: u64, margin_ms: u64) -> bool {
        let fits = room_ms.saturating_mul(2) <= margin_ms;
        let stopped = self.room_fitted && !fits;
        self.room_fitted = fits;
        stopped
    }

    /// The postmaster whose supervisor's watchdog room was last read.
    pub fn last_postmaster(&self) -> Option<i32> {
        self.supervisor_room.map(|(pid, _)| pid)
    }

    /// A promotion is about to be asked of the postmaster `pid` (`pg_ctl promote`).
    pub fn promotion_asked_of(&mut self, pid: Option<i32>) {
        self.promotion_asked_of = pid;
    }

    /// Whether the running postmaster `pid` may turn writable whatever it answers now, so that
    /// its deadline must stay: a promotion was asked of it (PostgreSQL replays all it received
    /// before it leaves recovery, minutes with a large backlog, and the job watching it may
    /// have ended first), or it is the postmaster this agent found beside a deadline armed by
    /// a previous agent (which may have asked a promotion this one cannot see), and that
    /// deadline has not passed, nor has this agent armed a lease of its own since.
    pub fn may_turn_writable(&mut self, pid: Option<i32>) -> bool {
        let found = *self
            .inherited
            .get_or_insert_with(|| match (self.lease.read(), pid) {
                (Some(until), Some(postmaster)) => Inherited::Armed { until, postmaster },
                _ => Inherited::Nothing,
            });
        let Some(pid) = pid else {
            self.promotion_asked_of = None;
            return false;
        };
        if self.promotion_asked_of.is_some_and(|asked| asked != pid) {
            self.promotion_asked_of = None;
        }
        // Until it passes, its postmaster is gone, or this agent arms a lease of its own.
        let inherited = matches!(found, Inherited::Armed { until, postmaster }
            if postmaster == pid && until > boot_clock_ms());
        self.promotion_asked_of.is_some() || inherited
    }

    /// Writes the deadline the state calls for, when it differs from the file's.
    pub fn update(&mut self, state: FenceState) -> pgha_pg::Result<()> {
        let wanted = match state {
            FenceState::LeaseUntil(at) => Some(at),
            FenceState::NothingWritable => None,
            FenceState::Unsure => return Ok(()),
            FenceState::NoLaterThan(at) => match self.lease.read() {
                Some(armed) if armed > at => Some(at),
                _ => return Ok(()),
            },
        };
        if self.written == Some(wanted) && self.lease.read() == wanted {
            return Ok(());
        }
        match wanted {
            Some(at) => self.lease.arm(at)?,
            None => self.lease.disarm()?,
        }
        if let FenceState::LeaseUntil(_) = state {
            self.inherited = Some(Inherited::Nothing); // this agent's own lease governs now
        }
        self.written = Some(wanted);
        Ok(())
    }

    /// Moves the lease deadline this agent armed, `from`, to the later `to` (a failsafe
    /// confirmation answered between steps); whether it did. Anything else written or armed
    /// (disarmed, a cap, another agent's deadline) stays as it is.
    pub fn extend(&mut self, from: u64, to: u64) -> pgha_pg::Result<bool> {
        if to <= from || self.written != Some(Some(from)) || self.lease.read() != Some(from) {
            return Ok(false);
        }
        self.lease.arm(to)?;
        self.written = Some(Some(to));
        Ok(true)
    }

    /// Milliseconds left before the supervisor fences, if armed.
    pub fn remaining_ms(&self) -> Option<u64> {
        self.lease
            .read()
            .map(|at| at.saturating_sub(boot_clock_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the simulation (seed 3608): the lease lapsed while a start of the crashed
    /// primary was in flight, PostgreSQL not running yet; the agent disarmed the supervisor,
    /// and the primary came up writable with no lease and no fence.
    #[test]
    fn a_primary_starting_without_the_lease_stays_fenced() {
        let starting = AfterStep {
            job_may_make_writable: true,
            ..AfterStep::default()
        };
        assert_eq!(FenceState::after(starting), FenceState::Unsure);
        // With nothing in flight, a stopped PostgreSQL needs no fence; a live one that is not
        // known to be read-only keeps it.
        assert_eq!(
            FenceState::after(AfterStep::default()),
            FenceState::NothingWritable
        );
        let live = AfterStep {
            postmaster_running: true,
            ..AfterStep::default()
        };
        assert_eq!(FenceState::after(live), FenceState::Unsure);
        let standby = AfterStep {
            read_only: true,
            ..live
        };
        assert_eq!(FenceState::after(standby), FenceState::NothingWritable);
        let leader = AfterStep {
            deadline: Some(9_000),
            job_may_make_writable: true,
            ..live
        };
        assert_eq!(FenceState::after(leader), FenceState::LeaseUntil(9_000));
        let paused = AfterStep {
            paused: true,
            ..leader
        };
        assert_eq!(FenceState::after(paused), FenceState::NothingWritable);
    }

    #[test]
    fn keeps_the_armed_deadline_while_unsure() {
        let dir = std::env::temp_dir().join(format!("pgha-fence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lease = LeaseFile::for_member_dir(&dir.join("n1"));
        let mut fencing = Fencing::new(lease.clone());
        fencing.update(FenceState::LeaseUntil(5_500)).unwrap();
        assert_eq!(lease.read(), Some(5_500));
        fencing.update(FenceState::Unsure).unwrap();
        assert_eq!(
            lease.read(),
            Some(5_500),
            "unsure: the old deadline stays armed"
        );
        fencing.update(FenceState::NothingWritable).unwrap();
        assert_eq!(lease.read(), None);
        // A job (a standby start) may disarm behind the agent's back; a new lease re-arms.
        fencing.update(FenceState::LeaseUntil(9_500)).unwrap();
        lease.disarm().unwrap();
        fencing.update(FenceState::LeaseUntil(9_500)).unwrap();
        assert_eq!(lease.read(), Some(9_500), "re-armed after the file changed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Found by review: an agent restarted beside a running primary adopts the key with the
    /// ttl the configuration has now; lowered since its predecessor armed the deadline, the
    /// renewal may land and end the lease before that deadline, and with the agent then gone
    /// nothing would bring it forward. Unsure with a renewal unanswered, the armed deadline
    /// comes no later than that renewal allows; a disarmed file is left disarmed.
    #[test]
    fn an_unanswered_renewal_brings_a_later_armed_deadline_forward() {
        let unsure = AfterStep {
            postmaster_running: true,
            cap: Some(7_000),
            ..AfterStep::default()
        };
        assert_eq!(FenceState::after(unsure), FenceState::NoLaterThan(7_000));
        let dir = tempfile::tempdir().unwrap();
        let lease = LeaseFile::for_member_dir(&dir.path().join("n1"));
        let mut fencing = Fencing::new(lease.clone());
        lease.arm(9_000).unwrap(); // as the previous agent left it
        fencing.update(FenceState::NoLaterThan(7_000)).unwrap();
        assert_eq!(lease.read(), Some(7_000), "brought forward");
        fencing.update(FenceState::NoLaterThan(8_000)).unwrap();
        assert_eq!(lease.read(), Some(7_000), "never put back");
        lease.disarm().unwrap();
        fencing.update(FenceState::NoLaterThan(7_000)).unwrap();
        assert_eq!(lease.read(), None, "a disarmed file stays disarmed");
    }

    /// A confirmation between steps moves only the lease deadline this agent armed, and
    /// only later.
    #[test]
    fn only_the_lease_deadline_armed_here_is_extended() {
        let dir = tempfile::tempdir().unwrap();
        let lease = LeaseFile::for_member_dir(&dir.path().join("n1"));
        let mut fencing = Fencing::new(lease.clone());
        assert!(
            !fencing.extend(5_000, 6_000).unwrap(),
            "nothing written yet"
        );
        fencing.update(FenceState::LeaseUntil(5_000)).unwrap();
        assert!(!fencing.extend(5_000, 4_000).unwrap());
        assert!(!fencing.extend(4_000, 6_000).unwrap(), "not what is armed");
        assert_eq!(lease.read(), Some(5_000));
        assert!(fencing.extend(5_000, 6_000).unwrap());
        assert_eq!(lease.read(), Some(6_000));
        fencing.update(FenceState::NothingWritable).unwrap();
        assert!(
            !fencing.extend(6_000, 7_000).unwrap(),
            "disarmed stays disarmed"
        );
        assert_eq!(lease.read(), None);
    }
}
