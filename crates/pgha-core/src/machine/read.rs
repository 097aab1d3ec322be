//! What the agent reads of a member's state between steps (its jobs, its cluster, its term).

use super::Member;
use crate::job_what::JobWhat;
use crate::observe::JobKind;
use crate::types::SystemId;

impl Member {
    /// This member belonged to the cluster `system_id` before (remembered beside its data):
    /// without data it never initialises another one (see the candidacy).
    pub fn knows_cluster(&mut self, system_id: SystemId) {
        self.cluster_seen = Some(system_id);
    }

    /// The cluster's system identifier this member has seen, if any.
    pub fn cluster_seen(&self) -> Option<SystemId> {
        self.cluster_seen
    }

    /// Why this member last stopped leading, until it leads again.
    pub fn stepped_down(&self) -> Option<crate::SteppedDown> {
        self.stepped_down
    }

    /// The long-running job the member believes is in flight.
    pub fn running_job(&self) -> Option<JobKind> {
        self.job.map(|(kind, _)| kind)
    }

    /// Whether the job in flight may leave PostgreSQL writable ([`Action::may_make_writable`]):
    /// without the lease, PostgreSQL counts as writable already.
    pub fn job_may_make_writable(&self) -> bool {
        self.job.is_some() && self.job_makes_writable
    }

    /// What the job in flight does, if one is.
    pub fn running_job_what(&self) -> Option<&JobWhat> {
        self.job.and(self.job_what.as_ref())
    }
}
