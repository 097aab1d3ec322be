//! An agent's handle: its loop started as a task, and the channels that stop, freeze, reload
//! and restart it.

use std::sync::Arc;
use std::time::Duration;

use pgha_core::MemberName;
use pgha_store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::reload::Reloader;
use super::restart::Restarter;
use super::{Agent, AgentReport, Request};
use crate::failsafe::Failsafe;
use crate::spec::NodeSpec;

/// How an agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop PostgreSQL (in this mode), give up the leader key and the member key: the member
    /// leaves, and the others fail over at once if it led.
    Leave(pgha_pg::StopMode),
    /// Stop only the loop; PostgreSQL keeps running as it is.
    Detach,
}

/// A running agent task.
pub struct AgentHandle {
    pub name: MemberName,
    stop: watch::Sender<Option<Shutdown>>,
    /// Until when the loop is frozen (a fault injected by `pgha chaos`).
    freeze: watch::Sender<Option<tokio::time::Instant>>,
    join: JoinHandle<()>,
    /// Reload and restart requests to the loop (see [`AgentHandle::reloader`]).
    requests: mpsc::UnboundedSender<Request>,
    pub report: watch::Receiver<AgentReport>,
    /// Shared with the REST API's POST /failsafe handler (distributed mode).
    pub failsafe: Failsafe,
}

impl AgentHandle {
    /// Asks the agent to stop; its loop ends once it has (see [`AgentHandle::is_leaving`]).
    pub fn ask_to_stop(&self, how: Shutdown) {
        self.stop.send_replace(Some(how));
    }

    /// Asked to stop, and still stopping (PostgreSQL, the keys it gives up).
    pub fn is_leaving(&self) -> bool {
        self.stop.borrow().is_some() && !self.is_finished()
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// What asks this agent to render and reload its PostgreSQL configuration between two
    /// steps (held without the handle, so the caller may wait for the answer).
    pub fn reloader(&self) -> Reloader {
        Reloader(self.requests())
    }

    /// What asks this agent to restart its PostgreSQL in place (`pgha restart --in-place`).
    pub fn restarter(&self) -> Restarter {
        Restarter(self.requests())
    }

    fn requests(&self) -> Requests {
        Requests {
            member: self.name.clone(),
            sender: self.requests.clone(),
        }
    }

    /// Freezes the loop for `length`, as if its process were stopped (SIGSTOP): no
    /// observation, no lease renewal, no decision; PostgreSQL runs on under its supervisor,
    /// which fences a leader whose lease deadline passes. Jobs already running go on. A
    /// shutdown still ends it. `pgha chaos` injects it where agents share a process.
    pub fn freeze(&self, length: Duration) {
        tracing::warn!(
            "{}: agent frozen for {} ms (an injected fault)",
            self.name,
            length.as_millis()
        );
        let _ = self.freeze.send(Some(tokio::time::Instant::now() + length));
    }
}

/// The answer channel of one request: done, or why not (`E`).
pub(crate) type Reply<E> = oneshot::Sender<Result<(), E>>;

/// The way into one agent's loop from outside, for the requests it answers between two steps
/// (a reload, a restart in place).
#[derive(Clone)]
pub(crate) struct Requests {
    pub(crate) member: MemberName,
    sender: mpsc::UnboundedSender<Request>,
}

impl Requests {
    /// Sends the request `make` builds around its answer channel and waits for the answer;
    /// `gone` is the refusal when the agent stopped before it answered.
    pub(crate) async fn ask<E>(
        &self,
        make: impl FnOnce(Reply<E>) -> Request,
        gone: impl Fn(MemberName) -> E,
    ) -> Result<(), E> {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(make(reply)).is_err() {
            return Err(gone(self.member.clone()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(gone(self.member.clone())))
    }
}

impl Agent {
    /// Starts the agent loop as a task; not when what its member remembers of its cluster
    /// cannot be read.
    pub fn spawn(
        spec: NodeSpec,
        store: Arc<dyn Store>,
        config: pgha_core::ClusterConfig,
    ) -> Result<AgentHandle, super::MemoryUnreadable> {
        let (agent, report) = Agent::new(spec, store, config)?;
        let (stop, stop_rx) = watch::channel(None);
        let (freeze, freeze_rx) = watch::channel(None);
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let name = agent.spec.name.clone();
        let failsafe = agent.failsafe.clone();
        let join = tokio::spawn(agent.run(stop_rx, freeze_rx, requests_rx));
        Ok(AgentHandle {
            name,
            stop,
            freeze,
            join,
            requests,
            report,
            failsafe,
        })
    }
}
