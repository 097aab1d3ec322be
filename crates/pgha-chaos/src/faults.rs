//! The faults a campaign injects, one at a time: which exist, how a list of them is parsed,
//! and how each is done (a signal to a postmaster, or a request to the cluster's API).

use pgha_core::RequestKind;
use std::time::Duration;

use pgha_host::api::control::{FreezeRequest, MemberChanged, StopRequest};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::error::ChaosError;
pub use crate::fault_command::FaultCommand;
use crate::health::Healthy;
use crate::target::{Mode, Target};

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
    /// The primary member stopped as by a crash of its host: its agent leaves and PostgreSQL
    /// stops immediately (no shutdown checkpoint, no WAL flushed to the standbys); started
    /// again once another member takes writes.
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
    /// A shell command of the user's, named with `--fault-command NAME=CMD` (e.g. a restart
    /// of etcd, or a kill of an agent that systemd restarts), run to its end; the leader of
    /// that moment may stay.
    Command(&'static str),
}

impl FaultKind {
    /// Every built-in fault.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillPrimary,
        FaultKind::KillStandby,
        FaultKind::StopPrimary,
        FaultKind::CrashPrimary,
        FaultKind::Switchover,
        FaultKind::Failover,
        FaultKind::RestartStandby,
        FaultKind::PauseAgent,
        FaultKind::IsolateHost,
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

/// A fault as it was injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub kind: FaultKind,
    /// The member it hit (the old primary for a switchover or failover).
    pub victim: String,
    /// The member asked to take over (switchover, failover).
    pub promoted: Option<String>,
    /// A stopped member to start again once another member takes writes.
    #[serde(skip)]
    pub start_later: Option<String>,
    /// The member it hit must come back as a standby (it led, and the fault takes the lease
    /// from it), not as the leader it was.
    #[serde(skip)]
    pub expect_standby: bool,
}

/// Which of `kinds` can be injected on `target` (kills need local data directories, an
/// isolation other hosts, the command fault a command).
pub fn usable(kinds: &[FaultKind], target: &Target) -> Vec<FaultKind> {
    let here = target.members.iter().any(|m| m.data_dir.is_some());
    kinds
        .iter()
        .copied()
        .filter(|k| match k {
            FaultKind::IsolateHost => {
                target.mode == Mode::Distributed && here && !target.peers.is_empty()
            }
            FaultKind::Command(name) => target.fault_commands.iter().any(|c| c.name == *name),
            k => !k.kills() || here,
        })
        .collect()
}

/// Injects `kind` on the cluster in shape `now`, choosing its victim with `rng`; a paused
/// agent is continued after `agent_pause`.
pub async fn inject(
    kind: FaultKind,
    target: &Target,
    now: &Healthy,
    rng: &mut impl Rng,
    agent_pause: Duration,
) -> Result<Injected, ChaosError> {
    let fail = |why: String| ChaosError::Inject {
        fault: kind.name().to_string(),
        why,
    };
    let leader = now.leader.clone();
    let local_standbys: Vec<&String> = now
        .standbys
        .iter()
        .filter(|s| target.member(s).is_some_and(|m| m.data_dir.is_some()))
        .collect();
    let mut injected = Injected {
        kind,
        victim: leader.clone(),
        promoted: None,
        start_later: None,
        // A stopped or crashed primary may come back as the leader when nobody took over (the
        // campaign starts it again); a switchover or failover must move the lease.
        expect_standby: matches!(kind, FaultKind::Switchover | FaultKind::Failover),
    };
    match kind {
        FaultKind::KillPrimary => kill(target, &leader).map_err(fail)?,
        FaultKind::KillStandby => {
            let victim = (*local_standbys
                .choose(rng)
                .ok_or_else(|| fail("no standby runs on this machine".into()))?)
            .clone();
            kill(target, &victim).map_err(fail)?;
            injected.victim = victim;
        }
        FaultKind::StopPrimary | FaultKind::CrashPrimary => {
            stop(target, &leader, kind == FaultKind::CrashPrimary).await?;
            injected.start_later = Some(leader);
        }
        FaultKind::Switchover | FaultKind::Failover => {
            // In a synchronous mode only the published set may be promoted by a failover.
            let candidates: Vec<&String> = match (kind, now.sync_set.is_empty()) {
                (FaultKind::Failover, false) => now
                    .standbys
                    .iter()
                    .filter(|s| now.sync_set.contains(s))
                    .collect(),
                _ => now.standbys.iter().collect(),
            };
            let to = (*candidates
                .choose(rng)
                .ok_or_else(|| fail("no standby may be promoted".into()))?)
            .clone();
            let request = match kind {
                FaultKind::Switchover => RequestKind::Switchover,
                _ => RequestKind::Failover {
                    force: false,
                    allow_data_loss: false,
                },
            };
            let target_name = target
                .client
                .request_promotion(Some(to.clone()), request)
                .await?;
            injected.promoted = Some(target_name);
        }
        FaultKind::RestartStandby => {
            let victim = now
                .standbys
                .choose(rng)
                .ok_or_else(|| fail("no standby".into()))?
                .clone();
            stop(target, &victim, false).await?;
            start(target, &victim).await?;
            injected.victim = victim;
        }
        FaultKind::PauseAgent => {
            let victim =
                pause_victim(target, now, rng).ok_or_else(|| fail("no member to pause".into()))?;
            pause_agent(target, &victim, agent_pause).await?;
            injected.expect_standby = victim == leader;
            injected.victim = victim;
        }
        FaultKind::IsolateHost => {
            let here = target
                .members
                .iter()
                .find(|m| m.data_dir.is_some())
                .ok_or_else(|| fail("no member runs on this machine".into()))?;
            let cut =
                crate::isolate::Isolated::cut(&target.peers).map_err(|e| fail(e.to_string()))?;
            tokio::time::sleep(agent_pause).await;
            drop(cut);
            // A leader cut off from etcd and every other member cannot keep its lease.
            injected.expect_standby = here.name == leader;
            injected.victim = here.name.clone();
        }
        FaultKind::Command(name) => {
            let command = target
                .fault_commands
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| fail(format!("no --fault-command names {name}")))?;
            crate::fault_command::run(&command.command, &leader)
                .await
                .map_err(fail)?;
        }
    }
    Ok(injected)
}

/// Whose agent a pause hits: in distributed mode the member of this host (its process can
/// be stopped), else any member.
fn pause_victim(target: &Target, now: &Healthy, rng: &mut impl Rng) -> Option<String> {
    if target.mode == Mode::Distributed {
        if let Some(here) = target.members.iter().find(|m| m.data_dir.is_some()) {
            return Some(here.name.clone());
        }
    }
    let mut all: Vec<&String> = now.standbys.iter().collect();
    all.push(&now.leader);
    all.choose(rng).map(|name| (*name).clone())
}

/// Makes `member`'s agent stand still for `length`: SIGSTOP of this host's `pgha agent`
/// process in distributed mode; else a freeze of its loop through the API of its host.
async fn pause_agent(target: &Target, member: &str, length: Duration) -> Result<(), ChaosError> {
    let here = target.member(member).and_then(|m| m.data_dir.as_deref());
    if let (Mode::Distributed, Some(dir)) = (target.mode, here) {
        let fail = |why: String| ChaosError::Inject {
            fault: FaultKind::PauseAgent.name().to_string(),
            why,
        };
        let pid = crate::process::agent_pid(dir).map_err(fail)?;
        let stopped = crate::process::Stopped::stop(pid).map_err(fail)?;
        tokio::time::sleep(length).await;
        drop(stopped);
        return Ok(());
    }
    let _: MemberChanged = target
        .api_of(member)
        .post(
            &format!("/members/{member}/agent/freeze"),
            &FreezeRequest {
                for_ms: length.as_millis() as u64,
            },
        )
        .await?;
    tokio::time::sleep(length).await;
    Ok(())
}

/// SIGKILL to `member`'s postmaster, named by its `postmaster.pid`.
fn kill(target: &Target, member: &str) -> Result<(), String> {
    let dir = target
        .member(member)
        .and_then(|m| m.data_dir.as_deref())
        .ok_or_else(|| format!("{member}'s data directory is not on this machine"))?;
    let pid = crate::process::postmaster_pid(dir).ok_or_else(|| {
        format!(
            "{member} has no running postmaster ({}/postmaster.pid)",
            dir.display()
        )
    })?;
    crate::process::kill9(pid).map_err(|e| format!("{member}'s postmaster: {e}"))
}

/// Stops `member` through the API of the host that runs it: cleanly, or `immediate`ly (like
/// a crash).
pub async fn stop(target: &Target, member: &str, immediate: bool) -> Result<bool, ChaosError> {
    let answer: MemberChanged = target
        .api_of(member)
        .post(
            &format!("/members/{member}/stop"),
            &StopRequest { immediate },
        )
        .await?;
    Ok(answer.changed)
}

/// Starts `member` again through the API of the host that runs it.
pub async fn start(target: &Target, member: &str) -> Result<bool, ChaosError> {
    let answer: MemberChanged = target
        .api_of(member)
        .post(&format!("/members/{member}/start"), &())
        .await?;
    Ok(answer.changed)
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
