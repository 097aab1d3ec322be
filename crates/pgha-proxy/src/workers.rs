//! Session worker threads: each runs a current-thread runtime with its own epoll, so all of a
//! session's wake-ups stay on one thread with no cross-thread hand-offs (HAProxy's model); the
//! acceptor hands new connections out round-robin.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::listener::{run_session, ClientSlot};

/// A connection on its way to a worker, with its slot (released if the hand-off fails).
pub(crate) type Handoff = (std::net::TcpStream, ClientSlot, SocketAddr);

/// The pool of worker threads.
pub(crate) struct Workers {
    senders: Vec<mpsc::UnboundedSender<Handoff>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` worker threads whose sessions are tracked by `tasks`; they exit once this
    /// pool is dropped and their sessions ended.
    pub(crate) fn start(n: usize, tasks: &TaskTracker) -> io::Result<Workers> {
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tasks = tasks.clone();
            std::thread::Builder::new()
                .name(format!("pgha-proxy-{i}"))
                .spawn(move || rt.block_on(worker_loop(rx, tasks)))?;
            senders.push(tx);
        }
        Ok(Workers {
            senders,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a connection to the next worker.
    pub(crate) fn dispatch(&self, handoff: Handoff) -> Result<(), Handoff> {
        let i = self.next.fetch_add(1, Relaxed) % self.senders.len();
        self.senders[i].send(handoff).map_err(|e| e.0)
    }
}

async fn worker_loop(mut rx: mpsc::UnboundedReceiver<Handoff>, tasks: TaskTracker) {
    while let Some((stream, slot, peer)) = rx.recv().await {
        match TcpStream::from_std(stream) {
            Ok(client) => {
                tasks.spawn(run_session(slot, client, peer));
            }
            Err(e) => tracing::warn!(%peer, error = %e, "cannot register client socket"),
        }
    }
    // Sessions still running here are the ones shutdown is closing: let them finish.
    tasks.wait().await;
}
