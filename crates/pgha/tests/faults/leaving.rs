//! A member stopped (`pgha stop`) while something of it still runs: a cancelled job blocked in
//! a system call that may yet start its PostgreSQL as a primary.

use super::*;

use pgha_testkit::poll;

/// How long a leaving agent waits for its cancelled jobs to end before it goes on without
/// them (`pgha-agent`'s `JOBS_END_TIMEOUT`).
const JOBS_END_TIMEOUT: Duration = Duration::from_secs(30);

/// Found by review (design.md: a member stopped while a cancelled job of it is blocked in a
/// system call), here end to end, asynchronous mode: the leader's PostgreSQL crashes (kill -9
/// of the postmaster and every backend) while its disk is frozen (fsfreeze), its agent begins
/// to start it again as the primary (the start hangs on the disk), and the operator stops the
/// member (`pgha stop`). The leaving agent cancels the start, waits for it in vain, and must
/// keep its fencing deadline armed and its keys (they expire as a dead agent's do): the start
/// may still bring up a primary once the disk thaws, and another member leads by then (the
/// writers still write on the old leader's own host). Released, the supervisor would let that
/// primary take writes. `pgha stop` answers once the member has left (it gave up after 30 s
/// before, the leave still going on), saying on stderr meanwhile that it still waits. One
/// writer, nothing lost; started again, the member rejoins.
#[test]
fn a_member_stopped_while_its_primarys_restart_hangs_on_a_frozen_disk_stays_fenced() {
    let HungRestart {
        mut c,
        leader,
        ck,
        log_at,
        ..
    } = restart_hung_on_frozen_disk();
    let watch = LeaseWatch::start(c.member(&leader).lease_file());
    let stop = c.cli_spawn(&["stop", &leader]);
    ck.mark(&format!(
        "`pgha stop {leader}` while its primary's start hangs on the frozen disk"
    ));
    let new = await_failover(&c, &ck, &leader, Duration::from_secs(30));
    let gave_up = "a job that may start PostgreSQL writable has not ended";
    wait_logged(
        &c,
        &leader,
        log_at,
        gave_up,
        &format!("{leader}'s leaving agent giving up on its cancelled start"),
        JOBS_END_TIMEOUT + Duration::from_secs(15),
    );
    let stopped = stop.wait_with_output().expect("`pgha stop` ran");
    ck.mark(&format!(
        "{leader} left, its start still hanging (`pgha stop`: {}, {:?}{:?})",
        stopped.status,
        String::from_utf8_lossy(&stopped.stdout).trim(),
        String::from_utf8_lossy(&stopped.stderr).trim()
    ));
    let writes_on_new = ck.wait_acks(&new, Instant::now(), 1, Duration::from_secs(20));
    c.thaw_disk(&leader);
    let thawed_at = Instant::now();
    ck.mark(&format!(
        "{leader}'s disk thawed: whatever its start brings up now must not take a write"
    ));
    let writable_after_thaw = poll(WATCH, Duration::from_millis(20), || {
        c.sql_one(&leader, "SELECT pg_is_in_recovery()")
            .filter(|r| r == "f")
            .map(|_| thawed_at.elapsed())
    });
    let values = watch.finish();
    // Its member key gone, `pgha start` finds its host only from there (as an operator runs it
    // there, with its configuration): the agent is started again instead.
    ck.mark(&format!("{leader}'s agent started again"));
    c.member_mut(&leader).terminate_agent();
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !stopped.status.success() {
        unmet.push(format!(
            "`pgha stop {leader}` failed: {}",
            String::from_utf8_lossy(&stopped.stderr)
        ));
    }
    // It waited over 30 s for the leave: an operator is told, on stderr, that it still waits.
    let told = String::from_utf8_lossy(&stopped.stderr);
    if !told.contains(&format!("{leader}: still stopping after 5 s")) {
        unmet.push(format!(
            "`pgha stop {leader}` said nothing of its long wait on stderr: {told:?}"
        ));
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write"));
    }
    if let Some(after) = writable_after_thaw {
        unmet.push(format!(
            "{leader}'s PostgreSQL answered as a primary {after:?} after the thaw, while {new} \
             led"
        ));
    }
    if let Some((t, _)) = values.iter().find(|(t, v)| v.is_none() && *t < thawed_at) {
        unmet.push(format!(
            "{leader}'s fencing deadline was disarmed at {} ms, while its start was still \
             blocked on the frozen disk (thawed at {} ms)",
            ck_ms(&report, *t),
            ck_ms(&report, thawed_at)
        ));
    }
    assert_all_met_and_streaming(
        &c,
        &report,
        &unmet,
        "a member stopped while its primary's start hung",
    );
}
