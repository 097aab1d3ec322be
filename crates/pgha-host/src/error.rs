//! Errors the pgha command line reports for bad input, each saying what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "{dir} is not a pgha cluster (it has no {file}); pass the directory `pgha up` created"
    )]
    NotACluster { dir: PathBuf, file: &'static str },

    #[error("{dir} is not empty and is not a pgha cluster; refusing to touch it. Choose an empty or new directory")]
    NotEmpty { dir: PathBuf },

    #[error("{dir} exists and is not a directory")]
    NotADirectory { dir: PathBuf },

    #[error("port {port} ({what}) is already in use on {host}; stop what uses it or choose another base with --port")]
    PortInUse {
        port: u16,
        what: String,
        host: String,
    },

    #[error("another `pgha up` is already running on {dir}{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: PathBuf, pid: Option<u32> },

    #[error("{flag} {given} conflicts with the existing cluster in {dir}, which has {existing}; drop the flag or edit {file}")]
    FlagConflict {
        flag: &'static str,
        given: String,
        existing: String,
        dir: PathBuf,
        file: PathBuf,
    },

    #[error("no member named {name:?}; members are {known}")]
    UnknownMember { name: String, known: String },

    #[error("the cluster in {dir} is not running (nothing answers on {api}); start it with `pgha up --dir {dir}`")]
    NotRunning { dir: PathBuf, api: String },

    #[error("`pgha up` runs on {dir}{} but nothing answers on {api} (stalled: stopped by SIGSTOP, out of CPU or memory?); nothing was changed, as its next write of the store would undo it: try again once it answers, or stop it first", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    NotAnswering {
        dir: PathBuf,
        pid: Option<u32>,
        api: String,
    },

    #[error("`pgha up` runs on {dir}{} but did not answer on {api} in time (starting, busy with a long request, or stalled: stopped by SIGSTOP, out of CPU or memory?); try again once it answers, and see its log", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    UpNotAnswering {
        dir: PathBuf,
        pid: Option<u32>,
        api: String,
    },

    #[error("no pgha agent answers (tried {tried}); is `pgha agent` running on the members' hosts, and is member.api in the config file right?")]
    NoAgent { tried: String },

    #[error("no primary is running in {dir}; start the cluster with `pgha up --dir {dir}`")]
    NoPrimary { dir: PathBuf },

    #[error("{what}: {detail}")]
    Secrets { what: String, detail: String },

    #[error("the change is stored, but the leader {leader} has not put the synchronous settings in force after {after} s (its last decision: {decision}); commits do not wait as they say until it does. See `pgha status`")]
    SyncNotInForce {
        leader: String,
        after: u64,
        decision: String,
    },

    #[error(transparent)]
    Untrusted(#[from] pgha_pg::trust::Untrusted),
}
