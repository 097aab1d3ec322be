//! Callbacks a DBA hooks to role changes (move a virtual IP, reconfigure a pooler): scripts
//! run as the PostgreSQL OS user with `ACTION ROLE CLUSTER MEMBER`, bounded by a timeout,
//! their output logged. They inform, except `pre_promote`, which can veto a promotion.

use std::path::PathBuf;
use std::time::Duration;

use pgha_core::LocalPg;
use serde::{Deserialize, Serialize};

/// The scripts of `[callbacks]` (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Callbacks {
    /// Run when PostgreSQL starts (ACTION `on_start`).
    pub on_start: Option<PathBuf>,
    /// Run when PostgreSQL stops (ACTION `on_stop`).
    pub on_stop: Option<PathBuf>,
    /// Run when a running PostgreSQL changes role: promoted, or demoted (ACTION
    /// `on_role_change`).
    pub on_role_change: Option<PathBuf>,
    /// Run before this member's PostgreSQL is promoted, with the lease already held (ACTION
    /// `pre_promote`, ROLE `standby`); the promotion waits for it. Exit status 0 lets the
    /// promotion go on; any other status, or running past the timeout, vetoes it: the member
    /// lets go of the lease and the next candidate is picked without it.
    pub pre_promote: Option<PathBuf>,
    /// How long a script may run before it is killed, in seconds (default 30).
    pub timeout_s: Option<u64>,
}

/// A callback script not named by an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} must be an absolute path", .path.display())]
pub struct BadCallback {
    pub key: &'static str,
    pub path: PathBuf,
}

/// What PostgreSQL was doing, as a callback names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// One callback to run: which script and with which ACTION and ROLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub script: PathBuf,
    pub action: &'static str,
    pub role: Role,
}

/// What PostgreSQL is now, for callbacks: `None` when it does not run (or does not answer).
pub fn running_role(local: &LocalPg) -> Option<Role> {
    (local.running && !local.unresponsive).then_some(if local.in_recovery {
        Role::Standby
    } else {
        Role::Primary
    })
}

impl Callbacks {
    /// The callbacks due for PostgreSQL going from `before` to `now`, `last_role` being the
    /// role it last ran with (a demotion stops PostgreSQL and starts it as a standby: that is
    /// a stop, a start and a role change).
    pub fn due(
        &self,
        before: Option<Role>,
        now: Option<Role>,
        last_role: Option<Role>,
    ) -> Vec<Call> {
        let mut due = Vec::new();
        let mut push = |script: &Option<PathBuf>, action: &'static str, role: Role| {
            if let Some(script) = script {
                due.push(Call {
                    script: script.clone(),
                    action,
                    role,
                });
            }
        };
        match (before, now) {
            (None, Some(role)) => push(&self.on_start, "on_start", role),
            (Some(role), None) => push(&self.on_stop, "on_stop", role),
            _ => {}
        }
        if let (Some(was), Some(role)) = (last_role, now) {
            if was != role {
                push(&self.on_role_change, "on_role_change", role);
            }
        }
        due
    }

    /// Each script is named by an absolute path (the agent runs it from the member
    /// directory); answers the key that is not.
    pub fn check(&self) -> Result<(), BadCallback> {
        for (key, script) in [
            ("callbacks.on_start", &self.on_start),
            ("callbacks.on_stop", &self.on_stop),
            ("callbacks.on_role_change", &self.on_role_change),
            ("callbacks.pre_promote", &self.pre_promote),
        ] {
            if let Some(path) = script.as_ref().filter(|p| !p.is_absolute()) {
                return Err(BadCallback {
                    key,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s.unwrap_or(30))
    }
}

/// Where a callback runs: as whom, from which directory, for which member of which cluster,
/// for how long at most.
#[derive(Debug, Clone)]
pub struct Runner {
    pub cluster: String,
    pub member: String,
    pub run_as: pgha_pg::RunAs,
    pub cwd: PathBuf,
    pub timeout: Duration,
}

/// How a callback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit status 0.
    Succeeded { output: String },
    /// Another exit status (or a signal).
    Failed { status: String, output: String },
    /// Still running at the timeout: killed.
    TimedOut,
    /// It could not be started (missing, not executable).
    NotRun { error: String },
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Succeeded { output } => write!(f, "done {output}"),
            Ended::Failed { status, output } => write!(f, "{status} {output}"),
            Ended::TimedOut => write!(f, "killed at the timeout"),
            Ended::NotRun { error } => write!(f, "could not run: {error}"),
        }
    }
}

impl Runner {
    /// Runs `call` (`SCRIPT ACTION ROLE CLUSTER MEMBER`) to its end, or kills it at the
    /// timeout; logs and answers how it ended.
    pub async fn run(&self, call: &Call) -> Ended {
        let mut cmd = self.run_as.command(&call.script, &self.cwd);
        cmd.args([call.action, call.role.as_str(), &self.cluster, &self.member])
            .stdin(std::process::Stdio::null());
        let ended = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => Ended::TimedOut,
            Ok(Err(e)) => Ended::NotRun {
                error: e.to_string(),
            },
            Ok(Ok(out)) => {
                let output = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                let output = output.trim().to_string();
                if out.status.success() {
                    Ended::Succeeded { output }
                } else {
                    Ended::Failed {
                        status: out.status.to_string(),
                        output,
                    }
                }
            }
        };
        let what = format!(
            "{}: callback {} {}",
            self.member,
            call.action,
            call.script.display()
        );
        match &ended {
            Ended::Succeeded { .. } => tracing::info!("{what}: {ended}"),
            _ => tracing::warn!("{what}: {ended}"),
        }
        ended
    }

    /// Runs `call` in the background (the callbacks that only inform).
    pub fn spawn(&self, call: Call) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(&call).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_has_its_callback_and_no_change_has_none() {
        let all = Callbacks {
            on_start: Some("/s".into()),
            on_stop: Some("/t".into()),
            on_role_change: Some("/r".into()),
            pre_promote: Some("/p".into()),
            timeout_s: None,
        };
        let due = |a, b, last| -> Vec<(&str, Role)> {
            all.due(a, b, last)
                .into_iter()
                .map(|c| (c.action, c.role))
                .collect()
        };
        use Role::{Primary, Standby};
        assert_eq!(due(None, Some(Standby), None), [("on_start", Standby)]);
        assert_eq!(
            due(Some(Primary), None, Some(Primary)),
            [("on_stop", Primary)]
        );
        assert_eq!(
            due(Some(Standby), Some(Primary), Some(Standby)),
            [("on_role_change", Primary)]
        );
        // A demotion: stopped as a primary, started as a standby.
        assert_eq!(
            due(None, Some(Standby), Some(Primary)),
            [("on_start", Standby), ("on_role_change", Standby)]
        );
        assert!(due(Some(Primary), Some(Primary), Some(Primary)).is_empty());
        assert!(due(None, None, Some(Primary)).is_empty());
        assert!(Callbacks::default()
            .due(None, Some(Role::Primary), None)
            .is_empty());
    }
}
