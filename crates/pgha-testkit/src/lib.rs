//! pgha's test harness, each piece once and none knowing pgha (its fixtures stay in the tests).

pub mod call_hold;
pub mod captured_logs;
pub mod dir;
pub mod disk;
pub mod etcd;
pub mod etcd_auth;
pub mod etcd_cluster;
pub mod etcd_server;
pub mod http;
pub mod link;
pub mod log;
pub mod output;
pub mod own_runtime;
pub mod pg;
pub mod port;
pub mod postmaster;
pub mod process;
pub mod serial;
pub mod servers;
pub mod wait;
pub mod writer;

pub use call_hold::{CallHold, Calls};
pub use captured_logs::CapturedLogs;
pub use dir::traversable_tempdir;
pub use disk::LoopDisk;
pub use etcd::{etcd_binary, etcd_healthy, EtcdNode, EtcdTls};
pub use etcd_cluster::EtcdCluster;
pub use etcd_server::EtcdServer;
pub use http::http;
pub use link::{Latency, TcpLink};
pub use log::{spawn_logged, strip_ansi, tail, tail_of, RunLog};
pub use output::{must, refused, succeeded};
pub use pg::{assert_read_only, query_column, query_value, small_runtime, streaming_standbys};
pub use pg::{checksum, connect, connect_within, fmt_lsn, lsn, pg_error, run_sql, simple_rows};
pub use pg::{try_connect, value_becomes};
pub use port::{free_port, free_port_range, free_ports};
pub use postmaster::PidSquatters;
pub use postmaster::{
    crash_postmaster, postgres_user, postmaster_in, postmaster_pid, stop_postmaster,
};
pub use process::{alive, children_of, cmdline, is_stopped, parent_of, proc_stat, reap, signal};
pub use process::{exit_within, stop_child, ProcStat};
pub use serial::serial;
pub use wait::{eventually, poll, poll_async, wait_until};
pub use writer::{Ack, Writer, WriterOptions};
