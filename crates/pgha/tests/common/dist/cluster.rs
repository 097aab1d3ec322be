//! A distributed test cluster: etcd, optional relays, the agents and their config files.

use super::*;

use std::net::SocketAddr;
use std::process::Command;

use nix::sys::signal::Signal;
use pgha_testkit::{free_ports, signal, succeeded, traversable_tempdir, RunLog, TcpLink};

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
