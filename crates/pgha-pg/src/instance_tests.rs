//! Tests of `instance.rs`.

use super::*;

#[test]
fn parses_controldata() {
    let text = "pg_control version number:            1300\nDatabase system identifier:           7312345678901234567\nDatabase cluster state:               in production\nLatest checkpoint location:           0/3000060\nLatest checkpoint's TimeLineID:       3\n";
    let cd = ControlData::parse(text);
    assert_eq!(cd.system_identifier, "7312345678901234567");
    assert_eq!(cd.cluster_state, "in production");
    assert_eq!(cd.checkpoint_timeline, 3);
    assert_eq!(cd.checkpoint_lsn, 0x3000060);
}

/// A directory a rewind left unfinished is never started, whichever path asks for it (a
/// leader restarting its primary, a seeded leader, a start job): only a re-clone, which
/// moves it aside, clears the mark.
#[tokio::test]
async fn a_half_rewound_directory_is_never_started() {
    let dir = tempfile::tempdir().unwrap();
    let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
    let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
    let inst = Instance::new("n1", &dir.path().join("n1"), bins, run_as);
    inst.create_member_dir().unwrap();
    std::fs::write(inst.rewind_marker(), "").unwrap();
    let err = inst.start(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, PgError::RewindIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("re-cloned"), "{err}");
    inst.clear_rewind_marker().unwrap();
    assert!(!inst.rewind_incomplete());
}
