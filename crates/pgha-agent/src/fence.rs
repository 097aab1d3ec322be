//! Fencing (I1) that does not need this agent to be alive: after every step the agent writes
//! the instant by which PostgreSQL must have stopped accepting writes into the member's lease
//! file; the member's supervisor process (`pgha supervise`, the postmaster's parent) kills
//! PostgreSQL once that instant passes, whether this agent is running, dead or paused.

use pgha_pg::lease_file::{boot_clock_ms, LeaseFile};

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
}

/// The agent's side of the lease file.
pub struct Fencing {
    lease: LeaseFile,
    /// What this agent last wrote (`None`: nothing yet; a restarted agent keeps the file as the
    /// previous one left it until it knows better).
    written: Option<Option<u64>>,
}

impl Fencing {
    pub fn new(lease: LeaseFile) -> Self {
        Fencing {
            lease,
            written: None,
        }
    }

    /// Writes the deadline the state calls for, when it differs from the file's.
    pub fn update(&mut self, state: FenceState) -> pgha_pg::Result<()> {
        let wanted = match state {
            FenceState::LeaseUntil(at) => Some(at),
            FenceState::NothingWritable => None,
            FenceState::Unsure => return Ok(()),
        };
        if self.written == Some(wanted) && self.lease.read() == wanted {
            return Ok(());
        }
        match wanted {
            Some(at) => self.lease.arm(at)?,
            None => self.lease.disarm()?,
        }
        self.written = Some(wanted);
        Ok(())
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
}
