//! Running one PostgreSQL program with a timeout, keeping the tail of its output for errors.

use std::time::Duration;

use tokio::process::Command;

use crate::error::{PgError, Result};

/// How many trailing output lines an error keeps.
pub const TAIL_LINES: usize = 15;

/// Runs `cmd` to completion within `timeout`; fails with its output's tail when it exits non-zero.
pub async fn run(mut cmd: Command, program: &str, timeout: Duration) -> Result<String> {
    cmd.stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(PgError::Timeout {
                what: program.to_string(),
                seconds: timeout.as_secs(),
            })
        }
        Ok(Err(e)) => return Err(PgError::io(format!("could not run {program}"), e)),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if output.status.success() {
        return Ok(stdout);
    }
    let mut text = stdout;
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(PgError::CommandFailed {
        program: program.to_string(),
        status: output.status.to_string(),
        output_tail: tail(&text, TAIL_LINES),
    })
}

/// The last `n` non-empty lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file (empty if unreadable); reads at most the last 64 KiB.
pub fn file_tail(path: &std::path::Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    tail(&String::from_utf8_lossy(&buf), n)
}
