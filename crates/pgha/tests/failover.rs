//! End-to-end failover, switchover and rejoin: the seeds' scenarios of issue 5 against real
//! PostgreSQL, plus manual failover, pause/resume and refused requests.
//!
//! Each test runs its own 3-member `pgha up` on free ports; the tests of this file run one at a
//! time (a 2-core machine runs one 3-member cluster well, two of them badly).

mod common;

#[path = "failover/operator_commands.rs"]
mod operator_commands;
#[path = "failover/seed_scenarios.rs"]
mod seed_scenarios;
#[path = "failover/stalls_and_crashes.rs"]
mod stalls_and_crashes;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::status::{events, members, primary_of};
use pgha_testkit::wait_until;

const CONVERGE: Duration = Duration::from_secs(25);

fn start() -> Cluster {
    Cluster::start(&[], CONVERGE)
}

/// A cluster with the table `t` created on it.
async fn start_with_table() -> Cluster {
    let c = start();
    c.create_table().await;
    c
}

/// A cluster whose table holds ids 0..10 (`stage`) on every member.
async fn start_with_rows(stage: &str) -> Cluster {
    let c = start_with_table().await;
    c.write("n1", stage, 0..10).await;
    c.wait_identical("n1", &["n2", "n3"]).await;
    c
}

/// The `data.old-*` directories in `member_dir`.
fn old_data_dirs(member_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(member_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data.old-")
        })
        .collect()
}
