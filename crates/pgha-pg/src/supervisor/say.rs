//! The supervisor's messages, written by a thread of their own: a reader of its output that
//! stops reading (a full pipe, a stuck journald) never holds up a fast stop or a kill.

use std::fmt::Display;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Lines waiting for the writer at most; the next ones are dropped, and counted, until it has
/// room again.
const QUEUED: usize = 64;

/// Where the supervisor's lines go without ever blocking it.
pub struct Say {
    member: String,
    lines: Option<SyncSender<String>>,
    /// Lines dropped since the last one queued.
    dropped: u64,
    /// Answers once the writer has written every line queued.
    written: Option<Receiver<()>>,
}

impl Say {
    /// Lines of supervisor `member` written to `out` by a thread of their own (none when no
    /// thread can be started: the lines are then dropped, never written in the way).
    pub fn to(out: impl Write + Send + 'static, member: &str) -> Say {
        let (lines, queued) = sync_channel::<String>(QUEUED);
        let (done, written) = sync_channel::<()>(1);
        let writer = std::thread::Builder::new()
            .name("supervise-log".into())
            .spawn(move || {
                let mut out = out;
                for line in queued {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                }
                let _ = done.send(());
            });
        let started = writer.is_ok();
        Say {
            member: member.to_string(),
            lines: started.then_some(lines),
            dropped: 0,
            written: started.then_some(written),
        }
    }

    /// Queues one line; drops it when the writer is that far behind.
    pub fn say(&mut self, text: impl Display) {
        let Some(lines) = &self.lines else {
            return;
        };
        if self.dropped > 0 {
            let note = format!(
                "pgha supervise {}: {} lines dropped (nothing read them)\n",
                self.member, self.dropped
            );
            if lines.try_send(note).is_err() {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        let line = format!("pgha supervise {}: {text}\n", self.member);
        if let Err(TrySendError::Full(_)) = lines.try_send(line) {
            self.dropped += 1;
        }
    }

    /// Lets the writer write what is queued, waiting `patience` at most (it may be stuck).
    pub fn finish(mut self, patience: Duration) {
        self.lines = None;
        if let Some(written) = self.written.take() {
            let _ = written.recv_timeout(patience);
        }
    }
}
