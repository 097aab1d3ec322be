//! Writers on every member, recording each attempt, and the check of one writer at a time.

use super::*;

/// One write attempt: which member, when it was sent and when it came back, and whether it
/// committed.
#[derive(Clone, Debug)]
pub(super) struct Attempt {
    pub(super) member: String,
    pub(super) start: Instant,
    pub(super) end: Instant,
    pub(super) ok: bool,
}

/// Tries a write on each given member every `every`, on a connection kept open (re-opened when
/// it breaks) with a short statement timeout, and records every attempt.
pub(super) struct Writers {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub(super) fn start(
        rt: &tokio::runtime::Runtime,
        members: &[&Agent],
        every: Duration,
    ) -> Writers {
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = members
            .iter()
            .map(|a| {
                let (name, conninfo) = (a.name.clone(), a.conninfo());
                let (attempts, stop) = (attempts.clone(), stop.clone());
                rt.spawn(async move {
                    let insert = format!("INSERT INTO pgha_probe(member) VALUES ('{name}')");
                    let mut client: Option<tokio_postgres::Client> = None;
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::SeqCst) {
                        tick.tick().await;
                        if client.as_ref().is_none_or(|c| c.is_closed()) {
                            client = None;
                            if let Some(c) = connect(&conninfo).await {
                                if c.simple_query("SET statement_timeout = 300").await.is_ok() {
                                    client = Some(c);
                                }
                            }
                        }
                        let start = Instant::now();
                        let ok = match &client {
                            Some(c) => matches!(
                                tokio::time::timeout(
                                    Duration::from_millis(500),
                                    c.simple_query(&insert)
                                )
                                .await,
                                Ok(Ok(_))
                            ),
                            None => false,
                        };
                        let end = Instant::now();
                        attempts.lock().unwrap().push(Attempt {
                            member: name.clone(),
                            start,
                            end,
                            ok,
                        });
                    }
                })
            })
            .collect();
        Writers {
            attempts,
            stop,
            tasks,
        }
    }

    fn snapshot(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    pub(super) fn first_ok(&self, member: &str, after: Instant) -> Option<Instant> {
        self.snapshot()
            .iter()
            .filter(|a| a.ok && a.member == member && a.start >= after)
            .map(|a| a.start)
            .min()
    }

    /// Waits (30 s at most) until a member other than `old` commits a write sent at `after` or
    /// later: which member, and when its first such write was sent.
    pub(super) fn await_another_writer(&self, old: &str, after: Instant) -> (String, Instant) {
        wait_until(
            "another member taking writes",
            Duration::from_secs(30),
            || {
                self.snapshot()
                    .iter()
                    .filter(|a| a.ok && a.member != old && a.start >= after)
                    .min_by_key(|a| a.start)
                    .map(|a| (a.member.clone(), a.start))
            },
        )
    }

    /// Lets the writers write for `linger` more, stops them and returns every attempt.
    pub(super) fn finish_after(
        self,
        linger: Duration,
        rt: &tokio::runtime::Runtime,
    ) -> Vec<Attempt> {
        std::thread::sleep(linger);
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
        let v = self.attempts.lock().unwrap().clone();
        v
    }
}

/// Panics if two members committed writes in overlapping windows, or if writes ever went
/// back and forth between members (A, then B, then A again).
pub(super) fn assert_one_writer(attempts: &[Attempt], origin: Instant) {
    let mut ok: Vec<&Attempt> = attempts.iter().filter(|a| a.ok).collect();
    ok.sort_by_key(|a| a.start);
    let ms = |t: Instant| t.duration_since(origin).as_millis() as i64;
    for (i, a) in ok.iter().enumerate() {
        for b in &ok[i + 1..] {
            if a.member != b.member && a.start <= b.end && b.start <= a.end {
                panic!(
                    "two writers at once: {} committed in [{}, {}] ms and {} in [{}, {}] ms",
                    a.member,
                    ms(a.start),
                    ms(a.end),
                    b.member,
                    ms(b.start),
                    ms(b.end)
                );
            }
        }
    }
    let mut order: Vec<&str> = Vec::new();
    for a in &ok {
        if order.last() != Some(&a.member.as_str()) {
            assert!(
                !order.contains(&a.member.as_str()),
                "writes went back to {} after another member took writes: {order:?}",
                a.member
            );
            order.push(&a.member);
        }
    }
}
