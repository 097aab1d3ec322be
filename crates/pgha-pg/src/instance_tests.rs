//! Tests of `instance.rs`.

use super::*;

/// Member n1 in `dir` (its directory not made yet), PostgreSQL's programs of this machine.
fn member_n1(dir: &std::path::Path) -> Instance {
    let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
    let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
    Instance::new("n1", &dir.join("n1"), bins, run_as)
}

/// A directory a rewind left unfinished is never started, whichever path asks for it (a
/// leader restarting its primary, a seeded leader, a start job): only a re-clone, which
/// moves it aside, clears the mark.
#[tokio::test]
async fn a_half_rewound_directory_is_never_started() {
    let dir = tempfile::tempdir().unwrap();
    let inst = member_n1(dir.path());
    inst.create_member_dir().unwrap();
    std::fs::write(inst.rewind_marker(), "").unwrap();
    let err = inst.start(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, PgError::RewindIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("re-cloned"), "{err}");
    inst.clear_rewind_marker().unwrap();
    assert!(!inst.rewind_incomplete());
}

/// Found by `bench/chaos_dist.sh` with `OVERLAP=1` (quorum commit, seed 20261232): etcd
/// resumed without the leader key, and the leader's demotion stopped PostgreSQL while its
/// supervisor's fencing SIGKILLed the postmaster. pg_ctl saw the postmaster die with its pid
/// file in place, said "server does not shut down", and the demotion failed although
/// PostgreSQL was down. Here the postmaster is held (SIGSTOP) so that pg_ctl waits, then
/// killed as the supervisor kills it.
#[tokio::test]
async fn a_postmaster_killed_while_pg_ctl_stops_it_has_stopped() {
    let standby = crate::test_standby::TestStandby::new("n1").await;
    standby.start().await;
    let inst = &standby.inst;
    let postmaster = inst.postmaster_pid().expect("the postmaster runs");
    let children = crate::supervisor::children_of(postmaster);
    unsafe { libc::kill(postmaster, libc::SIGSTOP) };
    let kill_it = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        unsafe { libc::kill(postmaster, libc::SIGKILL) };
    };
    let (stopped, ()) = tokio::join!(inst.stop(StopMode::Fast, Duration::from_secs(3)), kill_it);
    for child in children {
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    stopped.expect("a postmaster that died while pg_ctl waited has stopped");
    assert!(!inst.is_running());
}

/// Found by review: the rewind marker was looked for with a check that answered "no file" for
/// any error, so a member directory that could not be opened (an I/O error, no descriptor left)
/// read as "no rewind left unfinished" and a half-rewound directory could be started. Only
/// absence lets it start now (here the member directory is not a directory at all); a re-clone
/// is still decided on a marker seen (a second review: one unreadable moment would otherwise
/// stop and re-clone a running standby).
#[tokio::test]
async fn a_rewind_marker_that_cannot_be_looked_at_counts_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let inst = member_n1(dir.path());
    assert!(
        !inst.rewind_incomplete(),
        "no member directory: nothing was rewound"
    );
    inst.create_member_dir().unwrap();
    assert!(!inst.rewind_incomplete());
    std::fs::remove_dir_all(dir.path().join("n1")).unwrap();
    std::fs::write(dir.path().join("n1"), "").unwrap();
    assert!(
        inst.rewind_maybe_incomplete(),
        "an unreadable marker read as absent"
    );
    assert!(!inst.rewind_incomplete(), "no marker seen: no re-clone");
    let refused = inst.start(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(refused, PgError::RewindIncomplete { .. }),
        "{refused}"
    );
}

/// Found by review: a `postmaster.pid` that could not be read (no descriptor left in the agent,
/// an I/O error) was taken for no postmaster at all, and a stop "succeeded" without stopping
/// anything: a leader then released its lease, or disarmed its fence, beside a PostgreSQL that
/// could still be running. Such a postmaster may run: a stop is tried and fails. Nor is a
/// `standby.signal` that cannot be looked at taken for none (the configuration rendered for
/// a primary's role would take a standby's away). (A data directory that is a file makes the
/// reads fail: ENOTDIR.)
#[tokio::test]
async fn a_postmaster_that_cannot_be_looked_for_is_never_taken_for_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let inst = member_n1(dir.path());
    inst.create_member_dir().unwrap();
    assert!(!inst.is_running(), "nothing in an empty member directory");
    std::fs::write(inst.data_dir(), "").unwrap();
    assert_eq!(inst.pid_file_holder(), PidFileHolder::Unknown);
    assert!(
        inst.is_running(),
        "a postmaster that may run taken for none"
    );
    assert_eq!(inst.postmaster_pid(), None, "no pid seen");
    assert_eq!(
        inst.standby_signal(),
        None,
        "standby.signal taken for absent"
    );
    assert_eq!(inst.initialized(), None, "PG_VERSION taken for absent");
    let stopped = inst.stop(StopMode::Fast, Duration::from_secs(5)).await;
    assert!(
        stopped.is_err(),
        "a stop of what may run succeeded: {stopped:?}"
    );
}
