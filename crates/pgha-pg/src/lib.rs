//! pgha-pg: everything pgha does to a PostgreSQL instance — finding the binaries, running them as
//! the right OS user, initdb, pg_ctl, pg_basebackup, rendering the configuration pgha owns, and
//! the SQL probes that tell a member's role and WAL position.

pub mod agent_lock;
pub mod alter_system;
pub mod basebackup;
pub mod beneath;
pub mod binaries;
pub mod ca_dir;
pub mod command;
pub mod conf;
pub mod controldata;
pub mod error;
pub mod hba;
pub mod hot_standby;
pub mod instance;
pub mod kept_config;
pub mod killed;
pub mod lease_file;
pub mod logical_slots;
pub mod osuser;
pub mod peers;
pub mod pid_file;
pub mod probe;
pub mod rewind;
mod rewind_marker;
pub mod room;
pub mod secrets;
pub mod settings_check;
pub mod slots;
pub mod source;
pub mod supervisor;
#[cfg(test)]
mod test_standby;
pub mod timelines;
pub mod tls;
pub mod trust;
pub mod watchdog;

pub use binaries::PgBinaries;
pub use error::{PgError, Result};
pub use instance::{Instance, StopMode};
pub use lease_file::LeaseFile;
pub use osuser::RunAs;
