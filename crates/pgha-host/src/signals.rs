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
