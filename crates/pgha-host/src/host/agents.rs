//! Starting, stopping and reaching one member's agent on a host: a start waits for a stop of
//! the same member, and an agent asked to stop no longer serves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgha_agent::agent::Shutdown;
use pgha_agent::spec::NodeSpec;
use pgha_agent::{Agent, AgentHandle};
use pgha_core::{ClusterConfig, MemberName};

use super::{Host, HostError, RELOAD_PATIENCE, RESTART_PATIENCE, STOPPING_PATIENCE};
use crate::ops::{self, OpError};

impl Host {
    /// Starts the agent of `name`; `false` when it already runs. An agent of `name` still
    /// stopping is waited for first: two agents of one member would both take its leader key
    /// as their own, and the first one's leaving would release the second's.
    pub async fn start_member(&self, name: &str) -> Result<bool, HostError> {
        let spec = self.spec(name)?;
        if !self.wait_stopped(&spec.name, STOPPING_PATIENCE).await {
            return Err(HostError::StillStopping {
                name: spec.name.clone(),
                after: STOPPING_PATIENCE,
            });
        }
        if self.is_running(&spec.name) {
            return Ok(false);
        }
        let config = self.config_to_start_with(spec).await?;
        let mut agents = self.agents.lock().expect("agents lock");
        if agents.get(&spec.name).is_some_and(|a| !a.is_finished()) {
            return Ok(false);
        }
        let handle = Agent::spawn(spec.clone(), self.store.clone(), config)?;
        agents.insert(spec.name.clone(), handle);
        Ok(true)
    }

    /// The configuration the agent of `spec` starts with: the store's; where the store has
    /// none (etcd lost its data, the key deleted by hand), the one its member kept beside its
    /// data, which it last read. Never the defaults: the agent would put them back into the
    /// store (asynchronous, a 10 s ttl) ahead of the running members' own, with nobody told.
    pub(crate) async fn config_to_start_with(
        &self,
        spec: &NodeSpec,
    ) -> Result<ClusterConfig, HostError> {
        let snapshot = self.store.snapshot().await.map_err(OpError::from)?;
        if pgha_store::stored_config(&snapshot)
            .map_err(OpError::from)?
            .is_some()
        {
            return Ok(ops::view_of(&snapshot)?.config);
        }
        let instead = "the agent does not start while the store holds no configuration";
        crate::kept_config::kept_cluster_config(spec.name.as_str(), &spec.instance, instead)
            .ok_or_else(|| HostError::NoConfiguration {
                name: spec.name.clone(),
            })
    }

    /// Stops the agent of `name` as `how` says; `false` when it was not running. The agent
    /// stays this host's until its loop has ended (see [`Host::start_member`]).
    pub async fn stop_member(&self, name: &str, how: Shutdown) -> Result<bool, HostError> {
        let spec = self.spec(name)?;
        let asked = {
            let agents = self.agents.lock().expect("agents lock");
            let running = agents.get(&spec.name).filter(|a| !a.is_finished());
            running.inspect(|agent| agent.ask_to_stop(how)).is_some()
        };
        if asked {
            // as long as the agent takes (a start gives up after STOPPING_PATIENCE)
            while !self.wait_stopped(&spec.name, STOPPING_PATIENCE).await {}
        }
        let mut agents = self.agents.lock().expect("agents lock");
        if agents.get(&spec.name).is_some_and(AgentHandle::is_finished) {
            agents.remove(&spec.name);
        }
        Ok(asked)
    }

    /// Waits up to `patience` until no agent of `name` is stopping; whether none is.
    async fn wait_stopped(&self, name: &MemberName, patience: Duration) -> bool {
        let stopping = || {
            let agents = self.agents.lock().expect("agents lock");
            agents.get(name).is_some_and(AgentHandle::is_leaving)
        };
        let deadline = Instant::now() + patience;
        while stopping() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The agent of `name` if it runs and was not asked to stop.
    pub(super) fn serving<'a>(
        agents: &'a BTreeMap<MemberName, AgentHandle>,
        name: &MemberName,
    ) -> Option<&'a AgentHandle> {
        agents
            .get(name)
            .filter(|a| !a.is_finished() && !a.is_leaving())
    }

    /// Freezes the agent of `name` for `length` (see [`pgha_agent::agent::AgentHandle::freeze`]).
    pub fn freeze_agent(&self, name: &str, length: Duration) -> Result<(), HostError> {
        let spec = self.spec(name)?;
        let agents = self.agents.lock().expect("agents lock");
        match Self::serving(&agents, &spec.name) {
            Some(agent) => {
                agent.freeze(length);
                Ok(())
            }
            None => Err(HostError::AgentNotRunning {
                name: spec.name.clone(),
            }),
        }
    }

    /// The running agent of `name`, through `f` (e.g. one of its request senders).
    fn with_agent<T>(&self, name: &str, f: impl FnOnce(&AgentHandle) -> T) -> Result<T, HostError> {
        let spec = self.spec(name)?;
        let agents = self.agents.lock().expect("agents lock");
        match Self::serving(&agents, &spec.name) {
            Some(agent) => Ok(f(agent)),
            None => Err(HostError::AgentNotRunning {
                name: spec.name.clone(),
            }),
        }
    }

    /// Has the agent of `name` restart its PostgreSQL in place (a leader keeps its lease) and
    /// waits until it runs again.
    pub async fn restart_member(&self, name: &str) -> Result<(), HostError> {
        let restarter = self.with_agent(name, AgentHandle::restarter)?;
        match tokio::time::timeout(RESTART_PATIENCE, restarter.restart()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(HostError::RestartUnanswered {
                name: restarter.member().clone(),
                after: RESTART_PATIENCE,
            }),
        }
    }

    /// Has the agent of `name` render its PostgreSQL configuration and reload it now.
    pub async fn reload_member(&self, name: &str) -> Result<(), HostError> {
        let spec = self.spec(name)?;
        let reloader = self.with_agent(name, AgentHandle::reloader)?;
        match tokio::time::timeout(RELOAD_PATIENCE, reloader.reload()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(HostError::ReloadUnanswered {
                name: spec.name.clone(),
                after: RELOAD_PATIENCE,
            }),
        }
    }

    pub(crate) fn is_running(&self, name: &MemberName) -> bool {
        let agents = self.agents.lock().expect("agents lock");
        agents.get(name).is_some_and(|a| !a.is_finished())
    }
}
