//! Bad input to `pgha up`, `status` and `url`: a clear error, a non-zero exit, nothing lost.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn up_fails(args: &[&str]) -> String {
    let out = pgha(args);
    assert!(!out.status.success(), "pgha {args:?} should fail");
    assert_ne!(out.status.code(), Some(0));
    stderr_of(&out)
}

/// `pgha up --dir DIR` on free ports, which must fail; its stderr.
fn up_in_fails(dir: &Path) -> String {
    let port = free_base_port(3).to_string();
    up_fails(&["up", "--dir", dir.to_str().unwrap(), "--port", &port])
}

/// `pgha up --dir DIR --pg-bin-dir BIN`, which must fail; its stderr.
fn up_with_bin_dir_fails(dir: &Path, bin: &Path) -> String {
    let (dir, bin) = (dir.to_str().unwrap(), bin.to_str().unwrap());
    up_fails(&["up", "--dir", dir, "--pg-bin-dir", bin])
}

#[test]
fn non_empty_foreign_directory_is_refused_and_untouched() {
    let tmp = test_dir();
    let dir = tmp.path().join("precious");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    let err = up_in_fails(&dir);
    assert!(
        err.contains("not empty") && err.contains("precious"),
        "{err}"
    );
    assert_eq!(listing(&dir), ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "keep me"
    );

    let err = up_fails(&["status", "--dir", dir.to_str().unwrap()]);
    assert!(err.contains("not a pgha cluster"), "{err}");
}

/// Issue 11: pgha runs as root the programs a cluster directory's config names, and hands out
/// the passwords its secrets file holds: a directory others can write, or one another user
/// owns, is refused before anything is read or written.
#[test]
fn an_untrusted_cluster_directory_is_refused() {
    let tmp = test_dir();
    let port = free_base_port(3).to_string();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = up_fails(&["up", "--dir", open.to_str().unwrap(), "--port", &port]);
    assert!(
        err.contains("open") && err.contains("every user") && err.contains("chmod go-w"),
        "{err}"
    );
    assert!(listing(&open).is_empty());

    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = up_fails(&["up", "--dir", theirs.to_str().unwrap(), "--port", &port]);
    assert!(err.contains("theirs") && err.contains("uid 65534"), "{err}");
    assert!(listing(&theirs).is_empty());
}

#[test]
fn port_in_use_names_the_port_and_the_member() {
    let tmp = test_dir();
    let dir = tmp.path().join("ports");
    let base = free_base_port(3);
    let taken = base + 12; // member n2
    let _holder = TcpListener::bind(("127.0.0.1", taken)).unwrap();
    let err = up_fails(&[
        "up",
        "--dir",
        dir.to_str().unwrap(),
        "--port",
        &base.to_string(),
    ]);
    assert!(
        err.contains(&format!("port {taken}")) && err.contains("n2"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing may be created when a check fails");
}

#[test]
fn missing_postgresql_binaries_say_what_to_install() {
    let tmp = test_dir();
    let empty = tmp.path().join("no-postgres-here");
    std::fs::create_dir(&empty).unwrap();
    let dir = tmp.path().join("c");
    let err = up_with_bin_dir_fails(&dir, &empty);
    assert!(
        err.contains("not found") && err.contains("apt-get install postgresql"),
        "{err}"
    );
    assert!(!dir.exists());
}

/// Issue 12: PostgreSQL 13 and older (out of support upstream) are refused, naming the version
/// found and the supported range, before anything is written.
#[test]
fn postgresql_13_and_older_is_refused() {
    let tmp = test_dir();
    for version in ["13.22", "12.22", "9.6.24"] {
        let old = tmp.path().join(format!("pg{version}"));
        std::fs::create_dir(&old).unwrap();
        for program in pgha_pg::binaries::REQUIRED {
            let path = old.join(program);
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho '{program} (PostgreSQL) {version}'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = tmp.path().join("c");
        let err = up_with_bin_dir_fails(&dir, &old);
        assert!(
            err.contains(&format!("PostgreSQL {version} in {}", old.display()))
                && err.contains("supports PostgreSQL 14 to 18"),
            "{err}"
        );
        assert!(!dir.exists());
    }
}

/// The server programs of an existing cluster are its pgha.toml's: `--pg-bin-dir` naming others
/// is refused, not ignored (its data directories were initialised by one major version).
#[test]
fn pg_bin_dir_of_an_existing_cluster_is_not_ignored() {
    let tmp = test_dir();
    let dir = tmp.path().join("existing");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("pgha.toml"),
        "[cluster]\nname = \"existing\"\nmembers = 3\nbase_port = 30000\n",
    )
    .unwrap();
    let err = up_with_bin_dir_fails(&dir, Path::new("/opt/pg17/bin"));
    assert!(
        err.contains("--pg-bin-dir /opt/pg17/bin")
            && err.contains("no postgresql.bin_dir")
            && err.contains("pgha.toml"),
        "{err}"
    );
    assert_eq!(listing(&dir), ["pgha.toml"]);
}

#[test]
fn invalid_config_values_name_the_file_and_key() {
    let tmp = test_dir();
    let dir = tmp.path().join("cfg");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("pgha.toml");
    std::fs::write(
        &file,
        "[cluster]\nname = \"cfg\"\nmembers = \"three\"\nbase_port = 30000\n",
    )
    .unwrap();
    for command in ["up", "status"] {
        let err = up_fails(&[command, "--dir", dir.to_str().unwrap()]);
        assert!(
            err.contains("pgha.toml") && err.contains("members"),
            "{command}: {err}"
        );
    }
    std::fs::write(
        &file,
        "[cluster]\nname = \"cfg\"\nmembers = 3\nbase_port = 30000\n[postgresql.parameters]\nwal_level = \"minimal\"\n",
    )
    .unwrap();
    let err = up_fails(&["up", "--dir", dir.to_str().unwrap()]);
    assert!(
        err.contains("postgresql.parameters.wal_level") && err.contains("`logical`"),
        "{err}"
    );
    assert_eq!(
        listing(&dir),
        ["pgha.toml"],
        "a refused start must not write anything"
    );

    let err = up_fails(&[
        "up",
        "--dir",
        tmp.path().join("x").to_str().unwrap(),
        "--param",
        "port=1",
    ]);
    assert!(
        err.contains("port") && err.contains("managed by pgha"),
        "{err}"
    );
}

#[test]
fn member_start_failure_shows_the_postgresql_log_and_a_fixed_config_resumes() {
    let tmp = test_dir();
    let dir = tmp.path().join("startfail");
    let base = free_base_port(2);
    let mut args: Vec<&str> = vec!["up", "--dir", dir.to_str().unwrap(), "--members", "2"];
    let base_s = base.to_string();
    args.extend(["--port", &base_s]);
    args.extend(TEST_PARAMS);
    args.extend(["--param", "work_mem=plenty"]);
    let err = up_fails(&args);
    assert!(err.contains("n1") && err.contains("did not start"), "{err}");
    assert!(
        err.contains("work_mem"),
        "the PostgreSQL log tail should name the bad parameter: {err}"
    );
    assert!(!dir.join("n1/data/postmaster.pid").exists());

    // A secrets file others can read is refused (and the command says how to fix it).
    let secrets = dir.join("secrets.toml");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = up_fails(&["status", "--dir", dir.to_str().unwrap()]);
    assert!(
        err.contains("secrets.toml") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Fix the value in the config; the next `up` resumes without losing the initialised primary.
    let file = dir.join("pgha.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"plenty\"", "\"8MB\"");
    std::fs::write(&file, text).unwrap();
    let mut up = UpProcess::spawn(&dir, 2, base, &[]);
    up.wait_streaming(Duration::from_secs(60));
    assert!(!up.log().contains("initdb"), "{}", up.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_of_an_unknown_member_lists_the_members() {
    let tmp = test_dir();
    let dir = tmp.path().join("u");
    let up = UpProcess::start(&dir, 2);
    let out = pgha(&["url", "--dir", dir.to_str().unwrap(), "--member", "n9"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("n9") && err.contains("n1, n2"), "{err}");
    let url = up.url(None);
    assert!(
        url.starts_with("postgresql://postgres:")
            && url.ends_with(&format!(":{}/postgres", up.base)),
        "{url}"
    );
}

/// A cluster directory below one the PostgreSQL OS user owns (`sudo pgha up --dir
/// ~postgres/demo`) is refused before anything is written: that user could put a link where
/// pgha, as root, creates and chowns directories and writes the lease file.
#[test]
fn a_directory_below_one_another_user_owns_is_refused() {
    let tmp = test_dir();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let postgres = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres OS user");
    std::os::unix::fs::chown(&home, Some(postgres.uid.as_raw()), None).unwrap();
    let dir = home.join("demo");
    let err = up_in_fails(&dir);
    assert!(
        err.contains("a directory above it is not safe") && err.contains(home.to_str().unwrap()),
        "{err}"
    );
    assert!(!dir.exists(), "pgha up created {}", dir.display());
}
