//! Tests of the failsafe asks: rounds asked again, answers read.

use super::*;

fn names(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

/// A member that refused is asked again [`ASK_AGAIN_AFTER`] later (the first round's
/// refusals logged, the others' only traced), one that confirmed is not; trust counts from
/// the earliest round a confirmation came from.
#[tokio::test(start_paused = true)]
async fn asks_again_whoever_refused_until_every_member_confirmed() {
    use std::sync::Mutex;
    let start = tokio::time::Instant::now();
    let asked: Mutex<Vec<BTreeSet<String>>> = Mutex::default();
    // n2 confirms at once (promising 3 s), n3 in the third round (promising 2 s).
    let round = |which, waiting: BTreeSet<String>| {
        let mut asked = asked.lock().unwrap();
        assert_eq!(which == Round::First, asked.is_empty());
        let n = asked.len();
        asked.push(waiting.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            waiting
                .into_iter()
                .map(|m| {
                    let promise = if m == "n2" {
                        Some(3000)
                    } else {
                        (n >= 2).then_some(2000)
                    };
                    (m, promise)
                })
                .collect()
        }
    };
    let now = tokio::time::Instant::now;
    let members = names(&["n2", "n3"]);
    let (since, promised) = ask_until_confirmed(&members, round, || true, now)
        .await
        .expect("confirmed in the third round");
    assert_eq!(since, start, "n2 confirmed in the first round");
    assert_eq!(promised, 2000, "the shortest promise");
    let asked = asked.into_inner().unwrap();
    assert_eq!(
        asked,
        vec![members.clone(), names(&["n3"]), names(&["n3"])],
        "n2 is not asked again"
    );
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_millis(30) * 3 + ASK_AGAIN_AFTER * 2
    );
}

/// Nothing is asked, and no confirmation counts, once the caller says to stop: before the
/// first round, between rounds, and after every member confirmed.
#[tokio::test(start_paused = true)]
async fn stops_when_told_and_counts_no_confirmation_then() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let members = names(&["n2"]);
    let now = tokio::time::Instant::now;
    let rounds = AtomicUsize::new(0);
    let refusing = |_, waiting: BTreeSet<String>| {
        rounds.fetch_add(1, Ordering::SeqCst);
        async move { waiting.into_iter().map(|m| (m, None)).collect() }
    };
    let checks = AtomicUsize::new(0);
    let three_times = || checks.fetch_add(1, Ordering::SeqCst) < 3;
    assert_eq!(
        ask_until_confirmed(&members, refusing, three_times, now).await,
        None
    );
    assert_eq!(
        rounds.load(Ordering::SeqCst),
        3,
        "asked while told to go on"
    );

    let confirming = |_, waiting: BTreeSet<String>| async move {
        waiting.into_iter().map(|m| (m, Some(3000))).collect()
    };
    let checks = AtomicUsize::new(0);
    let once = || checks.fetch_add(1, Ordering::SeqCst) < 1;
    assert_eq!(
        ask_until_confirmed(&members, confirming, once, now).await,
        None,
        "confirmed after the caller's view changed: it counts for nothing"
    );
    assert_eq!(
        ask_until_confirmed(&BTreeSet::new(), confirming, || true, now).await,
        None,
        "nobody asked is nobody confirming"
    );
}

/// Serves HTTP on a fresh port, answering each request with `body` (200, JSON) after
/// `delay`, each on a thread of its own; returns the address.
fn answering_after(delay: Duration, body: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            });
        }
    });
    addr
}

/// The members of a round are asked side by side: three that each take 400 ms to answer
/// take about that long together, not 1.2 s (before, each ask began after the previous
/// one's answer, so k silent members held a round up to k times the ask timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_asks_every_member_at_once() {
    let apis: BTreeMap<String, String> = ["n2", "n3", "n4"]
        .into_iter()
        .zip(21..)
        .map(|(m, promise)| {
            let answer = FailsafeAnswer {
                member: m.into(),
                confirmed: "n1".into(),
                term: 7,
                promised_ms: 3000,
                promise,
            };
            let body = serde_json::to_string(&answer).unwrap();
            (
                m.to_string(),
                answering_after(Duration::from_millis(400), body),
            )
        })
        .collect();
    let began = std::time::Instant::now();
    let held = super::super::PromisesHeld::default();
    let answers = ask_all("n1", 7, apis, Some("t"), None, Round::First, held.clone()).await;
    let took = began.elapsed();
    assert!(answers.values().all(|a| *a == Some(3000)), "{answers:?}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    // Each promise kept, to be given back by its identifier.
    let mut kept: Vec<(String, u64)> = held
        .take(7)
        .into_iter()
        .map(|h| (h.member, h.promise))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [("n2".into(), 21), ("n3".into(), 22), ("n4".into(), 23)]
    );
}

/// Serves one HTTP request on a fresh port with `body` (200, JSON); returns the address.
fn answer_once(body: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(reply.as_bytes());
    });
    addr
}

/// A 200 is not a confirmation: one from another member (a stale or wrong address), for
/// another leader or another term, or without the answer's fields, confirms nothing.
#[tokio::test]
async fn only_an_answer_to_exactly_this_question_confirms() {
    let answer = |member: &str, confirmed: &str, term: u64| {
        serde_json::to_string(&FailsafeAnswer {
            member: member.into(),
            confirmed: confirmed.into(),
            term,
            promised_ms: 3000,
            promise: 5,
        })
        .unwrap()
    };
    let ask = |body: String| {
        let api = answer_once(body);
        let apis = [("n2".to_string(), api)].into();
        async {
            let answers = ask_all(
                "n1",
                7,
                apis,
                Some("t"),
                None,
                Round::First,
                Default::default(),
            )
            .await;
            answers.get("n2").copied().flatten()
        }
    };
    assert_eq!(ask(answer("n2", "n1", 7)).await, Some(3000));
    assert_eq!(ask(answer("n3", "n1", 7)).await, None, "another member");
    assert_eq!(ask(answer("n2", "n9", 7)).await, None, "another leader");
    assert_eq!(ask(answer("n2", "n1", 6)).await, None, "another term");
    assert_eq!(ask("{}".into()).await, None, "any 200");
}
