//! SQL from a test thread: connections held open to exhaust a PostgreSQL's slots.

use super::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgha_testkit::{connect_within, simple_rows, small_runtime};

/// Connections held open to one PostgreSQL (to exhaust its connection slots), from a thread in
/// the client host's namespace; closed on drop.
pub struct HeldConnections {
    pub opened: usize,
    /// The error that ended the opening (e.g. "sorry, too many clients already").
    pub refusal: String,
    /// Sessions of `terminate_app` terminated so far.
    pub terminated: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldConnections {
    /// Opens connections as `conninfo` until PostgreSQL refuses one (at most `max`), then
    /// keeps taking every slot that frees up until dropped.
    /// With `terminate_app`, every second the sessions of that application_name (e.g. the
    /// agent's own long-lived probe connection, "pgha") are terminated from a held connection,
    /// so that they have to reconnect, and find no free slot.
    pub fn open(
        ns: &str,
        conninfo: &str,
        max: usize,
        terminate_app: Option<&str>,
    ) -> HeldConnections {
        let stop = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (ns, conninfo, stop) = (ns.to_string(), conninfo.to_string(), stop.clone());
            let terminate = terminate_app.map(|app| {
                format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = '{app}' AND pid <> pg_backend_pid()"
                )
            });
            let terminated = terminated.clone();
            move || {
                enter_netns(&ns).expect("setns");
                small_runtime().block_on(async {
                    let mut held = Vec::new();
                    let mut refusal = String::from("limit reached");
                    while held.len() < max {
                        match connect_within(&conninfo, Duration::from_secs(3)).await {
                            Ok(c) => held.push(c),
                            Err(e) => {
                                refusal = e;
                                break;
                            }
                        }
                    }
                    let _ = tx.send((held.len(), refusal));
                    // keep taking any slot another client frees
                    let mut last_terminate = Instant::now() - Duration::from_secs(10);
                    while !stop.load(Ordering::SeqCst) {
                        if let (Some(q), Some(admin)) = (&terminate, held.first()) {
                            if last_terminate.elapsed() >= Duration::from_secs(1) {
                                last_terminate = Instant::now();
                                if let Ok(msgs) = admin.simple_query(q).await {
                                    let n = simple_rows(msgs)
                                        .first()
                                        .and_then(|r| r[0].as_deref()?.parse::<usize>().ok())
                                        .unwrap_or(0);
                                    terminated.fetch_add(n, Ordering::SeqCst);
                                }
                            }
                        }
                        if held.len() < max {
                            if let Ok(c) = connect_within(&conninfo, Duration::from_secs(3)).await {
                                held.push(c);
                            }
                        }
                        held.retain(|c| !c.is_closed());
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    drop(held);
                });
            }
        });
        let (opened, refusal) = rx.recv().expect("the connection holder died");
        HeldConnections {
            opened,
            refusal,
            terminated,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HeldConnections {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
