//! A leader's asks for failsafe confirmations: one round asks every listed member over REST,
//! and a refused round is asked again until one confirms or the caller stops it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FailsafeRequest, FAILSAFE_PATH};

/// Each confirmation must arrive within this.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);
/// The pause before a leader asks again after a round that not every member confirmed.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// What a member answers when it confirms: who it is, whom it confirmed in which term, how
/// long it promised not to take the lease, and the promise's identifier (0 from an agent too
/// old to name it: such a promise is never given back, it runs out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailsafeAnswer {
    pub member: String,
    pub confirmed: String,
    pub term: u64,
    pub promised_ms: u64,
    #[serde(default)]
    pub promise: u64,
}

impl FailsafeAnswer {
    /// Whether this answers exactly what `name` was asked: an answer from another member (a
    /// stale or wrong address) or about another leader or term confirms nothing.
    fn answers(&self, name: &str, leader: &str, term: u64) -> bool {
        self.member == name && self.confirmed == leader && self.term == term
    }
}

/// Which round of asks this is: the first one's refusals are logged, the ones after it are
/// only traced (a round may be repeated every [`ASK_AGAIN_AFTER`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    First,
    Again,
}

/// Asks every member of `members` until each has confirmed: `round(which, waiting)` asks those
/// still `waiting` (at once) and gives each one's promise (ms), `None` for a refusal. A member
/// confirms only once its own store read has failed, which may come up to a store call's
/// bound after the leader's: one refused is asked again [`ASK_AGAIN_AFTER`] later, one that
/// confirmed is not asked again. Nothing is asked, and nothing counts, unless `go_on()` holds
/// before the round and once all have confirmed (the caller's view of whom to ask may have
/// changed meanwhile). Returns the start of the earliest round a confirmation counted from
/// (by `now`, the caller's clock: each member promised from its answer, after that) and the
/// shortest promise; `None` when told to stop first, or for nobody to ask.
pub async fn ask_until_confirmed<T: Copy + Ord, F, Fut>(
    members: &BTreeSet<String>,
    mut round: F,
    mut go_on: impl FnMut() -> bool,
    now: impl Fn() -> T,
) -> Option<(T, u64)>
where
    F: FnMut(Round, BTreeSet<String>) -> Fut,
    Fut: std::future::Future<Output = BTreeMap<String, Option<u64>>>,
{
    let mut confirmed: BTreeMap<String, (T, u64)> = BTreeMap::new();
    let mut which = Round::First;
    loop {
        if members.is_empty() || !go_on() {
            return None;
        }
        let began = now();
        let waiting: BTreeSet<String> = members
            .iter()
            .filter(|m| !confirmed.contains_key(*m))
            .cloned()
            .collect();
        for (member, answer) in round(which, waiting).await {
            if let Some(promised) = answer.filter(|_| members.contains(&member)) {
                confirmed.insert(member, (began, promised));
            }
        }
        if confirmed.len() == members.len() {
            if !go_on() {
                return None;
            }
            let since = confirmed.values().map(|(at, _)| *at).min()?;
            let shortest = confirmed.values().map(|(_, ms)| *ms).min()?;
            return Some((since, shortest));
        }
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
        which = Round::Again;
    }
}

/// Asks every member in `apis` (name → REST address), all at once, to confirm `leader` in
/// `term`, with the cluster's API token (a confirmation is control: the members refuse an ask
/// without it): each member's promise (ms), `None` for one that gave none; each promise is
/// recorded in `held` (to be given back). Refusals are logged in the first round only.
pub async fn ask_all(
    leader: &str,
    term: u64,
    apis: BTreeMap<String, String>,
    token: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    which: Round,
    held: super::PromisesHeld,
) -> BTreeMap<String, Option<u64>> {
    let calls = super::member_calls::MemberCalls::new(token, tls, ASK_TIMEOUT);
    // Spawned before any is awaited: the asks run side by side, not one after the other.
    let asks: Vec<(String, tokio::task::JoinHandle<Option<u64>>)> = apis
        .into_iter()
        .map(|(name, api)| {
            let leader = leader.to_string();
            let calls = calls.clone();
            let asked = name.clone();
            let held = held.clone();
            let ask = tokio::task::spawn_blocking(move || {
                let request = FailsafeRequest {
                    leader: leader.clone(),
                    term,
                };
                let answer = calls
                    .post::<_, FailsafeAnswer>(&api, FAILSAFE_PATH, &request)
                    .map_err(NotConfirmed::Call)
                    .and_then(|a| {
                        if a.answers(&name, &leader, term) {
                            Ok(a)
                        } else {
                            Err(NotConfirmed::AnotherQuestion(a))
                        }
                    });
                match answer {
                    Ok(a) => {
                        let length = Duration::from_millis(a.promised_ms);
                        held.record(term, &name, &api, a.promise, length);
                        Some(a.promised_ms)
                    }
                    Err(e) => {
                        let why = e.explain(&name, &leader, term);
                        match which {
                            Round::First => {
                                tracing::info!("{leader}: failsafe: {name} did not confirm ({why})")
                            }
                            Round::Again => {
                                tracing::debug!(
                                    "{leader}: failsafe: {name} did not confirm ({why})"
                                )
                            }
                        }
                        None
                    }
                }
            });
            (asked, ask)
        })
        .collect();
    let mut answers = BTreeMap::new();
    for (name, ask) in asks {
        answers.insert(name, ask.await.ok().flatten());
    }
    answers
}

/// Why a member's confirmation did not count.
enum NotConfirmed {
    Call(super::member_calls::CallError),
    /// It answered, but for another member, leader or term (an address now another's).
    AnotherQuestion(FailsafeAnswer),
}

impl NotConfirmed {
    /// The text for the log of asking `name` to confirm `leader` in `term`.
    fn explain(&self, name: &str, leader: &str, term: u64) -> String {
        match self {
            NotConfirmed::Call(e) => e.to_string(),
            NotConfirmed::AnotherQuestion(a) => format!(
                "answered for {} confirming {} in term {}, not {name} confirming {leader} in \
                 term {term}",
                a.member, a.confirmed, a.term
            ),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
