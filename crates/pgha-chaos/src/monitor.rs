//! Watches who holds the leader key (the cluster's `/cluster`, a store read: cheap) every
//! 250 ms while the campaign runs, for the report's timeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgha_host::api::read::ClusterRecord;
use pgha_host::client::Client;
use tokio::task::JoinHandle;

use crate::clock::{ms, Clock, Micros};
use crate::summary::LeaderSpan;

/// A change of leader: when, and who leads from then on.
type Change = (Micros, Option<String>);

/// Leader samples: (when, leader) at each change.
pub struct Monitor {
    changes: Arc<Mutex<Vec<Change>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
    clock: Clock,
}

impl Monitor {
    pub fn start(client: Client, clock: Clock) -> Monitor {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (changes, stop) = (changes.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(c) = client.get::<ClusterRecord>("/cluster").await {
                        let mut v = changes.lock().unwrap();
                        if v.last().map(|(_, l): &Change| l) != Some(&c.leader) {
                            v.push((clock.now(), c.leader));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        Monitor {
            changes,
            stop,
            task,
            clock,
        }
    }

    /// Stops watching; who led from when to when.
    pub async fn finish(self) -> Vec<LeaderSpan> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let end = self.clock.now();
        spans(&self.changes.lock().unwrap(), end)
    }
}

/// Consecutive changes as spans ending at the next change (the last at `end`).
pub fn spans(changes: &[Change], end: Micros) -> Vec<LeaderSpan> {
    changes
        .iter()
        .enumerate()
        .map(|(i, (t, leader))| LeaderSpan {
            leader: leader.clone(),
            from_ms: ms(*t),
            to_ms: ms(changes.get(i + 1).map_or(end, |(next, _)| *next)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_end_where_the_next_begins() {
        let s = super::spans(
            &[
                (0, Some("n1".into())),
                (2000, None),
                (3000, Some("n2".into())),
            ],
            5000,
        );
        assert_eq!(s.len(), 3);
        assert_eq!((s[1].from_ms, s[1].to_ms), (2.0, 3.0));
        assert_eq!((s[2].leader.as_deref(), s[2].to_ms), (Some("n2"), 5.0));
    }
}
