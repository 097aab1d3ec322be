//! Where and how pgha logs: stderr, as text or JSON lines, never panicking on a closed pipe.

use std::io::Write;

use crate::cli::LogFormat;

/// stderr for log lines. A line that cannot be written (stderr a closed pipe) is dropped:
/// tracing reports a failed write with `eprintln!`, which panics on that same closed pipe.
struct LogStderr;

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Logs to stderr as text or JSON lines; colours only when stderr is a terminal (never escape
/// codes in a log file or a pipe).
pub fn init(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogStderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
