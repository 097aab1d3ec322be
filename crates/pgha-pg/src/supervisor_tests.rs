//! The supervisor's moves, its kill of a postmaster tree, its naps.

use super::*;

#[test]
fn stops_fast_before_the_deadline_and_kills_at_it() {
    let ms = Duration::from_millis;
    assert_eq!(next_move(None, false), Move::Wait(POLL));
    assert_eq!(next_move(Some(5_000), false), Move::Wait(POLL));
    // wakes up at the moment the fast shutdown is due, not up to a poll later
    assert_eq!(next_move(Some(300), false), Move::Wait(ms(50)));
    assert_eq!(next_move(Some(250), false), Move::StopFast);
    assert_eq!(next_move(Some(1), false), Move::StopFast);
    // asked once; then waits for the deadline
    assert_eq!(next_move(Some(250), true), Move::Wait(POLL));
    assert_eq!(next_move(Some(40), true), Move::Wait(ms(40)));
    assert_eq!(next_move(Some(0), true), Move::Kill);
    assert_eq!(next_move(Some(0), false), Move::Kill);
    // a deadline disarmed after the request: the shutdown goes on, nothing is killed
    assert_eq!(next_move(None, true), Move::Wait(POLL));
}

#[test]
fn naps_on_the_boot_clock_for_as_long_as_asked() {
    let started = boot_clock_ms();
    nap_on_the_boot_clock(Duration::from_millis(60));
    let slept = boot_clock_ms() - started;
    assert!((60..1_000).contains(&slept), "slept {slept} ms");
}

#[test]
fn kills_a_process_and_its_children() {
    // A stand-in for a postmaster: a shell with two children that would outlive it.
    let mut parent = Command::new("/bin/sh")
        .arg("-c")
        .arg("sleep 60 & sleep 60 & wait")
        .spawn()
        .unwrap();
    let pid = parent.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    while children_of(pid).len() < 2 {
        assert!(Instant::now() < deadline, "children did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let children = children_of(pid);
    // Found by review: a postmaster that does not take the stop at once (blocked in I/O)
    // left its backends running for up to half a second past the deadline, more than
    // half the smallest safety margin. They are killed before the stop is waited for.
    let killing = std::thread::spawn(move || kill_tree(pid, |_| false));
    std::thread::sleep(Duration::from_millis(150));
    let alive: Vec<i32> = (children.iter().copied())
        .filter(|c| stat(*c).is_some_and(|(s, _)| s != 'Z'))
        .collect();
    killing.join().unwrap();
    assert!(
        alive.is_empty(),
        "backends {alive:?} ran on while the stop was awaited"
    );
    let status = parent.wait().unwrap();
    assert!(!status.success());
    for c in children {
        let deadline = Instant::now() + Duration::from_secs(5);
        while stat(c).is_some_and(|(s, _)| s != 'Z') {
            assert!(Instant::now() < deadline, "child {c} survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
