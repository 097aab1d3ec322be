//! After each step, the lease deadline handed to the supervisor: armed before a job that may
//! make PostgreSQL writable starts, disarmed only once it is known not to be writable.

use pgha_pg::pid_file::PidFileHolder;

use crate::fence::{AfterStep, FenceState};

use super::Agent;

impl Agent {
    /// Hands the lease deadline to the supervisor (before any job of this decision starts: a
    /// promotion runs armed); disarms only once PostgreSQL is known not to be writable.
    pub(crate) fn update_fencing(&mut self, local: &pgha_core::LocalPg) {
        let holder = self.spec.instance.pid_file_holder();
        let postmaster = self.postmaster_for_fencing(holder);
        // Asked at every step, whatever else may make PostgreSQL writable: its first look is
        // what a previous agent left. A postmaster that could not be looked for may turn
        // writable, and what is known of it (a promotion asked) is kept for the next look.
        let may_turn_writable = match holder {
            PidFileHolder::Unknown => true,
            _ => self.fencing.may_turn_writable(postmaster),
        };
        let (room, after_trust) = self.watchdog_room(postmaster);
        let step = AfterStep {
            deadline: (self.member.fence_deadline_leaving(room, after_trust))
                .map(|d| self.boot_origin + d.0),
            paused: self
                .view
                .as_ref()
                .is_some_and(|v| self.member.pause_disarms_fencing(v)),
            job_may_make_writable: self.member.job_may_make_writable()
                || self.jobs.may_make_writable()
                || may_turn_writable,
            postmaster_running: holder.may_run(),
            read_only: local.running && local.in_recovery && !local.unresponsive,
            cap: (self.member.fence_cap_leaving(room, after_trust)).map(|d| self.boot_origin + d.0),
        };
        self.known_not_writable = step.known_not_writable();
        let state = FenceState::after(step);
        if state == FenceState::Unsure {
            return; // nothing written: the armed deadline stays, and so does what was said
        }
        let error = self.fencing.update(state).err().map(|e| e.to_string());
        if error == self.fence_error {
            return;
        }
        match &error {
            Some(e) => tracing::error!(
                "{}: cannot write the fencing deadline ({e}); the supervisor keeps the previous \
                 one, and PostgreSQL is neither promoted nor started as a primary until it can \
                 be written",
                self.spec.name
            ),
            None => tracing::info!("{}: the fencing deadline is written again", self.spec.name),
        }
        self.fence_error = error;
    }

    /// Moves the supervisor's deadline at once to what the lease answers that came since the
    /// last step give (a failsafe confirmation), when later than the one that step armed and
    /// never later than the next step arms: that step counts them only once its store read
    /// has waited out its bound.
    pub(crate) fn extend_fencing(&mut self) {
        let holder = self.spec.instance.pid_file_holder();
        let postmaster = self.postmaster_for_fencing(holder);
        let (room, after_trust) = self.watchdog_room(postmaster);
        let armed = self.member.fence_deadline_leaving(room, after_trust);
        // The configuration the next step decides with: the one last read.
        let config = (self.view.as_ref()).map_or(self.member.config(), |v| &v.config);
        let after = (self.member).fence_deadline_after(
            &self.outcomes,
            self.now(),
            config,
            (room, after_trust),
        );
        let (Some(armed), Some(after)) = (armed, after) else {
            return;
        };
        let (from, to) = (self.boot_origin + armed.0, self.boot_origin + after.0);
        match self.fencing.extend(from, to) {
            Ok(true) => tracing::debug!(
                "{}: fencing deadline moved {} ms later on a failsafe confirmation",
                self.spec.name,
                to - from
            ),
            Ok(false) => {}
            // The armed deadline stays: the next step writes again, and says so if it fails.
            Err(e) => tracing::warn!("{}: cannot move the fencing deadline: {e}", self.spec.name),
        }
    }

    /// The postmaster the fence is about: the one seen, or while `postmaster.pid` cannot be
    /// read, the one last seen (whose supervisor's watchdog room is kept).
    pub(crate) fn postmaster_for_fencing(&self, holder: PidFileHolder) -> Option<i32> {
        match holder {
            PidFileHolder::Unknown => self.fencing.last_postmaster(),
            seen => seen.postmaster(),
        }
    }

    /// How long before the store's expiry the deadline must leave the watchdog (the longer
    /// timeout of this agent's and of the running supervisor's, which an earlier agent may have
    /// started; 0 without one), and how long after the trust's end the supervisor's stop may
    /// begin at the soonest. Says once when that timeout, chosen from the margin when its
    /// process started, no longer fits half the margin in force.
    fn watchdog_room(&mut self, postmaster: Option<i32>) -> (pgha_core::Millis, pgha_core::Millis) {
        let own = self.spec.instance.watchdog.reset_after_ms();
        let running = self.fencing.running_supervisors_room(postmaster);
        let room = own.max(running);
        let margin = self.known_config.margin_ms();
        if self.fencing.room_stopped_fitting(room, margin) {
            let (whose, restart) = if running > own {
                (
                    "PostgreSQL's running supervisor's",
                    "restart this member's PostgreSQL (`pgha restart`) for its supervisor to take one",
                )
            } else {
                ("this agent's", "restart this agent to take one")
            };
            tracing::warn!(
                "{}: the watchdog's timeout ({room} ms, {whose}) no longer fits half the safety \
                 margin ({margin} ms): the fencing deadline comes as early as the agent's \
                 demotion allows, and a stalled supervisor's host may still be reset late; \
                 {restart} that fits, or raise safety_margin_ms",
                self.spec.name,
            );
        }
        let after_trust = pgha_pg::supervisor::STOP_FAST_BEFORE.as_millis() as u64;
        (pgha_core::Millis(room), pgha_core::Millis(after_trust))
    }
}
