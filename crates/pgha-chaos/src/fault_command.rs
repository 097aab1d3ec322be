//! Faults of the user's platform (`--fault-command NAME=CMD`): how one is named and parsed,
//! and how its command runs.

use std::time::Duration;

use crate::error::ChaosError;
use crate::faults::FaultKind;
use crate::inject_error::CommandError;

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
pub async fn run(command: &str, leader: &str) -> Result<(), CommandError> {
    let run = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env("PGHA_LEADER", leader)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| CommandError::TimedOut {
            command: command.to_string(),
            seconds: COMMAND_TIMEOUT.as_secs(),
        })?
        .map_err(|source| CommandError::Spawn {
            command: command.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CommandError::Failed {
            command: command.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
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

    #[tokio::test]
    async fn a_fault_command_sees_the_leader_and_its_failure_says_why() {
        run("test \"$PGHA_LEADER\" = n2", "n2").await.unwrap();
        match run("echo nope >&2; exit 3", "n2").await {
            Err(CommandError::Failed { status, stderr, .. }) => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr, "nope");
            }
            other => panic!("{other:?}"),
        }
    }
}
