//! Tests of `summary.rs`.

use super::*;

fn ack(id: i64, acked: Micros) -> Ack {
    Ack {
        id,
        writer: 1,
        member: "n1".into(),
        timeline: 1,
        lsn: "0/1".into(),
        sent: acked - 10,
        acked,
        executed: Some(acked - 5),
    }
}

fn judge(promised: bool, present: &[i64], no_takeover: bool) -> Summary {
    let acks = vec![ack(1, 100), ack(2, 200), ack(3, 5_000_000)];
    let fault = FaultRecord {
        index: 1,
        kind: FaultKind::StopPrimary,
        victim: "n1".into(),
        promoted: None,
        detail: None,
        leader_before: "n1".into(),
        leader_after: Some("n1".into()),
        at: 1000,
        recovered: Some(4_000_000),
        rejoined: Some(3_900_000),
        note: None,
        no_takeover,
    };
    summarize(Gathered {
        settings: Settings {
            seed: 1,
            mode: Mode::Local,
            synchronous_mode: if promised {
                pgha_core::SyncMode::On
            } else {
                pgha_core::SyncMode::Off
            },
            synchronous_commit: pgha_core::CommitLevel::On,
            no_loss_promised: promised,
            recovery_bound_s: 60.0,
            writers: 1,
            write_routes: vec!["entry 127.0.0.1:15432".into()],
        },
        started_unix_ms: 0,
        duration: 6_000_000,
        interrupted: false,
        original_leader: "n1".into(),
        final_leader: Some("n1".into()),
        acks: &acks,
        failures: &[],
        attempts: 3,
        reads_ok: 0,
        present: Some(present.iter().copied().collect()),
        faults: vec![fault],
        leadership: Vec::new(),
        cleanup: Vec::new(),
        problems: Vec::new(),
    })
}

#[test]
fn the_verdict_follows_the_promises() {
    let s = judge(true, &[1, 2, 3], false);
    assert_eq!(s.verdict, Verdict::Passed, "{:?}", s.broken);
    assert_eq!(s.faults[0].unavailable_ms, Some(3999.0));
    // id 2, acknowledged before the fault and missing after it, belongs to that fault
    let s = judge(true, &[1, 3], false);
    assert_eq!(
        (s.verdict, s.lost, s.faults[0].lost),
        (Verdict::Broken, 1, 1)
    );
    let s = judge(false, &[1, 3], false);
    assert_eq!((s.verdict, s.lost), (Verdict::LostWithoutPromise, 1));
    assert!(s.broken.is_empty());
    // nobody took over: the campaign had to start the primary again
    let s = judge(false, &[1, 2, 3], true);
    assert_eq!(s.verdict, Verdict::Broken);
    assert!(
        s.broken[0].contains("no member took over"),
        "{:?}",
        s.broken
    );
}
