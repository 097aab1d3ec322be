//! The signals that stop every long-running command (`up`, `agent`, `proxy`, `chaos`,
//! `status --watch`): SIGINT (Ctrl-C) and SIGTERM, installed once and awaited as one; and
//! SIGHUP, which stops a command run from a terminal and is logged and ignored by a daemon.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What SIGHUP means to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHangup {
    /// The terminal it runs in went away (`pgha up`, `pgha chaos`, `status --watch`): stop
    /// as for SIGTERM, cleanly, rather than die where it stands.
    Stop,
    /// A daemon (`pgha agent`, `pgha proxy`): say that the configuration file is read only at
    /// start, and go on. Never a silent death: the leader's agent killed by a stray
    /// `kill -HUP` (a logrotate script, a reload habit) would fence its primary.
    KeepRunning,
}

/// SIGINT, SIGTERM and SIGHUP, listened to from the moment they are installed.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    on_hangup: OnHangup,
}

impl StopSignals {
    pub fn install(on_hangup: OnHangup) -> std::io::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            on_hangup,
        })
    }

    /// Waits for the first signal that stops this command; says which, for messages
    /// ("interrupted while ...").
    pub async fn recv(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "interrupted",
                _ = self.terminate.recv() => return "terminated",
                _ = self.hangup.recv() => match self.on_hangup {
                    OnHangup::Stop => return "hung up",
                    OnHangup::KeepRunning => tracing::warn!(
                        "SIGHUP received and ignored: pgha reads its configuration file only \
                         when it starts; restart it to apply a change to the file (the \
                         cluster's dynamic settings apply live: `pgha config set`)"
                    ),
                },
            }
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
