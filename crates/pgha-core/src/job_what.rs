//! What a running job does (clone, re-clone, or a job named by its kind), as log lines say it.

use crate::action::Action;
use crate::observe::JobKind;
use crate::types::MemberName;
use std::fmt;

/// What a running job does, as the lines that say it starts, runs and ends put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobWhat {
    /// The first copy of the leader's data into an empty data directory.
    CloneFrom(MemberName),
    /// A new copy over data that could not rejoin (the old data moved aside).
    RecloneFrom(MemberName),
    /// Any other job, named by its kind.
    Job(JobKind),
}

impl JobWhat {
    /// What `action` does when it is a job.
    pub fn of(action: &Action) -> Option<JobWhat> {
        let kind = action.job()?;
        Some(match action {
            Action::Reclone {
                from,
                move_aside: false,
            } => JobWhat::CloneFrom(from.clone()),
            Action::Reclone {
                from,
                move_aside: true,
            } => JobWhat::RecloneFrom(from.clone()),
            _ => JobWhat::Job(kind),
        })
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobWhat::CloneFrom(_) | JobWhat::RecloneFrom(_) => JobKind::Reclone,
            JobWhat::Job(kind) => *kind,
        }
    }
}

impl fmt::Display for JobWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobWhat::CloneFrom(from) => write!(f, "clone from {from}"),
            JobWhat::RecloneFrom(from) => write!(f, "re-clone from {from} (old data moved aside)"),
            JobWhat::Job(kind) => write!(f, "{kind:?}"),
        }
    }
}
