//! Test hosts (issue 9): etcd, three `pgha agent` members and a client host running
//! `pgha proxy`, each in its own Linux network namespace, joined by veth pairs to a bridge that
//! lives in a namespace of its own (the root namespace is never touched). Faults are iptables
//! DROP rules inside a host's namespace (a blackhole, never a reset), SIGKILL/SIGSTOP/SIGCONT of
//! one process by pid or of a process tree, a whole host isolated, a whole host frozen
//! (cgroup v1 freezer: a stalled VM), and steps of the agents' wall clock (libfaketime: see
//! [`FakeWallClock`]). A checker writes through the proxy, through a
//! libpq-style multi-host URI (`target_session_attrs=read-write`) and on each member's own host
//! (optionally also with writers that wait long for an answer), and counts acknowledged writes
//! missing from the final primary and acknowledgements by a member of writes sent, or executed
//! by its PostgreSQL, after another member had already acknowledged one (two writers; late
//! answers to earlier writes are reported apart: see [`judge_writers`]).
//!
//! Needs root, `ip` (iproute2), `iptables` (Debian package `iptables`), to freeze a host the
//! cgroup v1 freezer at /sys/fs/cgroup/freezer, and to step wall clocks the Debian package
//! `libfaketime` (and python3, to check it); fails loudly, naming
//! the package, when one is missing. Everything is removed on drop, also while a test panics
//! (the agents' log tails are printed then). The including test file must also declare
//! `#[path = "common/dist.rs"] mod dist;` (this module reuses its REST waits and secrets).
#![allow(dead_code)]

use std::process::{Command, Output};

pub use pgha_testkit::strip_ansi;
use pgha_testkit::{alive, must};
pub use pgha_testkit::{Calls, Latency};

pub use crate::dist::{conninfo, AgentApi, AgentSet};

#[path = "netns/checker.rs"]
mod checker;
#[path = "netns/cluster.rs"]
mod cluster;
#[path = "netns/cluster_access.rs"]
mod cluster_access;
#[path = "netns/cluster_control.rs"]
mod cluster_control;
#[path = "netns/disks.rs"]
mod disks;
#[path = "netns/net.rs"]
mod net;
#[path = "netns/process.rs"]
mod process;
#[path = "netns/report.rs"]
mod report;
#[path = "netns/sql.rs"]
mod sql;
#[path = "netns/stalls.rs"]
mod stalls;
#[path = "netns/wall_clock.rs"]
mod wall_clock;

use disks::*;
#[allow(unused_imports)] // not every test file that includes this one uses every part
pub use {checker::*, cluster::*, net::*, process::*, report::*, sql::*, stalls::*, wall_clock::*};

/// PostgreSQL port on every member host (each host has its own network stack).
pub const PG_PORT: u16 = 5432;
/// REST API port of every agent.
pub const API_PORT: u16 = 8008;
pub const ETCD_PORT: u16 = 2379;
/// Where the first member reaches etcd through a [`TcpLink`] of its own ([`Opts::etcd_latency`]);
/// the next member at the next port, and so on.
pub const ETCD_DELAYED_PORT: u16 = 2479;
pub const PROXY_RW_PORT: u16 = 6432;
pub const PROXY_RO_PORT: u16 = 6433;

/// The `pgha` binary under test; `PGHA_FAULTS_BIN` runs the scenarios against another build
/// (e.g. an older commit, to see a scenario fail for the reason it was written for).
pub fn pgha_bin() -> String {
    std::env::var("PGHA_FAULTS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pgha").to_string())
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

/// Whether `pid` lives (not a zombie).
pub fn process_alive(pid: u32) -> bool {
    alive(pid)
}

/// Milliseconds since boot on `CLOCK_BOOTTIME`, the clock of the supervisors' deadlines.
pub fn boot_clock_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// Microseconds since the Unix epoch on the wall clock (`CLOCK_REALTIME`, the clock
/// PostgreSQL's `clock_timestamp()` reads: every test host shares this machine's kernel).
fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn ip(args: &[&str]) -> Output {
    must(Command::new("ip").args(args))
}
