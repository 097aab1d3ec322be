//! The signals that stop every long-running command (`up`, `agent`, `proxy`): SIGINT
//! (Ctrl-C) and SIGTERM, installed once and awaited as one.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, listened to from the moment they are installed.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first of them; says which, for messages ("interrupted while ...").
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted",
            _ = self.terminate.recv() => "terminated",
        }
    }
}

/// Writes to a pipe whose reader went away fail with EPIPE instead of killing the process:
/// a long-running command (`pgha up | tee log`, then Ctrl-C) must still stop its members.
/// Rust's runtime usually does this before `main`; said here so that it holds whatever the
/// build. Children get the default disposition back when they are spawned (std restores it).
pub fn ignore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code; nothing else changes SIGPIPE concurrently
    // (called first thing in `main`, before any thread starts).
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        tracing::warn!("could not ignore SIGPIPE: {e}");
    }
}
