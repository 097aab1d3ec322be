//! Distributed-mode harness: a real etcd (stoppable with SIGTERM and restartable on the same
//! data directory and ports), severable TCP links in front of it, and `pgha agent` processes
//! with their own config files, all on free loopback ports below 32768; every process is
//! cleaned up by pid on drop, also while a test panics (agent logs are printed then).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::{free_ports, poll, postmaster_pid, reap, signal, stop_child, stop_postmaster};
#[allow(unused_imports)] // for the test files that include this one
pub use pgha_testkit::{http, wait_until};
use pgha_testkit::{succeeded, traversable_tempdir, EtcdNode, EtcdServer, RunLog, TcpLink};
use serde_json::Value;

/// ttl, safety margin and loop wait of the test clusters (see [`node_config`]).
pub const TTL: Duration = Duration::from_millis(3000);
pub const SAFETY_MARGIN: Duration = Duration::from_millis(1000);
pub const LOOP_WAIT: Duration = Duration::from_millis(500);

pub const SUPERUSER_PASSWORD: &str = "su-secret-4711";
pub const API_TOKEN: &str = "test-token-0815-4711-0042";

/// Writes the test clusters' secrets file (0600) into `root`; its path.
pub fn write_secrets(root: &Path) -> PathBuf {
    let secrets = root.join("secrets.toml");
    std::fs::write(
        &secrets,
        format!(
            "superuser_password = \"{SUPERUSER_PASSWORD}\"\nreplication_password = \"repl-secret-42\"\napi_token = \"{API_TOKEN}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    secrets
}

/// libpq key/value connection string for the superuser on `host:port`.
pub fn conninfo(host: &str, port: u16) -> String {
    format!(
        "host={host} port={port} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres connect_timeout=1"
    )
}

// ---------------------------------------------------------------------------------------------
// What a test asks the agents over their REST APIs

/// One member's agent, as a test reaches it over its REST API.
pub trait AgentApi {
    fn name(&self) -> &str;

    /// `host:port` of the REST API.
    fn api_addr(&self) -> String;

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", &self.api_addr(), path, None, None)
    }

    fn is_primary(&self) -> bool {
        matches!(self.get("/primary"), Some((200, _)))
    }

    fn is_streaming_replica(&self) -> bool {
        matches!(self.get("/replica"), Some((200, _)))
    }
}

/// A cluster's agents, polled over their REST APIs.
pub trait AgentSet {
    type Agent: AgentApi;

    /// How often the waits below ask.
    const POLL: Duration = Duration::from_millis(100);

    fn rest_agents(&self) -> &[Self::Agent];

    /// The agents' log tails, for the failure messages of the waits below.
    fn failure_logs(&self) -> String;

    /// The members whose `/primary` answers 200.
    fn primaries(&self) -> Vec<String> {
        self.rest_agents()
            .iter()
            .filter(|a| a.is_primary())
            .map(|a| a.name().to_string())
            .collect()
    }

    /// Waits until exactly one member is primary and all the others stream; returns the leader.
    fn wait_converged(&self, timeout: Duration) -> String {
        let converged = poll(timeout, Self::POLL, || {
            let primaries = self.primaries();
            let [leader] = primaries.as_slice() else {
                return None;
            };
            let others_stream = self
                .rest_agents()
                .iter()
                .filter(|a| a.name() != leader)
                .all(|a| a.is_streaming_replica());
            others_stream.then(|| leader.clone())
        });
        converged.unwrap_or_else(|| {
            panic!(
                "cluster did not converge within {timeout:?} (primaries {:?}); /cluster: {}\n{}",
                self.primaries(),
                self.cluster_json()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                self.failure_logs()
            )
        })
    }

    /// `/cluster` from the first agent that answers.
    fn cluster_json(&self) -> Option<Value> {
        self.rest_agents()
            .iter()
            .find_map(|a| match a.get("/cluster") {
                Some((200, body)) => serde_json::from_str(&body).ok(),
                _ => None,
            })
    }

    fn history(&self) -> Vec<Value> {
        self.cluster_json()
            .and_then(|c| c["history"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits for the bootstrap's history entry (`/primary` answers 200 while the bootstrap job
    /// is still finishing; the entry is written when it is done).
    fn wait_bootstrapped(&self, timeout: Duration) {
        wait_until("the bootstrap history entry", timeout, || {
            self.history()
                .iter()
                .any(|e| e["kind"] == "bootstrap")
                .then_some(())
        });
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

/// A single-node etcd on fixed (pre-chosen free) ports with its data and log in `dir`,
/// prepared, not started (so a test can start agents before etcd answers).
pub fn etcd(dir: &Path, client_port: u16, peer_port: u16) -> EtcdServer {
    let node = EtcdNode::single(
        "pgha-dist",
        format!("127.0.0.1:{client_port}"),
        format!("127.0.0.1:{peer_port}"),
    );
    EtcdServer::new(node, dir)
}

// ---------------------------------------------------------------------------------------------
// Agents

/// One `pgha agent --config FILE` process and its member.
pub struct Agent {
    pub name: String,
    pub config: PathBuf,
    pub dir: PathBuf,
    pub api: String,
    pub port: u16,
    log: RunLog,
    child: Option<Child>,
}

impl Agent {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgha"));
        cmd.args(["agent", "--config"])
            .arg(&self.config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        self.child = Some(self.log.spawn(&mut cmd).expect("spawn pgha agent"));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status once the agent has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    /// Waits for the agent to exit on its own (e.g. a refusal); `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = poll(timeout, Duration::from_millis(50), || self.exited())?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM (the agent stops PostgreSQL and leaves), SIGKILL after `patience`.
    pub fn terminate(&mut self, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Signal::SIGTERM, patience);
        }
    }

    fn reap(&mut self, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            reap(&mut child, patience);
        }
    }

    /// SIGKILL to the agent alone (its supervisor and PostgreSQL go on).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, Signal::SIGKILL);
        }
        self.reap(Duration::from_secs(5));
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists and the process lives.
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir())
    }

    /// A node crash: SIGKILL to the agent and its postmaster together.
    pub fn crash(&mut self) {
        let pm = self.postmaster_pid();
        if let Some(pid) = self.pid() {
            signal(pid, Signal::SIGKILL);
        }
        if let Some(pm) = pm {
            signal(pm, Signal::SIGKILL);
        }
        self.reap(Duration::from_secs(5));
        // the postmaster's children notice their parent died and exit on their own
    }

    /// Stops whatever postmaster runs on the data directory (SIGQUIT: immediate shutdown).
    pub fn stop_postmaster(&self) {
        stop_postmaster(&self.data_dir());
    }

    /// The agent's log of its current (or last) run.
    pub fn log(&self) -> String {
        self.log.this_run()
    }

    pub fn whole_log(&self) -> String {
        self.log.whole()
    }

    /// libpq key/value connection string for the superuser on this member.
    pub fn conninfo(&self) -> String {
        conninfo("127.0.0.1", self.port)
    }
}

impl AgentApi for Agent {
    fn name(&self) -> &str {
        &self.name
    }

    fn api_addr(&self) -> String {
        self.api.clone()
    }
}

/// Options of a distributed test cluster.
#[derive(Clone)]
pub struct Options {
    pub members: usize,
    /// Put a severable link ([`TcpLink`]) between each agent and etcd.
    pub relays: bool,
    pub cluster: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 3,
            relays: false,
            cluster: "demo".into(),
        }
    }
}

/// etcd, optional relays, and the agents' configs in one temporary directory.
pub struct DistCluster {
    pub agents: Vec<Agent>,
    pub relays: Vec<TcpLink>,
    pub etcd: EtcdServer,
    pub proxy_rw: u16,
    pub proxy_ro: u16,
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DistCluster {
    /// Writes every config file; starts nothing (see [`DistCluster::start`]).
    pub fn prepare(opts: &Options) -> DistCluster {
        let tmp = traversable_tempdir("pgha-dist-");
        let root = tmp.path().to_path_buf();
        let n = opts.members;
        let ports = free_ports(4 + 3 * n);
        let etcd = etcd(&root.join("etcd"), ports[0], ports[1]);
        let secrets = write_secrets(&root);
        let mut relays = Vec::new();
        let mut agents = Vec::new();
        for i in 0..n {
            let name = format!("node{}", i + 1);
            let pg = ports[4 + 3 * i];
            let api = format!("127.0.0.1:{}", ports[5 + 3 * i]);
            let endpoint = if opts.relays {
                let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
                let relay = TcpLink::start(at(ports[6 + 3 * i]), at(etcd.client_port()))
                    .expect("a link to etcd");
                let e = format!("http://{}", relay.addr());
                relays.push(relay);
                e
            } else {
                etcd.endpoint()
            };
            let dir = root.join(&name);
            let config = root.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                node_config(
                    &opts.cluster,
                    &endpoint,
                    &name,
                    &dir,
                    pg,
                    &api,
                    &secrets,
                    ports[2],
                    ports[3],
                ),
            )
            .unwrap();
            agents.push(Agent {
                log: RunLog::new(root.join(format!("{name}.agent.log"))),
                name,
                config,
                dir,
                api,
                port: pg,
                child: None,
            });
        }
        DistCluster {
            agents,
            relays,
            etcd,
            proxy_rw: ports[2],
            proxy_ro: ports[3],
            root,
            _tmp: tmp,
        }
    }

    /// etcd plus every agent; waits until one primary runs, the others stream and the
    /// bootstrap is recorded.
    pub fn start(opts: &Options) -> DistCluster {
        let mut c = Self::prepare(opts);
        c.launch();
        c.wait_converged(Duration::from_secs(60));
        c.wait_bootstrapped(Duration::from_secs(30));
        c
    }

    /// Starts etcd and every agent of a prepared cluster, waiting for nothing.
    pub fn launch(&mut self) {
        self.etcd.start();
        for a in &mut self.agents {
            a.start();
        }
    }

    pub fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|a| a.name == name).unwrap()
    }

    pub fn agent_mut(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|a| a.name == name).unwrap()
    }

    pub fn index(&self, name: &str) -> usize {
        self.agents.iter().position(|a| a.name == name).unwrap()
    }

    /// Runs `pgha ARGS --config <first agent's config>`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_as(&self.agents[0].name, args)
    }

    /// Runs `pgha ARGS --config <the config of member's host>`, as an operator on that host.
    pub fn cli_as(&self, member: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_pgha"))
            .args(args)
            .arg("--config")
            .arg(&self.agent(member).config)
            .env("PGHA_LOG", "warn")
            .output()
            .expect("run pgha")
    }

    /// Every agent's whole log, one after the other.
    pub fn whole_logs(&self) -> String {
        self.agents.iter().map(|a| a.whole_log()).collect()
    }

    /// Like [`DistCluster::cli`], but the command must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        succeeded(&format!("pgha {args:?}"), &self.cli(args))
    }

    /// What `pgha status --json` prints.
    pub fn status_json(&self) -> Value {
        serde_json::from_str(&self.cli_ok(&["status", "--json"])).expect("status JSON")
    }

    /// Every agent's log tail, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for a in &self.agents {
            out.push_str(&format!(
                "----- {} (agent log, last {lines} lines)\n",
                a.name
            ));
            out.push_str(&a.log.tail(lines));
            out.push('\n');
        }
        out
    }
}

impl AgentSet for DistCluster {
    type Agent = Agent;

    fn rest_agents(&self) -> &[Agent] {
        &self.agents
    }

    fn failure_logs(&self) -> String {
        self.logs(40)
    }
}

impl Drop for DistCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(60));
        }
        // SIGTERM every agent at once, then SIGKILL what is left after 10 s.
        for a in &self.agents {
            if let Some(pid) = a.pid() {
                signal(pid, Signal::SIGTERM);
            }
        }
        for a in &mut self.agents {
            a.reap(Duration::from_secs(10));
        }
        for a in &self.agents {
            a.stop_postmaster();
        }
        self.relays.clear();
        // etcd is killed by its own drop
    }
}

#[allow(clippy::too_many_arguments)]
pub fn node_config(
    cluster: &str,
    endpoint: &str,
    name: &str,
    dir: &Path,
    port: u16,
    api: &str,
    secrets: &Path,
    rw: u16,
    ro: u16,
) -> String {
    format!(
        r#"insecure_no_tls = true
[cluster]
name = "{cluster}"
[etcd]
endpoints = ["{endpoint}"]
[member]
name = "{name}"
dir = "{dir}"
host = "127.0.0.1"
port = {port}
api = "{api}"
[secrets]
file = "{secrets}"
[postgresql.parameters]
fsync = "off"
shared_buffers = "16MB"
max_connections = 30
[proxy]
rw_listen = "127.0.0.1:{rw}"
ro_listen = "127.0.0.1:{ro}"
[dynamic]
ttl_ms = {ttl}
safety_margin_ms = {margin}
loop_wait_ms = {loop_wait}
"#,
        dir = dir.display(),
        secrets = secrets.display(),
        ttl = TTL.as_millis(),
        margin = SAFETY_MARGIN.as_millis(),
        loop_wait = LOOP_WAIT.as_millis(),
    )
}
