//! A restart of PostgreSQL in place, asked for by an operator (`pgha restart --in-place`).

use super::{Member, Plan};
use crate::action::{Action, StartRole};
use crate::reason::Reason;

impl Member {
    /// Restarts PostgreSQL as `role` in one job. A leader keeps renewing its lease while the
    /// job runs (its step renews before it waits for a job), so nobody fails over; it is asked
    /// for only from a settled state (a leader leading, a standby streaming).
    pub(crate) fn restart_in_place(&mut self, role: StartRole, plan: &mut Plan) -> Reason {
        plan.push(Action::RestartPostgres(role.clone()));
        Reason::RestartingInPlace { role }
    }
}
