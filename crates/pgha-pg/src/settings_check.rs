//! PostgreSQL parameters checked by PostgreSQL's own parser before pgha writes them into any
//! member's configuration: a name it does not know, or a value it cannot parse, in the file
//! stops every later start of the server ("configuration file contains errors").

use std::process::Stdio;
use std::time::Duration;

use crate::binaries::PgBinaries;
use crate::error::{PgError, Result};
use crate::osuser::RunAs;

/// How long `postgres -C` may take (it reads no data and exits at once).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks `settings` (name, value) with `postgres -C`, given them as `-c name=value` over an
/// empty configuration and an empty directory: PostgreSQL parses and range-checks each value,
/// and refuses names it does not know (placeholders such as `pg_stat_statements.max` pass,
/// as in a configuration file). It does not load libraries nor check settings against each
/// other. Runs as the PostgreSQL OS user; the directory is created empty by this process and
/// is not writable by that user.
pub async fn check_settings(
    bins: &PgBinaries,
    run_as: &RunAs,
    settings: &[(String, String)],
) -> Result<()> {
    let Some((first, _)) = settings.first() else {
        return Ok(());
    };
    let empty = tempfile::Builder::new()
        .prefix("pgha-settings-check-")
        .tempdir()
        .map_err(|e| PgError::io("create an empty directory to check settings in", e))?;
    std::fs::set_permissions(
        empty.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| {
        PgError::io(
            "open the settings check directory to the PostgreSQL user",
            e,
        )
    })?;
    let mut cmd = run_as.command(bins.program("postgres"), empty.path());
    cmd.arg("--config-file=/dev/null")
        .arg("-D")
        .arg(empty.path())
        .arg("-C")
        .arg(first);
    for (name, value) in settings {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(CHECK_TIMEOUT, cmd.output())
        .await
        .map_err(|_| PgError::Timeout {
            what: "postgres -C (checking settings)".into(),
            seconds: CHECK_TIMEOUT.as_secs(),
        })?
        .map_err(|e| PgError::io("run postgres -C to check settings", e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(PgError::SettingsRefused {
        version: bins.version.clone(),
        detail: refusal(&String::from_utf8_lossy(&output.stderr)),
    })
}

/// PostgreSQL's own words from its stderr: each FATAL, DETAIL and HINT line, without the log
/// line prefix (`2026-12-03 14:04:24.471 GMT [15964] FATAL:  `).
fn refusal(stderr: &str) -> String {
    let said: Vec<String> = stderr
        .lines()
        .filter_map(|line| {
            ["FATAL:", "DETAIL:", "HINT:"].iter().find_map(|tag| {
                let (_, rest) = line.split_once(tag)?;
                let rest = rest.trim();
                Some(match *tag {
                    "FATAL:" => rest.to_string(),
                    _ => format!("({})", rest),
                })
            })
        })
        .collect();
    match said.is_empty() {
        true => stderr.trim().to_string(),
        false => said.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresqls_words_without_the_log_prefix() {
        let stderr = "2026-12-03 14:04:24.471 GMT [15964] FATAL:  invalid value for parameter \
                      \"shared_buffers\": \"99999TB\"\n2026-12-03 14:04:24.471 GMT [15964] HINT:  \
                      Value exceeds integer range.\n";
        assert_eq!(
            refusal(stderr),
            "invalid value for parameter \"shared_buffers\": \"99999TB\" (Value exceeds integer \
             range.)"
        );
        assert_eq!(
            refusal("postgres: something else\n"),
            "postgres: something else"
        );
    }
}
