//! pgha-agent: one member's control loop. It observes the store and the local PostgreSQL,
//! asks the pure core (`pgha_core::Member::step`) what to do, and executes the decision with a
//! timeout on every external call; long actions run as tasks whose outcome feeds the next step.

mod action_error;
pub mod agent;
pub mod callbacks;
pub mod data_dir_check;
mod execute;
pub mod failsafe;
pub mod fence;
pub mod job_slot;
pub mod jobs;
pub mod local;
mod observe;
pub mod promotion_times;
pub mod report;
pub mod spec;
#[cfg(any(test, feature = "test-spec"))]
pub mod test_spec;
pub mod timelines;

pub use agent::{Agent, AgentHandle};
pub use report::{AgentReport, FailedJob, MemberFacts, Observed};
pub use spec::NodeSpec;
