//! How a campaign injects each fault, one at a time (a signal to a postmaster, or a request
//! to the cluster's API), and which of the faults asked for can be injected on a cluster.

use pgha_core::{ClusterConfig, RequestKind};
use std::time::Duration;

use pgha_host::api::control::{ConfigChange, FreezeRequest, MemberChanged, StopRequest};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::config_change::ConfigChanges;
use crate::error::ChaosError;
pub use crate::fault_command::FaultCommand;
pub use crate::fault_kind::FaultKind;
use crate::health::Healthy;
use crate::inject_error::{InjectError, ProcessError};
use crate::isolate::{Isolated, Loss};
use crate::target::{Mode, Target};

/// The share of packets `lossy-host` drops, each way.
const LOSSY_SHARE: f64 = 0.3;

/// A fault as it was injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub kind: FaultKind,
    /// The member it hit (the old primary for a switchover or failover).
    pub victim: String,
    /// The member asked to take over (switchover, failover).
    pub promoted: Option<String>,
    /// What changed (change-config: the `KEY=VALUE` assignments).
    pub detail: Option<String>,
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
            FaultKind::IsolateHost | FaultKind::LossyHost => {
                target.mode == Mode::Distributed && here && !target.peers.is_empty()
            }
            FaultKind::Command(name) => target.fault_commands.iter().any(|c| c.name == *name),
            k => !k.kills() || here,
        })
        .collect()
}

/// Injects `kind` on the cluster in shape `now`, choosing its victim with `rng`; a paused
/// agent is continued after `agent_pause`; a config change is recorded in `changes`.
pub async fn inject(
    kind: FaultKind,
    target: &Target,
    now: &Healthy,
    rng: &mut impl Rng,
    agent_pause: Duration,
    changes: &mut ConfigChanges,
) -> Result<Injected, ChaosError> {
    let fail = |why: InjectError| ChaosError::Inject {
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
        detail: None,
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
                .ok_or_else(|| fail(InjectError::NoLocalStandby))?)
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
                .ok_or_else(|| fail(InjectError::NoPromotableStandby))?)
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
                .ok_or_else(|| fail(InjectError::NoStandby))?
                .clone();
            stop(target, &victim, false).await?;
            start(target, &victim).await?;
            injected.victim = victim;
        }
        FaultKind::PauseAgent => {
            let victim =
                pause_victim(target, now, rng).ok_or_else(|| fail(InjectError::NoMemberToPause))?;
            pause_agent(target, &victim, agent_pause).await?;
            injected.expect_standby = victim == leader;
            injected.victim = victim;
        }
        FaultKind::IsolateHost | FaultKind::LossyHost => {
            let here = target
                .members
                .iter()
                .find(|m| m.data_dir.is_some())
                .ok_or_else(|| fail(InjectError::NoLocalMember))?;
            let (loss, length) = match kind {
                FaultKind::IsolateHost => (Loss::All, agent_pause),
                _ => (Loss::Share(LOSSY_SHARE), agent_pause * 2),
            };
            let cut = Isolated::cut(&target.peers, loss).map_err(|e| fail(e.into()))?;
            tokio::time::sleep(length).await;
            drop(cut);
            // A leader cut off from etcd and every other member cannot keep its lease; over a
            // lossy link it may.
            injected.expect_standby = kind == FaultKind::IsolateHost && here.name == leader;
            injected.victim = here.name.clone();
        }
        FaultKind::ChangeConfig => {
            let assignments = changes
                .next(rng, now.standbys.len())
                .ok_or_else(|| fail(InjectError::NothingToChange))?;
            let answer: ClusterConfig = target
                .client
                .post(
                    "/config",
                    &ConfigChange {
                        assignments: assignments.clone(),
                    },
                )
                .await?;
            changes.applied(answer);
            injected.detail = Some(assignments.join(" "));
        }
        FaultKind::Command(name) => {
            let command = target
                .fault_commands
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| fail(InjectError::NoSuchCommand(name.to_string())))?;
            crate::fault_command::run(&command.command, &leader)
                .await
                .map_err(|e| fail(e.into()))?;
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
        let fail = |why: ProcessError| ChaosError::Inject {
            fault: FaultKind::PauseAgent.name().to_string(),
            why: why.into(),
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
fn kill(target: &Target, member: &str) -> Result<(), InjectError> {
    let data_dir = target
        .member(member)
        .and_then(|m| m.data_dir.as_deref())
        .ok_or_else(|| InjectError::NotLocal {
            member: member.to_string(),
        })?;
    let pid =
        crate::process::postmaster_pid(data_dir).ok_or_else(|| InjectError::NoPostmaster {
            member: member.to_string(),
            data_dir: data_dir.to_path_buf(),
        })?;
    crate::process::kill9(pid).map_err(|source| InjectError::Postmaster {
        member: member.to_string(),
        source,
    })
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
