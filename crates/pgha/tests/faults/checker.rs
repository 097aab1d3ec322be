//! The checker's own judgement of late answers and second writers.

use super::*;

/// The checker's judgement on made-up acknowledgements (no test hosts needed): n1 is primary,
/// n2 acknowledges its first write at 5000 ms. An answer n1 gives later to a write it ran
/// before that is a late answer, not a second writer; a write n1 ran, or was sent, after it
/// is a second writer whatever became of it.
#[test]
fn checker_tells_late_answers_from_second_writers() {
    let t0 = Instant::now();
    let us0: i64 = 1_800_000_000_000_000;
    // n1 writes on timeline 1, n2 (promoted) on timeline 2
    let on = |id: u64, member: &str, timeline: u32, sent: u64, executed: i64, acked: u64| Ack {
        id,
        writer: "w".into(),
        member: member.into(),
        sent: t0 + Duration::from_millis(sent),
        acked: t0 + Duration::from_millis(acked),
        sent_us: us0 + sent as i64 * 1000,
        acked_us: us0 + acked as i64 * 1000,
        executed_us: Some(us0 + executed * 1000),
        timeline: Some(timeline),
    };
    let ack = |id: u64, member: &str, sent: u64, executed: i64, acked: u64| {
        on(
            id,
            member,
            if member == "n1" { 1 } else { 2 },
            sent,
            executed,
            acked,
        )
    };
    let judge = |extra: Ack, present: &[u64]| {
        let mut acks = vec![ack(1, "n1", 0, 1, 2), ack(2, "n2", 4990, 4995, 5000), extra];
        acks.sort_by_key(|a| a.acked);
        let present: std::collections::BTreeSet<u64> = present.iter().copied().collect();
        judge_writers(&acks, &present, |t| t.duration_since(t0).as_millis() as i64)
    };
    // sent and run at 100 ms, answered at 6000 ms (frozen before its answer), on n2: late
    let (two, late) = judge(ack(3, "n1", 100, 101, 6000), &[1, 2, 3]);
    assert!(two.is_empty(), "{two:?}");
    assert_eq!((late.len(), late[0].count, late[0].present), (1, 1, 1));
    // the same, missing from the final primary: still late (the loss is counted as lost)
    let (two, late) = judge(ack(3, "n1", 100, 101, 6000), &[1, 2]);
    assert!(two.is_empty());
    assert_eq!((late[0].count, late[0].present), (1, 0));
    // sent at 100 ms but run at 5200 ms, after n2 took writes: a second writer
    let (two, late) = judge(ack(3, "n1", 100, 5200, 5300), &[1, 2]);
    assert!(late.is_empty());
    assert_eq!((two.len(), two[0].count, two[0].executed_late), (1, 1, 1));
    // sent after n2's first answer: a second writer
    let (two, _) = judge(ack(3, "n1", 5100, 5110, 5120), &[1, 2]);
    assert_eq!(
        (two[0].count, two[0].executed_late, two[0].older.as_str()),
        (1, 0, "n1 (timeline 1)")
    );
    // n1 promoted again after n2 (timeline 3: found by faults::hosts::etcd_host_lossy, where the
    // lease went n1, n2, n1): a newer writer, not n1 writing on
    let (two, late) = judge(on(3, "n1", 3, 5100, 5110, 5120), &[1, 2, 3]);
    assert!(two.is_empty() && late.is_empty(), "{two:?} {late:?}");
    // nothing after 5000 ms from n1: nothing to report
    let (two, late) = judge(ack(3, "n1", 10, 11, 20), &[1, 2, 3]);
    assert!(two.is_empty() && late.is_empty());
    // n1's server clock stepped an hour ahead: it claims to have run at 3,600,100 ms a write
    // sent at 100 ms and answered at 200 ms; its clock is not trusted (it ran by 200 ms)
    let stepped = ack(3, "n1", 100, 3_600_100, 200);
    assert_eq!(stepped.server_clock_off_us(), Some(3_599_900_000));
    assert_eq!(stepped.executed_trusted_us(), Some(stepped.acked_us));
    let (two, late) = judge(stepped, &[1, 2, 3]);
    assert!(two.is_empty() && late.is_empty(), "{two:?} {late:?}");
    // an hour behind, answered after n2's first answer: it may have run after it, so it counts
    // as a second writer (the checker can only over-report)
    let (two, late) = judge(ack(3, "n1", 100, -3_599_900, 6000), &[1, 2, 3]);
    assert!(late.is_empty());
    assert_eq!((two.len(), two[0].executed_late), (1, 1));
    // a clock within the tolerance is trusted as it is
    assert_eq!(ack(3, "n1", 100, 101, 200).server_clock_off_us(), None);
}
