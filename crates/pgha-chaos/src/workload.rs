//! The campaign's clients: writers inserting one row at a time through the read-write route,
//! each acknowledged write recorded with who answered and when, and a reader through the
//! read-only entry point; every client error classified.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::classify::{classify, ErrorClass};
use crate::clock::{Clock, Micros};
use crate::target::{Target, WriteRoute};

/// The campaign's table (dropped when it ends; replaced when a previous run left it).
pub const TABLE: &str = "pgha_chaos_writes";

/// How long a client waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One INSERT, answered with who ran it, when by the server's clock, on which timeline and
/// at which WAL position.
const INSERT: &str = "INSERT INTO pgha_chaos_writes(id, writer) VALUES ($1, $2) RETURNING \
     current_setting('cluster_name'), \
     coalesce(host(inet_server_addr()), '') || ':' || coalesce(inet_server_port(), 0)::text, \
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
     pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text";

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub writers: u16,
    /// A pause after each write.
    pub pause: Duration,
    /// Past it, a write's outcome is unknown: it is not counted and the connection dropped.
    pub write_timeout: Duration,
    pub reader: bool,
}

/// One acknowledged write.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub id: i64,
    pub writer: u16,
    /// The member that ran it (its `cluster_name`, else its address).
    pub member: String,
    /// The timeline it was written on (from its WAL file's name).
    pub timeline: u32,
    /// `pg_current_wal_lsn()` as it ran.
    pub lsn: String,
    pub sent: Micros,
    pub acked: Micros,
    /// When the server ran it, by its clock, on the campaign's axis.
    pub executed: Option<Micros>,
}

/// One client error.
#[derive(Debug, Clone, Serialize)]
pub struct ClientFailure {
    pub at: Micros,
    /// The writer's number, or `None` for the reader.
    pub writer: Option<u16>,
    pub class: ErrorClass,
    /// Connecting (not a statement) failed.
    pub connecting: bool,
}

/// What the clients recorded, shared with their tasks.
#[derive(Debug, Default)]
pub struct Record {
    pub acks: Mutex<Vec<Ack>>,
    pub failures: Mutex<Vec<ClientFailure>>,
    pub attempts: AtomicU64,
    pub reads_ok: AtomicU64,
}

impl Record {
    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Whether a write sent at or after `since` was acknowledged.
    pub fn acked_since(&self, since: Micros) -> bool {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .rev()
            .any(|a| a.sent >= since)
    }

    fn fail(&self, clock: &Clock, writer: Option<u16>, class: ErrorClass, connecting: bool) {
        self.failures.lock().unwrap().push(ClientFailure {
            at: clock.now(),
            writer,
            class,
            connecting,
        });
    }
}

/// The running clients.
pub struct Workload {
    pub record: Arc<Record>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts the writers and the reader.
    pub fn start(target: &Target, clock: Clock, opts: &WorkloadOptions) -> Workload {
        let record = Arc::new(Record::default());
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicI64::new(1));
        let mut tasks = Vec::new();
        for k in 0..opts.writers {
            let route = target.writes[k as usize % target.writes.len()].clone();
            let w = WriterTask {
                target: target.clone(),
                route,
                number: k + 1,
                clock,
                opts: opts.clone(),
                record: record.clone(),
                stop: stop.clone(),
                next_id: next_id.clone(),
            };
            tasks.push(tokio::spawn(w.run()));
        }
        if let (true, Some(_)) = (opts.reader, &target.reads) {
            tasks.push(tokio::spawn(read_loop(
                target.clone(),
                clock,
                opts.write_timeout,
                record.clone(),
                stop.clone(),
            )));
        }
        Workload {
            record,
            stop,
            tasks,
        }
    }

    /// Stops every client after its statement in flight (each bounded by its timeout).
    pub async fn finish(mut self) -> Arc<Record> {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.record.clone()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct WriterTask {
    target: Target,
    route: WriteRoute,
    number: u16,
    clock: Clock,
    opts: WorkloadOptions,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicI64>,
}

impl WriterTask {
    async fn run(self) {
        let mut client: Option<tokio_postgres::Client> = None;
        let writer = self.number as i32;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = client.as_ref() else {
                match self.target.connect(&self.route, CONNECT_TIMEOUT).await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        self.record
                            .fail(&self.clock, Some(self.number), e.class(), true);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            // A write whose answer is lost is never retried: its id is skipped.
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            self.record.attempts.fetch_add(1, Ordering::Relaxed);
            let sent = self.clock.now();
            let answer = tokio::time::timeout(
                self.opts.write_timeout,
                c.query_one(INSERT, &[&id, &writer]),
            )
            .await;
            let acked = self.clock.now();
            match answer {
                Ok(Ok(row)) => {
                    let name: String = row.get(0);
                    let address: String = row.get(1);
                    let executed: Option<i64> = row.get(2);
                    let walfile: String = row.get(3);
                    let ack = Ack {
                        id,
                        writer: self.number,
                        member: self.member_named(name, address),
                        timeline: u32::from_str_radix(walfile.get(..8).unwrap_or("0"), 16)
                            .unwrap_or(0),
                        lsn: row.get(4),
                        sent,
                        acked,
                        executed: executed.map(|e| self.clock.from_epoch_us(e)),
                    };
                    self.record.acks.lock().unwrap().push(ack);
                }
                Ok(Err(e)) => {
                    self.record
                        .fail(&self.clock, Some(self.number), classify(&e), false);
                    client = None;
                }
                Err(_) => {
                    self.record
                        .fail(&self.clock, Some(self.number), ErrorClass::TimedOut, false);
                    client = None;
                }
            }
            if !self.opts.pause.is_zero() {
                tokio::time::sleep(self.opts.pause).await;
            }
        }
    }

    /// The member that answered: its `cluster_name` when it is a member's name, else the
    /// member at that address, else the address itself.
    fn member_named(&self, cluster_name: String, address: String) -> String {
        if self.target.member(&cluster_name).is_some() {
            return cluster_name;
        }
        self.target
            .members
            .iter()
            .find(|m| m.endpoint.to_string() == address)
            .map(|m| m.name.clone())
            .unwrap_or(address)
    }
}

/// Reads the newest id through the read-only entry point, every 50 ms.
async fn read_loop(
    target: Target,
    clock: Clock,
    timeout: Duration,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
) {
    let Some(entry) = target.reads.clone() else {
        return;
    };
    let mut client: Option<tokio_postgres::Client> = None;
    let query = format!("SELECT max(id) FROM {TABLE}");
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = client.as_ref() else {
            match target.connect_endpoint(&entry, CONNECT_TIMEOUT).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    record.fail(&clock, None, e.class(), true);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        match tokio::time::timeout(timeout, c.query_one(query.as_str(), &[])).await {
            Ok(Ok(_)) => {
                record.reads_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                record.fail(&clock, None, classify(&e), false);
                client = None;
            }
            Err(_) => {
                record.fail(&clock, None, ErrorClass::TimedOut, false);
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
