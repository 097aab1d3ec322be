//! The testkit's own pieces that need no server: ports, polling, logs, LSNs, outputs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgha_testkit::*;

#[test]
fn free_ports_are_distinct_below_32768_and_never_handed_out_twice() {
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        for p in free_ports(5).into_iter().chain([free_port()]) {
            assert!((16_000..32_000).contains(&p), "{p}");
            assert!(seen.insert(p), "port {p} handed out twice");
        }
    }
    let base = free_port_range(12);
    assert!(
        (base..base + 12).all(|p| seen.insert(p)),
        "a range overlaps"
    );
}

#[test]
fn poll_returns_the_value_or_none_after_the_timeout() {
    let mut n = 0;
    let got = poll(Duration::from_secs(5), Duration::from_millis(1), || {
        n += 1;
        (n == 3).then_some(n)
    });
    assert_eq!(got, Some(3));
    let started = Instant::now();
    let never: Option<()> = poll(Duration::from_millis(50), Duration::from_millis(5), || None);
    assert!(never.is_none() && started.elapsed() >= Duration::from_millis(50));
}

#[test]
#[should_panic(expected = "timed out after 20ms waiting for nothing")]
fn wait_until_names_what_it_waited_for() {
    wait_until("nothing", Duration::from_millis(20), || None::<()>);
}

#[test]
fn lsns_round_trip_and_logs_lose_their_colours() {
    assert_eq!(lsn("16/B374D848"), 0x16_B374_D848);
    assert_eq!(fmt_lsn(lsn("0/50329E0")), "0/50329E0");
    assert_eq!(strip_ansi("\x1b[32m INFO\x1b[0m ok"), " INFO ok");
    assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
}

#[test]
fn succeeded_returns_stdout_and_panics_on_failure() {
    let ok = std::process::Command::new("echo")
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(succeeded("echo", &ok), "hi\n");
    let failed = std::process::Command::new("false").output().unwrap();
    let panic = std::panic::catch_unwind(|| succeeded("false", &failed));
    assert!(panic.is_err());
}
