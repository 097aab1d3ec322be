//! A member's spec for the agent's unit tests: n1, no data directory yet, PostgreSQL's programs
//! found on this machine.

use pgha_core::{MemberName, Tags};
use pgha_pg::{Instance, PgBinaries, RunAs};

use crate::spec::NodeSpec;

pub fn spec(dir: &std::path::Path) -> NodeSpec {
    let bins = PgBinaries::discover(None).expect("PostgreSQL's programs (the tests need them)");
    let run_as = RunAs::detect("postgres").expect("the postgres OS user");
    NodeSpec {
        name: MemberName::new("n1"),
        instance: Instance::new("n1", &dir.join("n1"), bins, run_as),
        host: "127.0.0.1".into(),
        port: 1,
        api: None,
        api_token: None,
        superuser: "postgres".into(),
        superuser_password: "x".into(),
        replication_user: "replicator".into(),
        replication_password: "y".into(),
        passfile: dir.join("pgpass"),
        cluster_size: 1,
        parameters: Default::default(),
        hba: String::new(),
        tags: Tags::default(),
        tls: None,
        api_https: false,
        callbacks: Default::default(),
        cluster: "c".into(),
    }
}
