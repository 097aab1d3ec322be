//! Faults of the user's platform (`--fault-command NAME=CMD`): how one is named and parsed,
//! and how its command runs.

use std::time::Duration;

use crate::error::ChaosError;
use crate::faults::FaultKind;

/// A `--fault-command NAME=CMD`: the name a campaign reports it by, and the shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultCommand {
    pub name: &'static str,
    pub command: String,
}

impl FaultCommand {
    /// Parses `NAME=CMD`: NAME of lower-case letters, digits and `-`, not a built-in fault's.
    /// The name lives as long as the process (a campaign names a few).
    pub fn parse(text: &str) -> Result<FaultCommand, ChaosError> {
        let usage = |why: String| ChaosError::Usage(format!("--fault-command {text:?}: {why}"));
        let (name, command) = text.split_once('=').ok_or_else(|| {
            usage("give NAME=CMD, e.g. etcd-restart='systemctl restart etcd'".into())
        })?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(usage(format!(
                "the name {name:?} must be lower-case letters, digits and '-'"
            )));
        }
        if name == "all" || FaultKind::ALL.iter().any(|k| k.name() == name) {
            return Err(usage(format!("{name:?} is the name of a built-in fault")));
        }
        if command.trim().is_empty() {
            return Err(usage("the command is empty".into()));
        }
        Ok(FaultCommand {
            name: Box::leak(name.to_string().into_boxed_str()),
            command: command.to_string(),
        })
    }
}

/// The longest a `--fault-command` may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a `--fault-command` through `sh -c`, with the leader's name in `PGHA_LEADER`.
pub async fn run(command: &str, leader: &str) -> Result<(), String> {
    let run = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env("PGHA_LEADER", leader)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "`{command}` ran for more than {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("`{command}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_commands_are_named_apart_from_the_built_in_faults() {
        let c = FaultCommand::parse("etcd-restart=systemctl restart etcd").unwrap();
        assert_eq!(
            (c.name, c.command.as_str()),
            ("etcd-restart", "systemctl restart etcd")
        );
        for bad in [
            "systemctl restart etcd",
            "switchover=true",
            "all=true",
            "Etcd=x",
            "x=",
        ] {
            assert!(FaultCommand::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
