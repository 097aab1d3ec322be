//! End-to-end tests of the proxy against a real PostgreSQL primary and standby.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::clients::{psql_run, stdout_of_success};
use common::prober_run::{member, ProberRun};
use common::*;
use pgha_proxy::{wire, Candidates, Member, Prober, ProberConfig, Targets};
use pgha_testkit::{eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

#[path = "proxy/clients.rs"]
mod clients;
#[path = "proxy/prober.rs"]
mod prober;
#[path = "proxy/routing.rs"]
mod routing;

/// A session through each listener of `p`: read-write on the primary, read-only on the standby.
async fn rw_and_ro_sessions(p: &TestProxy) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let rw = connect(p.rw).await.unwrap();
    assert!(!in_recovery(&rw).await, "rw reaches the primary");
    let ro = connect(p.ro).await.unwrap();
    assert!(in_recovery(&ro).await, "ro reaches the standby");
    (rw, ro)
}
