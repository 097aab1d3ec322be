//! Requests to etcd that land after their sender gave up on them: held in a slow link, they
//! reach etcd seconds later, after the agent that sent them died and another took its place.

use super::*;

/// How late the leader's requests reach etcd, and etcd's answers the leader, while slowed:
/// within the ttl (the renewals that land keep the key alive), longer than an agent takes to
/// start and adopt the key.
const LATE: Duration = Duration::from_secs(6);
/// The ttl of this test's cluster (pgha's default) and its safety margin.
const LONG_TTL: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_millis(2500);

/// Found by the simulation (seeds 71219 and 81633), here on real etcd: etcd answers the leader
/// 6 s late each way (ttl 10 s). Its lease lapses here, it demotes and, PostgreSQL no longer
/// writing, sends the release of its key (held in the link, like the renewals before it,
/// which keep the key alive in etcd as they land). Its agent is killed (kill -9) and started
/// again on a link that is fast again; the new agent finds the key under its own name and
/// term, adopts it and promotes. Then the dead agent's release lands. Before the fix it
/// deleted the key under the running primary and a failover followed; now the release
/// compares the key's revision as that process last wrote it, which the adoption moved, and
/// lands on nothing: the leader stays, nobody else takes a write.
#[test]
fn a_release_that_lands_after_the_restarted_agent_adopted_the_key_is_refused() {
    let ms = |d: Duration| d.as_millis().to_string();
    let (mut c, leader) = start(&Opts {
        etcd_latency: true,
        dynamic: vec![
            ("ttl_ms".into(), ms(LONG_TTL)),
            ("safety_margin_ms".into(), ms(MARGIN)),
        ],
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    let log_from = c.log_len(&leader);
    ck.mark(&format!(
        "etcd answers {leader} {} s late each way",
        LATE.as_secs()
    ));
    c.set_etcd_latency_of(&leader, Latency::fixed(LATE));
    let releasing = "releasing the leader key of term";
    wait_until(
        &format!("{leader} releasing its lapsed key unseen"),
        Duration::from_secs(20),
        || {
            let said = c.log_lines_since(&leader, log_from, &[releasing]);
            (!said.is_empty()).then_some(())
        },
    );
    let sent_at = Instant::now();
    ck.mark(&format!("{leader} sent the release of its key"));
    // The release reaches etcd LATE after it was sent; the agent dies well before (its
    // connection's end, queued behind, reaches etcd LATE after the kill: the release is
    // served on a connection still open).
    std::thread::sleep(Duration::from_millis(1500));
    ck.mark(&format!(
        "kill -9 of {leader}'s agent; etcd at once again; the agent starts again"
    ));
    c.member_mut(&leader).kill_agent();
    c.set_etcd_latency_of(&leader, Latency::NONE);
    let restarted_from = c.log_len(&leader);
    c.start_agent(&leader);
    // the order this test is about: judged only if the adoption came first
    wait_until(
        &format!("{leader}'s new agent leading before its old release lands"),
        LATE.saturating_sub(sent_at.elapsed()),
        || {
            let leading = c.log_lines_since(&leader, restarted_from, &["leading with"]);
            (!leading.is_empty()).then_some(())
        },
    );
    ck.mark(&format!(
        "{leader}'s new agent leads ({:.1} s after the release was sent)",
        sent_at.elapsed().as_secs_f64()
    ));
    // the release lands at sent_at + LATE; a failover it caused would follow within seconds
    std::thread::sleep((LATE + Duration::from_secs(8)).saturating_sub(sent_at.elapsed()));
    ck.mark("watched");
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    let others: Vec<&String> = report
        .acked_by_member
        .keys()
        .filter(|m| **m != leader)
        .collect();
    if !others.is_empty() {
        unmet.push(format!(
            "{others:?} took writes: the release of {leader}'s dead agent deleted the key its \
             new agent had adopted"
        ));
    }
    let own_key = "found the leader key under its own name";
    let history = c.history();
    if !history.iter().any(|e| {
        e["kind"] == "failover" && e["reason"].as_str().is_some_and(|r| r.contains(own_key))
    }) {
        unmet.push(format!(
            "no history entry says {leader} promoted on its own key from before: {history:#?}"
        ));
    }
    assert_kept_leading_and_streaming(
        &c,
        &report,
        &leader,
        unmet,
        "a release landing after an adoption",
    );
}
