//! `pgha chaos`: a fault campaign against a running pgha cluster. Writers record every
//! acknowledged write, faults are injected one at a time, and a checker judges pgha's
//! promises (nothing acknowledged lost in synchronous modes, one writer at a time, recovery
//! within a bound); the report is a table, JSON, or an HTML page with a timeline.

pub mod campaign;
pub mod checker;
pub mod classify;
pub mod cleanup;
pub mod clock;
pub mod config_change;
pub mod discover;
pub mod error;
pub mod fault_command;
pub mod fault_kind;
pub mod faults;
pub mod health;
pub mod html;
pub mod inject_error;
pub mod isolate;
pub mod monitor;
pub mod not_injected;
pub mod process;
pub mod progress;
pub mod recover;
pub mod stats;
pub mod summary;
pub mod table;
pub mod target;
pub mod workload;

pub use campaign::{run, Length, Options, Outcome};
pub use error::ChaosError;
pub use faults::FaultKind;
pub use summary::{Summary, Verdict};
pub use target::{Endpoint, Member, Mode, Target, WriteRoute};
