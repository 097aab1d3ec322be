//! Cloning a standby with pg_basebackup (WAL streamed through the member's slot), with progress.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::command::tail;
use crate::error::{PgError, Result};
use crate::instance::Instance;
use crate::source::SourceServer;

/// Base backup progress: kilobytes copied so far and the estimated total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done_kb: u64,
    pub total_kb: u64,
}

/// Clones `source` into `target` (which must not exist or be empty), streaming WAL through
/// the physical slot `slot` on the source, calling `on_progress` as pg_basebackup reports it.
pub async fn clone(
    instance: &Instance,
    source: &SourceServer<'_>,
    slot: Option<&str>,
    target: &Path,
    timeout: Duration,
    mut on_progress: impl FnMut(Progress),
) -> Result<()> {
    let mut cmd = instance
        .run_as
        .command(instance.bins.program("pg_basebackup"), &instance.member_dir);
    cmd.arg("-D")
        .arg(target)
        .args(["-X", "stream", "-c", "fast", "-P", "-w"])
        .args(slot.map(|s| format!("--slot={s}")))
        .arg(format!("--dbname={}", source.conninfo()))
        .arg(format!("--label=pgha clone of {}", instance.name))
        .env("PGPASSFILE", source.passfile)
        .env("PGAPPNAME", format!("pgha_clone_{}", instance.name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| PgError::io("could not run pg_basebackup", e))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let work = async {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stderr
                .read(&mut buf)
                .await
                .map_err(|e| PgError::io("read pg_basebackup output", e))?;
            if n == 0 {
                break;
            }
            let chunk = String::from_utf8_lossy(&buf[..n]);
            for piece in chunk.split(['\r', '\n']) {
                if let Some(p) = parse_progress(piece) {
                    on_progress(p);
                }
            }
            all.push_str(&chunk.replace('\r', "\n"));
            if all.len() > 256 * 1024 {
                all = all[all.len() - 64 * 1024..].to_string();
            }
        }
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        all.push_str(&out);
        let status = child
            .wait()
            .await
            .map_err(|e| PgError::io("wait for pg_basebackup", e))?;
        Ok::<_, PgError>((status, all))
    };
    let (status, output) =
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| PgError::Timeout {
                what: "pg_basebackup".into(),
                seconds: timeout.as_secs(),
            })??;
    if status.success() {
        Ok(())
    } else {
        let meaningful: String = output
            .lines()
            .filter(|l| parse_progress(l).is_none())
            .collect::<Vec<_>>()
            .join("\n");
        Err(PgError::CommandFailed {
            program: "pg_basebackup".into(),
            status: status.to_string(),
            output_tail: tail(&meaningful, 10),
        })
    }
}

/// Parses a pg_basebackup progress line such as `23456/45678 kB (51%), 0/1 tablespace`.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let line = line.trim();
    let (numbers, _) = line.split_once(" kB")?;
    let (done, total) = numbers.split_once('/')?;
    Some(Progress {
        done_kb: done.trim().parse().ok()?,
        total_kb: total.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_lines() {
        assert_eq!(
            parse_progress("  23456/45678 kB (51%), 0/1 tablespace"),
            Some(Progress {
                done_kb: 23456,
                total_kb: 45678
            })
        );
        assert_eq!(
            parse_progress("pg_basebackup: error: connection failed"),
            None
        );
        assert_eq!(parse_progress(""), None);
    }
}
