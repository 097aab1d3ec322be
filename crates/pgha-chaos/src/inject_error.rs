//! Why a fault could not be injected on the cluster as it stands (the campaign skips it).

use std::path::PathBuf;

use crate::isolate::IsolateError;

/// Why a fault could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("no standby runs on this machine")]
    NoLocalStandby,
    #[error("no standby may be promoted")]
    NoPromotableStandby,
    #[error("no standby")]
    NoStandby,
    #[error("no member to pause")]
    NoMemberToPause,
    #[error("no member runs on this machine")]
    NoLocalMember,
    #[error("no setting of this cluster can be changed")]
    NothingToChange,
    #[error("no --fault-command names {0}")]
    NoSuchCommand(String),
    #[error("{member}'s data directory is not on this machine")]
    NotLocal { member: String },
    #[error("{member} has no running postmaster ({}/postmaster.pid)", .data_dir.display())]
    NoPostmaster { member: String, data_dir: PathBuf },
    #[error("{member}'s postmaster: {source}")]
    Postmaster {
        member: String,
        #[source]
        source: ProcessError,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Isolate(#[from] IsolateError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// A local process a fault signals could not be found or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no running postmaster in {}", .0.display())]
    NoPostmaster(PathBuf),
    #[error("the {what} ({pid}) has no parent")]
    NoParent { what: &'static str, pid: i32 },
    #[error("the postmaster's parent {0} is not `pgha supervise`")]
    NotSupervised(i32),
    #[error(
        "the supervisor's parent {pid} is not `pgha agent` ({args}), and no `pgha agent` holds the \
         member's lock (`<member_dir>.agent`): is its agent running?"
    )]
    AgentNotFound { pid: i32, args: String },
    #[error("{signal} to {pid}: {errno}")]
    Signal {
        signal: nix::sys::signal::Signal,
        pid: i32,
        errno: nix::errno::Errno,
    },
}

/// A `--fault-command` that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{command}` ran for more than {seconds} s")]
    TimedOut { command: String, seconds: u64 },
    #[error("`{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}
