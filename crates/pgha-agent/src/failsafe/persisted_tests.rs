//! Promises kept across agent starts: one made before a reboot runs its length once.

use std::time::{Duration, Instant};

use super::Failsafe;

/// Found by review: a promise written before a reboot came back for its whole length at every
/// start of the agent in the boots after it (the file was only written by a confirmation or a
/// give-back), so each restart kept the member out of elections for up to a ttl again. The
/// first start after the reboot writes it again with this boot's identity: later starts of
/// this boot see what is left of it.
#[test]
fn a_promise_from_before_a_reboot_runs_its_length_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n2.failsafe");
    // Another boot's line: deadline on that boot's clock, 20 s long, id 5 to n1 in term 7.
    std::fs::write(&file, "another-boot 99999999999 20000 5 n1 7\n").unwrap();
    let first = Failsafe::persisted(file.clone(), Duration::from_secs(10));
    let until = first
        .promised_until()
        .expect("the promise from before the reboot");
    assert!(until > Instant::now() + Duration::from_secs(19));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.starts_with("another-boot"),
        "not written again: {text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let again = Failsafe::persisted(file, Duration::from_secs(10));
    let left = again
        .promised_until()
        .expect("still running")
        .saturating_duration_since(Instant::now());
    assert!(
        left < Duration::from_millis(19_800),
        "the promise ran its whole length again: {left:?}"
    );
}
