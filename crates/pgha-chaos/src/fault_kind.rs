//! The kinds of fault a campaign may inject: their names, and how a `--faults` list of them
//! is parsed.

use serde::Serialize;

use crate::error::ChaosError;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL of the primary's postmaster.
    KillPrimary,
    /// SIGKILL of a standby's postmaster.
    KillStandby,
    /// Clean stop of the primary member (`/members/NAME/stop`), started again once another
    /// member takes writes.
    StopPrimary,
    /// The primary member stopped at once (`/members/NAME/stop`, immediate): PostgreSQL quits
    /// as in a crash (no shutdown checkpoint, no WAL flushed to the standbys) and its agent
    /// leaves, handing the leader key over; started again once another member takes writes.
    CrashPrimary,
    /// Planned switchover to a streaming standby.
    Switchover,
    /// Manual failover to a streaming standby (one of the synchronous set in synchronous modes).
    Failover,
    /// A standby member stopped and started again.
    RestartStandby,
    /// A member's agent stood still for twice the lease ttl, then continued; PostgreSQL runs
    /// on under its supervisor, which fences a leader whose lease passed. This host's
    /// `pgha agent` gets SIGSTOP; where agents share a process (`pgha up`), or run on other
    /// hosts, the host's API freezes the member's agent loop instead.
    PauseAgent,
    /// This host cut off from the other hosts and etcd (iptables, both ways) for
    /// --agent-pause, then reconnected (distributed mode, as root).
    IsolateHost,
    /// This host's links to the other hosts and etcd lose 30 % of their packets, each way
    /// (iptables, random drops) for twice --agent-pause, then are clean again (distributed
    /// mode, as root). TCP gets through, late: the leader may keep its lease or lose it.
    LossyHost,
    /// A live change of the dynamic settings, as `pgha config set` makes it: the lease ttl
    /// raised or lowered, the synchronous method, count or commit level, a PostgreSQL
    /// parameter; the next one undoes it, and the campaign puts back what it found.
    ChangeConfig,
    /// A shell command of the user's, named with `--fault-command NAME=CMD` (e.g. a restart
    /// of etcd, or a kill of an agent that systemd restarts), run to its end; the leader of
    /// that moment may stay.
    Command(&'static str),
}

impl FaultKind {
    /// Every built-in fault.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::KillPrimary,
        FaultKind::KillStandby,
        FaultKind::StopPrimary,
        FaultKind::CrashPrimary,
        FaultKind::Switchover,
        FaultKind::Failover,
        FaultKind::RestartStandby,
        FaultKind::PauseAgent,
        FaultKind::IsolateHost,
        FaultKind::LossyHost,
        FaultKind::ChangeConfig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillPrimary => "kill-primary",
            FaultKind::KillStandby => "kill-standby",
            FaultKind::StopPrimary => "stop-primary",
            FaultKind::CrashPrimary => "crash-primary",
            FaultKind::Switchover => "switchover",
            FaultKind::Failover => "failover",
            FaultKind::RestartStandby => "restart-standby",
            FaultKind::PauseAgent => "pause-agent",
            FaultKind::IsolateHost => "isolate-host",
            FaultKind::LossyHost => "lossy-host",
            FaultKind::ChangeConfig => "change-config",
            FaultKind::Command(name) => name,
        }
    }

    /// Whether it signals a local process (needs the member's data directory here).
    pub fn kills(self) -> bool {
        matches!(self, FaultKind::KillPrimary | FaultKind::KillStandby)
    }

    /// Parses `kill-primary,switchover` (or `all`), where `commands` are the names of the
    /// `--fault-command`s (`all` includes them).
    pub fn parse_list(text: &str, commands: &[&'static str]) -> Result<Vec<FaultKind>, ChaosError> {
        let known: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .chain(commands.iter().map(|c| FaultKind::Command(c)))
            .collect();
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "all" {
                out.extend(&known);
                continue;
            }
            match known.iter().find(|k| k.name() == word) {
                Some(k) => out.push(*k),
                None => {
                    let names: Vec<&str> = known.iter().map(|k| k.name()).collect();
                    return Err(ChaosError::Usage(format!(
                        "unknown fault {word:?}; known: all, {}",
                        names.join(", ")
                    )));
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(ChaosError::Usage("--faults names no fault".into()));
        }
        Ok(out)
    }
}

impl Serialize for FaultKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_a_fixed_order_without_repeats() {
        assert_eq!(
            FaultKind::parse_list("switchover, kill-primary,switchover", &[]).unwrap(),
            vec![FaultKind::KillPrimary, FaultKind::Switchover]
        );
        assert_eq!(
            FaultKind::parse_list("all", &[]).unwrap(),
            FaultKind::ALL.to_vec()
        );
        let e = FaultKind::parse_list("kill-everything", &[]).unwrap_err();
        assert!(e.to_string().contains("kill-everything"), "{e}");
        assert!(FaultKind::parse_list(" , ", &[]).is_err());
        let all = FaultKind::parse_list("all", &["etcd-restart"]).unwrap();
        assert_eq!(all.last(), Some(&FaultKind::Command("etcd-restart")));
        assert_eq!(
            FaultKind::parse_list("etcd-restart", &["etcd-restart"]).unwrap(),
            vec![FaultKind::Command("etcd-restart")]
        );
        assert_eq!(
            serde_json::to_string(&FaultKind::Command("etcd-restart")).unwrap(),
            "\"etcd-restart\""
        );
        assert_eq!(
            serde_json::to_string(&FaultKind::IsolateHost).unwrap(),
            "\"isolate-host\""
        );
    }
}
