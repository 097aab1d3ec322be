//! A client inserting rows one by one, recording each write PostgreSQL acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::pg::{lsn, small_runtime, try_connect};

/// What a [`Writer`] inserts and how patiently.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// The statement; its one parameter `$1` is the row's id (`bigint`).
    pub insert: String,
    pub first_id: i64,
    pub connect_timeout: Duration,
    /// How long a write may take: past it, its outcome is unknown and the connection dropped.
    pub write_timeout: Duration,
    /// A pause after each write.
    pub pause: Duration,
    /// Also read `pg_current_wal_lsn()` after each commit (within `write_timeout`).
    pub read_lsn: bool,
}

impl WriterOptions {
    /// `insert` from id `first_id` on, connecting within 3 s, each write within 3 s, no pause.
    pub fn new(insert: &str, first_id: i64) -> WriterOptions {
        WriterOptions {
            insert: insert.to_string(),
            first_id,
            connect_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            pause: Duration::ZERO,
            read_lsn: false,
        }
    }
}

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: i64,
    /// The member that acknowledged it, as the locator named it.
    pub member: String,
    /// `pg_current_wal_lsn()` on `member` right after the commit, with
    /// [`WriterOptions::read_lsn`]: its WAL reaches at least here.
    pub lsn_after: Option<u64>,
    /// How long the write took.
    pub took: Duration,
}

/// Writes from a thread of its own (so that a test blocking its runtime cannot stall it), to
/// whatever its locator names, reconnecting after any failure. A write whose answer was lost is
/// never retried nor counted: its id is skipped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing; `locate` names the member to write to and its URL (`None`: nobody yet).
    pub fn start(
        opts: WriterOptions,
        locate: impl FnMut() -> Option<(String, String)> + Send + 'static,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handle = std::thread::spawn({
            let (stop, acked) = (stop.clone(), acked.clone());
            move || small_runtime().block_on(write_loop(opts, locate, stop, acked))
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    /// Starts writing to `url` (the acknowledgements name no member).
    pub fn to_url(url: String, opts: WriterOptions) -> Writer {
        Writer::start(opts, move || Some((String::new(), url.clone())))
    }

    pub fn acked(&self) -> Vec<Ack> {
        self.acked.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The longest an acknowledged write took.
    pub fn slowest(&self) -> Duration {
        let acked = self.acked.lock().unwrap();
        acked.iter().map(|a| a.took).max().unwrap_or_default()
    }

    /// Waits until `n` more writes than now were acknowledged, or says how many were, after
    /// `timeout`.
    pub async fn wait_more(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let target = self.count() + n;
        let deadline = Instant::now() + timeout;
        while self.count() < target {
            if Instant::now() > deadline {
                return Err(format!(
                    "writer: {} acknowledged, wanted {target} within {timeout:?}",
                    self.count()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops writing (after the write in flight) and returns every acknowledged write.
    pub async fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .expect("join the writer")
                .expect("writer thread");
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn write_loop(
    opts: WriterOptions,
    mut locate: impl FnMut() -> Option<(String, String)>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
) {
    let mut id = opts.first_id;
    let mut current: Option<(String, Client)> = None;
    while !stop.load(Ordering::SeqCst) {
        if current.is_none() {
            if let Some((member, url)) = locate() {
                current = try_connect(&url, opts.connect_timeout)
                    .await
                    .map(|c| (member, c));
            }
            if current.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let (member, client) = current.as_ref().unwrap();
        let t0 = Instant::now();
        let result = tokio::time::timeout(opts.write_timeout, async {
            client.execute(&opts.insert, &[&id]).await?;
            if !opts.read_lsn {
                return Ok(None);
            }
            let row = client
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await?;
            Ok::<_, tokio_postgres::Error>(Some(lsn(row.get(0))))
        })
        .await;
        match result {
            Ok(Ok(lsn_after)) => acked.lock().unwrap().push(Ack {
                id,
                member: member.clone(),
                lsn_after,
                took: t0.elapsed(),
            }),
            // A commit whose answer was lost may or may not be there; it is not counted.
            _ => current = None,
        }
        id += 1;
        if !opts.pause.is_zero() {
            tokio::time::sleep(opts.pause).await;
        }
    }
}
