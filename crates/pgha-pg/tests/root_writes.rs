//! What pgha writes as root inside directories the PostgreSQL OS user owns cannot be
//! redirected by that user (any SQL superuser can act as it, through `COPY ... TO PROGRAM`):
//! symlinks planted at a file, at a temporary name or at a directory on the way are never
//! followed, and a root-only file elsewhere is neither overwritten, chowned nor read.
//!
//! Runs as root with the `postgres` OS user present (as CI does; `./test.sh` installs
//! PostgreSQL, which creates the user), and fails loudly otherwise.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgha_pg::binaries::PgBinaries;
use pgha_pg::conf::MemberConf;
use pgha_pg::instance::{write_private, Instance};
use pgha_pg::osuser::RunAs;

const SECRET: &str = "root only\n";

/// A root-owned cluster directory holding a member directory and a data directory owned by
/// the PostgreSQL OS user (with a postgresql.conf), and a root-only victim file outside them.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    victim: PathBuf,
    instance: Instance,
}

fn setup() -> Setup {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests check what pgha does as root: run them as root (CI does)"
    );
    let run_as = RunAs::detect("postgres")
        .expect("the postgres OS user (created by PostgreSQL's Debian package)");
    let user = run_as.user.clone().expect("running as root");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let member = root.join("n1");
    let data = member.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for dir in [&member, &data] {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let main_conf = data.join("postgresql.conf");
    std::fs::write(&main_conf, "# initdb's\n").unwrap();
    std::os::unix::fs::chown(&main_conf, Some(user.uid), Some(user.gid)).unwrap();
    let victim = root.join("victim");
    std::fs::write(&victim, SECRET).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bins = PgBinaries {
        dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
        major: 15,
        version: "15".into(),
    };
    let instance = Instance::new("n1", &member, bins, run_as);
    Setup {
        _tmp: tmp,
        root,
        data,
        victim,
        instance,
    }
}

fn conf(standby: bool) -> MemberConf {
    MemberConf {
        name: "n1".into(),
        listen_host: "127.0.0.1".into(),
        port: 5432,
        major: 15,
        standby,
        upstream: None,
        replication_user: "replicator".into(),
        passfile: "/nonexistent/pgpass".into(),
        cluster_size: 3,
        synchronous_standby_names: String::new(),
        synchronous_commit: String::new(),
        parameters: Default::default(),
        replication_timeout: None,
        tls: None,
        primary_settings: Default::default(),
    }
}

const HBA: &str = "local all all peer\n";

fn assert_untouched(victim: &Path) {
    let meta = std::fs::metadata(victim).expect("the victim still exists");
    assert_eq!(meta.uid(), 0, "the victim was given away");
    assert_eq!(meta.mode() & 0o777, 0o600, "the victim's mode changed");
    assert_eq!(
        std::fs::read_to_string(victim).unwrap(),
        SECRET,
        "the victim was overwritten"
    );
}

#[tokio::test]
async fn a_symlink_at_a_configuration_file_is_replaced_not_followed() {
    let s = setup();
    for name in ["pgha.conf", "pg_hba.conf"] {
        symlink(&s.victim, s.data.join(name)).unwrap();
    }
    s.instance
        .write_config(&s.data, &conf(false), HBA)
        .await
        .unwrap();
    assert_untouched(&s.victim);
    let meta = std::fs::symlink_metadata(s.data.join("pg_hba.conf")).unwrap();
    assert!(
        meta.file_type().is_file(),
        "pg_hba.conf is a real file again"
    );
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        Some(meta.uid()),
        s.instance.run_as.user.as_ref().map(|u| u.uid)
    );
}

/// The write once went through a fixed temporary name (`pgha.pgha-tmp`), opened without
/// O_NOFOLLOW or O_EXCL, then chmod and chown that followed links.
#[tokio::test]
async fn a_symlink_at_a_temporary_name_is_not_followed() {
    let s = setup();
    for name in [
        "pgha.pgha-tmp",
        "pg_hba.pgha-tmp",
        "postgresql.pgha-tmp",
        "standby.pgha-tmp",
    ] {
        symlink(&s.victim, s.data.join(name)).unwrap();
    }
    s.instance
        .write_config(&s.data, &conf(true), HBA)
        .await
        .unwrap();
    assert_untouched(&s.victim);
    assert!(s.data.join("standby.signal").is_file());
}

#[tokio::test]
async fn a_symlinked_directory_on_the_way_is_refused() {
    let s = setup();
    let elsewhere = s.root.join("etc");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(&s.data, s.root.join("n1/data.moved")).unwrap();
    symlink(&elsewhere, &s.data).unwrap();
    let err = s
        .instance
        .write_config(&s.data, &conf(false), HBA)
        .await
        .expect_err("a write through a symlinked data directory");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "root wrote into {elsewhere:?}"
    );
    let pgpass = s.data.join("pgpass");
    assert!(write_private(&pgpass, "*:*:*:u:p\n", &s.instance.run_as).is_err());
    assert!(!elsewhere.join("pgpass").exists());
}

/// postgresql.conf is read, amended and written back: a link to a root-only file would have
/// copied its contents where the OS user reads them.
#[tokio::test]
async fn a_symlinked_postgresql_conf_is_not_read() {
    let s = setup();
    std::fs::remove_file(s.data.join("postgresql.conf")).unwrap();
    symlink(&s.victim, s.data.join("postgresql.conf")).unwrap();
    let err = s
        .instance
        .write_config(&s.data, &conf(false), HBA)
        .await
        .expect_err("reading through a symlinked postgresql.conf");
    assert!(err.to_string().contains("postgresql.conf"), "{err}");
    assert_untouched(&s.victim);
    let link = std::fs::symlink_metadata(s.data.join("postgresql.conf")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "nothing was written in its place"
    );
}

#[tokio::test]
async fn removing_standby_signal_removes_a_link_not_its_target() {
    let s = setup();
    symlink(&s.victim, s.data.join("standby.signal")).unwrap();
    s.instance
        .write_config(&s.data, &conf(false), HBA)
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(s.data.join("standby.signal")).is_err());
    assert_untouched(&s.victim);
}
