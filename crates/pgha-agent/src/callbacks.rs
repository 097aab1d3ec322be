//! Callbacks a DBA hooks to role changes (move a virtual IP, reconfigure a pooler): scripts
//! run as the PostgreSQL OS user with `ACTION ROLE CLUSTER MEMBER`, bounded by a timeout,
//! their output logged. They inform; they never decide anything.

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

/// Runs `call` in the background: `SCRIPT ACTION ROLE CLUSTER MEMBER` as the PostgreSQL OS
/// user, in `cwd`, killed after `timeout`; its exit status and output go to the log.
pub fn spawn(
    call: Call,
    cluster: String,
    member: String,
    run_as: pgha_pg::RunAs,
    cwd: PathBuf,
    timeout: Duration,
) {
    tokio::spawn(async move {
        let mut cmd = run_as.command(&call.script, &cwd);
        cmd.args([call.action, call.role.as_str(), &cluster, &member])
            .stdin(std::process::Stdio::null());
        let what = format!(
            "{member}: callback {} {}",
            call.action,
            call.script.display()
        );
        match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => tracing::warn!("{what}: killed after {} s", timeout.as_secs()),
            Ok(Err(e)) => tracing::warn!("{what}: could not run: {e}"),
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                let text = text.trim();
                if out.status.success() {
                    tracing::info!("{what}: done {text}");
                } else {
                    tracing::warn!("{what}: {} {text}", out.status);
                }
            }
        }
    });
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
