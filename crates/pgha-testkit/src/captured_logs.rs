//! The `tracing` lines a test's code logs on its thread, to check what an operator would read.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// The lines logged on this thread, at INFO and above, from [`CapturedLogs::start`] until it is
/// dropped (tasks of a current-thread runtime log on it too).
pub struct CapturedLogs {
    buffer: Buffer,
    _guard: DefaultGuard,
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Begins capturing.
    pub fn start() -> CapturedLogs {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        CapturedLogs {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines captured since the last take.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.0.lock().expect("log buffer"));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
