//! Tests of `instance.rs`.

use super::*;

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
