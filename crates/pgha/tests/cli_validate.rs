//! `pgha config validate FILE`: a node config or a pgha.toml checked without running
//! anything (no PostgreSQL, no etcd): "FILE: valid" and a summary, or the key at fault and how
//! to fix it, exit 1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{pgha, stderr_of};

const NODE: &str = concat!(
    include_str!("../../pgha-host/tests/fixtures/minimal_node.toml"),
    "[dynamic]\nttl_ms = 10000\n",
);

const LOCAL: &str = r#"
[cluster]
name = "demo"
members = 3
base_port = 15432
proxy_tls = "terminate"
[postgresql.parameters]
work_mem = "64MB"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn validate(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["config", "validate", file.to_str().unwrap()];
    args.extend(extra);
    pgha(&args)
}

#[test]
fn good_files_are_valid_with_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, text, says) in [
        ("node.toml", NODE, "member node1"),
        ("pgha.toml", LOCAL, "3 members"),
    ] {
        let file = write(tmp.path(), name, text);
        let out = validate(&file, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert!(
            stdout.starts_with(&format!("{}: valid\n", file.display())),
            "{stdout}"
        );
        assert!(stdout.contains(says), "{stdout}");
    }
    let out = validate(&tmp.path().join("pgha.toml"), &["--kind", "local"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn bad_files_name_the_key_and_the_fix_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, text, key, fix) in [
        (
            "node.toml",
            NODE.replace("insecure_no_tls = true\n", ""),
            "tls",
            "pgha tls ca",
        ),
        (
            "port.toml",
            NODE.replace("port = 5432", "port = \"x\""),
            "port",
            "expected u16",
        ),
        (
            "pgha.toml",
            LOCAL.replace("members = 3", "members = 0"),
            "cluster.members",
            "use 1 to",
        ),
        (
            "host.toml",
            LOCAL.replace(
                "base_port = 15432",
                "base_port = 15432\nhost = \"localhost\"",
            ),
            "cluster.host",
            "not an IP address",
        ),
    ] {
        let file = write(tmp.path(), name, &text);
        let out = validate(&file, &[]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
        for part in [&file.display().to_string(), key, fix] {
            assert!(err.contains(part), "{name}: no {part:?} in {err}");
        }
    }
    // Neither kind by content: says how to tell.
    let file = write(tmp.path(), "other.toml", "[something]\nx = 1\n");
    let err = stderr_of(&validate(&file, &[]));
    assert!(err.contains("--kind"), "{err}");
    // A local pgha.toml checked as a node config names what is missing.
    let file = write(tmp.path(), "as_node.toml", LOCAL);
    let out = validate(&file, &["--kind", "node"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("as_node.toml"),
        "{}",
        stderr_of(&out)
    );
    // A file that is not there.
    let out = validate(&tmp.path().join("missing.toml"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("missing.toml"));
}

/// Every wrong value of a file is named in one run, each with its key, not only the first:
/// a DBA fixes them all at once.
#[test]
fn every_problem_of_a_file_is_named_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NODE
        .replace("host = \"127.0.0.1\"", "host = \"db1.example\"")
        .replace("api = \"127.0.0.1:8008\"", "api = \"127.0.0.1\"")
        .replace("ttl_ms = 10000", "ttl_ms = 10");
    let local = LOCAL.replace("members = 3", "members = 3\nhost = \"localhost\"")
        + "[postgresql]\nreplication_user = \"postgres\"\n[tags.n9]\nnosync = true\n";
    for (name, text, keys) in [
        (
            "node.toml",
            node,
            &["member.host", "member.api", "dynamic"][..],
        ),
        (
            "pgha.toml",
            local,
            &["cluster.host", "postgresql.replication_user", "tags.n9"][..],
        ),
    ] {
        let file = write(tmp.path(), name, &text);
        let out = validate(&file, &[]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("{}: 3 problems:", file.display())),
            "{name}: {err}"
        );
        for key in keys {
            assert!(
                err.contains(&format!("`{key}`")),
                "{name}: no {key} in {err}"
            );
        }
    }
}
