//! Session worker threads, each with its own current-thread runtime and event loop.
//!
//! Each worker accepts on its own SO_REUSEPORT socket of every listener and serves those clients
//! itself, so a session's wake-ups stay on one thread with no cross-thread hand-off, not even at
//! connect time (HAProxy's model).

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::listener::{accept_loop, ListenerCtx};

/// What one worker serves: a socket of each listener.
pub(crate) type WorkerSockets = Vec<(Arc<ListenerCtx>, std::net::TcpListener)>;

/// Starts a worker thread serving `sockets`; the returned receiver fires when it has stopped
/// accepting (shutdown) and its sessions have ended.
pub(crate) fn spawn_worker(
    index: usize,
    sockets: WorkerSockets,
) -> io::Result<oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("pgha-proxy-{index}"))
        .spawn(move || {
            rt.block_on(async move {
                let mut loops = Vec::new();
                let mut tasks = None;
                for (ctx, std_listener) in sockets {
                    tasks = Some(ctx.shared.tasks.clone());
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => loops.push(tokio::spawn(accept_loop(ctx, l))),
                        Err(e) => tracing::error!(error = %e, "cannot register listener"),
                    }
                }
                for l in loops {
                    let _ = l.await;
                }
                // Sessions of this thread end on shutdown; wait for them before leaving.
                if let Some(tasks) = tasks {
                    tasks.close();
                    tasks.wait().await;
                }
            });
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}
