//! A leader's asks for failsafe confirmations: one round asks every listed member over REST,
//! and a refused round is asked again until one confirms or the caller stops it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FailsafeRequest, FAILSAFE_PATH};

/// Each confirmation must arrive within this.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);
/// The pause before a leader asks again after a round that not every member confirmed.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// What a member answers when it confirms: who it is, whom it confirmed in which term, and
/// how long it promised not to take the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailsafeAnswer {
    pub member: String,
    pub confirmed: String,
    pub term: u64,
    pub promised_ms: u64,
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

/// Rounds of asks until one in which every member confirmed: `round(which)` asks them all and
/// gives the shortest promise when all confirmed. After a round some refused, asks again
/// [`ASK_AGAIN_AFTER`] later while `go_on()`: a member confirms only once its own store read
/// has failed, which may come up to a store call's bound after the leader's, so a round made
/// just before that is refused by a member that confirms a moment later. Returns when the
/// confirming round began (by `now`, the caller's clock) and its shortest promise (ms).
pub async fn ask_until_confirmed<T: Copy, F, Fut>(
    mut round: F,
    mut go_on: impl FnMut() -> bool,
    now: impl Fn() -> T,
) -> Option<(T, u64)>
where
    F: FnMut(Round) -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let mut which = Round::First;
    loop {
        let began = now();
        if let Some(promised) = round(which).await {
            return Some((began, promised));
        }
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
        if !go_on() {
            return None;
        }
        which = Round::Again;
    }
}

/// Asks every member in `apis` (name → REST address) to confirm `leader` in `term`, with the
/// cluster's API token (a confirmation is control: the members refuse an ask without it);
/// when all did, the shortest promise (ms), else `None` (the caller never asks an empty set:
/// nobody asked is nobody confirming). Refusals are logged in the first round only.
pub async fn ask_all(
    leader: &str,
    term: u64,
    apis: BTreeMap<String, String>,
    token: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    which: Round,
) -> Option<u64> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut builder = ureq::AgentBuilder::new().timeout(ASK_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    let agent = builder.build();
    let asks = apis.into_iter().map(|(name, api)| {
        let leader = leader.to_string();
        let bearer = token.map(|t| format!("Bearer {t}"));
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || {
            let mut request = agent.post(&format!("{scheme}://{api}{FAILSAFE_PATH}"));
            if let Some(bearer) = &bearer {
                request = request.set("Authorization", bearer);
            }
            let result = request.send_json(FailsafeRequest {
                leader: leader.clone(),
                term,
            });
            let answer = result
                .map_err(|e| e.to_string())
                .and_then(|r| r.into_json::<FailsafeAnswer>().map_err(|e| e.to_string()))
                .and_then(|a| {
                    if a.answers(&name, &leader, term) {
                        Ok(a)
                    } else {
                        Err(format!(
                            "answered for {} confirming {} in term {}, not {name} confirming \
                             {leader} in term {term}",
                            a.member, a.confirmed, a.term
                        ))
                    }
                });
            match answer {
                Ok(a) => Some(a.promised_ms),
                Err(e) => {
                    match which {
                        Round::First => {
                            tracing::info!("{leader}: failsafe: {name} did not confirm ({e})")
                        }
                        Round::Again => {
                            tracing::debug!("{leader}: failsafe: {name} did not confirm ({e})")
                        }
                    }
                    None
                }
            }
        })
    });
    futures_all(asks).await
}

async fn futures_all(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Option<u64>>>,
) -> Option<u64> {
    let mut shortest: Option<u64> = None;
    let mut all = true;
    for h in handles {
        match h.await.ok().flatten() {
            Some(ms) => shortest = Some(shortest.map_or(ms, |s| s.min(ms))),
            None => all = false,
        }
    }
    if all {
        shortest
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused round is asked again [`ASK_AGAIN_AFTER`] later, the first one's refusals
    /// logged and the others' only traced, until one confirms (trusted from when that round
    /// began) or the caller says to stop.
    #[tokio::test(start_paused = true)]
    async fn asks_again_until_every_member_confirms_or_told_to_stop() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let start = tokio::time::Instant::now();
        let rounds = AtomicUsize::new(0);
        let refusing_twice = |which| {
            let n = rounds.fetch_add(1, Ordering::SeqCst);
            assert_eq!(which == Round::First, n == 0);
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                (n >= 2).then_some(3000)
            }
        };
        let now = tokio::time::Instant::now;
        let (began, promised) = ask_until_confirmed(refusing_twice, || true, now)
            .await
            .expect("confirmed in the third round");
        assert_eq!(promised, 3000);
        assert_eq!(
            began - start,
            (ASK_AGAIN_AFTER + Duration::from_millis(30)) * 2
        );

        let rounds = AtomicUsize::new(0);
        let checks = AtomicUsize::new(0);
        let refusing = |_| {
            rounds.fetch_add(1, Ordering::SeqCst);
            async { None }
        };
        let three_times = || checks.fetch_add(1, Ordering::SeqCst) < 3;
        assert_eq!(ask_until_confirmed(refusing, three_times, now).await, None);
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            4,
            "asked again while told to go on"
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
            })
            .unwrap()
        };
        let ask = |body: String| {
            let api = answer_once(body);
            let apis = [("n2".to_string(), api)].into();
            ask_all("n1", 7, apis, Some("t"), None, Round::First)
        };
        assert_eq!(ask(answer("n2", "n1", 7)).await, Some(3000));
        assert_eq!(ask(answer("n3", "n1", 7)).await, None, "another member");
        assert_eq!(ask(answer("n2", "n9", 7)).await, None, "another leader");
        assert_eq!(ask(answer("n2", "n1", 6)).await, None, "another term");
        assert_eq!(ask("{}".into()).await, None, "any 200");
    }
}
