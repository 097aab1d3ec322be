//! Distributed-mode harness: a real etcd (stoppable with SIGTERM and restartable on the same
//! data directory and ports), severable TCP relays in front of it, and `pgha agent` processes
//! with their own config files, all on free loopback ports below 32768; every process is
//! cleaned up by pid on drop, also while a test panics (agent logs are printed then).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub const SUPERUSER_PASSWORD: &str = "su-secret-4711";
pub const API_TOKEN: &str = "test-token-0815-4711-0042";

/// `count` distinct loopback ports below 32768 that are free right now.
pub fn free_ports(count: usize) -> Vec<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut ports: Vec<u16> = Vec::new();
    let mut tries = 0;
    while ports.len() < count {
        tries += 1;
        assert!(tries < 10_000, "no free loopback ports below 32768");
        let p: u16 = rng.gen_range(16_000..32_000);
        if !ports.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok() {
            ports.push(p);
        }
    }
    ports
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Waits until `check` returns Some (polling every 50 ms), or panics after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

/// A single-node etcd on fixed (pre-chosen free) ports with its own data directory.
pub struct Etcd {
    child: Option<Child>,
    pub client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Etcd {
    /// Prepared, not started (so a test can start agents before etcd answers).
    pub fn new(dir: &Path, client_port: u16, peer_port: u16) -> Etcd {
        std::fs::create_dir_all(dir).unwrap();
        Etcd {
            child: None,
            client_port,
            peer_port,
            dir: dir.to_path_buf(),
            log: dir.join("etcd.log"),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd (again, on the same data directory) and waits until it is healthy.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let binary = std::env::var("PGHA_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let child = Command::new(&binary)
            .arg("--name=pgha-dist")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=pgha-dist={peer}"))
            .arg("--initial-cluster-state=new")
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {binary}: {e} (install the Debian package etcd-server, or set PGHA_ETCD_BIN)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited with {status}:\n{}", tail(&self.log, 20));
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within 30 s:\n{}",
                tail(&self.log, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and waits for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }

    pub fn healthy(&self) -> bool {
        matches!(
            http("GET", &format!("127.0.0.1:{}", self.client_port), "/health", None, None),
            Some((200, body)) if body.contains("\"health\":\"true\"")
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A TCP relay the test can sever

/// Forwards `listen` to `upstream`. `sever()` closes every relayed connection and refuses new
/// ones (the listening socket is closed: connects get ECONNREFUSED); `heal()` listens again.
pub struct Relay {
    pub port: u16,
    severed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(port: u16, upstream: u16) -> Relay {
        let severed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let listener = bind_nonblocking(port).expect("bind the relay port");
        let thread = std::thread::spawn({
            let (severed, stop, conns) = (severed.clone(), stop.clone(), conns.clone());
            move || {
                let mut listener = Some(listener);
                while !stop.load(Ordering::SeqCst) {
                    if severed.load(Ordering::SeqCst) {
                        listener = None;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    if listener.is_none() {
                        listener = bind_nonblocking(port).ok();
                    }
                    let Some(l) = listener.as_ref() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    match l.accept() {
                        Ok((client, _)) => relay_one(client, upstream, &severed, &conns),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        Relay {
            port,
            severed,
            stop,
            conns,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts the link: every relayed connection is closed, new ones are refused.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // the accept loop drops the listener within a few milliseconds
        std::thread::sleep(Duration::from_millis(20));
    }

    pub fn heal(&self) {
        self.severed.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.sever();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_nonblocking(port: u16) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn relay_one(
    client: TcpStream,
    upstream: u16,
    severed: &Arc<AtomicBool>,
    conns: &Arc<Mutex<Vec<TcpStream>>>,
) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], upstream)),
        Duration::from_millis(500),
    ) else {
        return; // etcd down: the client sees its connection closed
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut list = conns.lock().unwrap();
        if severed.load(Ordering::SeqCst) {
            return;
        }
        list.push(client.try_clone().unwrap());
        list.push(server.try_clone().unwrap());
    }
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A minimal HTTP/1.1 request: (status, body), or None when nothing answered.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
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
    log: PathBuf,
    log_start: u64,
    child: Option<Child>,
}

impl Agent {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.log_start = log.metadata().unwrap().len();
        let child = Command::new(env!("CARGO_BIN_EXE_pgha"))
            .args(["agent", "--config"])
            .arg(&self.config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn pgha agent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status once the agent has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    /// Waits for the agent to exit on its own (e.g. a refusal); kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (the agent stops PostgreSQL and leaves), SIGKILL after `patience`.
    pub fn terminate(&mut self, patience: Duration) {
        if let Some(pid) = self.pid() {
            signal(pid, Signal::SIGTERM);
        }
        self.reap(patience);
    }

    fn reap(&mut self, patience: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + patience;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists and the process lives.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
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
        if let Some(pid) = self.postmaster_pid() {
            signal(pid, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                signal(pid, Signal::SIGKILL);
            }
        }
    }

    /// The agent's log of its current (or last) run.
    pub fn log(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[(self.log_start as usize).min(all.len())..]).to_string()
    }

    pub fn whole_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", &self.api, path, None, None)
    }

    pub fn is_primary(&self) -> bool {
        matches!(self.get("/primary"), Some((200, _)))
    }

    pub fn is_streaming_replica(&self) -> bool {
        matches!(self.get("/replica"), Some((200, _)))
    }

    /// libpq key/value connection string for the superuser on this member.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres connect_timeout=1",
            self.port
        )
    }
}

/// Options of a distributed test cluster.
#[derive(Clone)]
pub struct Options {
    pub members: usize,
    /// Put a severable relay between each agent and etcd.
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
    pub relays: Vec<Relay>,
    pub etcd: Etcd,
    pub proxy_rw: u16,
    pub proxy_ro: u16,
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DistCluster {
    /// Writes every config file; starts nothing (see [`DistCluster::start_etcd`]).
    pub fn prepare(opts: &Options) -> DistCluster {
        let tmp = tempfile::Builder::new()
            .prefix("pgha-dist-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().to_path_buf();
        let n = opts.members;
        let ports = free_ports(4 + 3 * n);
        let etcd = Etcd::new(&root.join("etcd"), ports[0], ports[1]);
        let secrets = root.join("secrets.toml");
        std::fs::write(
            &secrets,
            format!(
                "superuser_password = \"{SUPERUSER_PASSWORD}\"\nreplication_password = \"repl-secret-42\"\napi_token = \"{API_TOKEN}\"\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut relays = Vec::new();
        let mut agents = Vec::new();
        for i in 0..n {
            let name = format!("node{}", i + 1);
            let pg = ports[4 + 3 * i];
            let api = format!("127.0.0.1:{}", ports[5 + 3 * i]);
            let endpoint = if opts.relays {
                let relay = Relay::start(ports[6 + 3 * i], etcd.client_port);
                let e = relay.endpoint();
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
                log: root.join(format!("{name}.agent.log")),
                name,
                config,
                dir,
                api,
                port: pg,
                log_start: 0,
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

    /// etcd plus every agent; waits until one primary runs and the others stream.
    pub fn start(opts: &Options) -> DistCluster {
        let mut c = Self::prepare(opts);
        c.etcd.start();
        for a in &mut c.agents {
            a.start();
        }
        c.wait_converged(Duration::from_secs(60));
        // `/primary` answers 200 while the bootstrap job is still finishing; the history entry
        // is written when it is done.
        wait_until(
            "the bootstrap history entry",
            Duration::from_secs(30),
            || {
                c.history()
                    .iter()
                    .any(|e| e["kind"] == "bootstrap")
                    .then_some(())
            },
        );
        c
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

    /// The members whose `/primary` answers 200.
    pub fn primaries(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| a.is_primary())
            .map(|a| a.name.clone())
            .collect()
    }

    /// Waits until exactly one member is primary and all the others stream; returns the leader.
    pub fn wait_converged(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let primaries = self.primaries();
            if primaries.len() == 1 {
                let others_stream = self
                    .agents
                    .iter()
                    .filter(|a| a.name != primaries[0])
                    .all(|a| a.is_streaming_replica());
                if others_stream {
                    return primaries[0].clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "cluster did not converge within {timeout:?} (primaries {primaries:?}); /cluster: {}",
                    self.cluster_json().map(|v| v.to_string()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/cluster` from the first agent that answers.
    pub fn cluster_json(&self) -> Option<Value> {
        self.agents.iter().find_map(|a| match a.get("/cluster") {
            Some((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        })
    }

    pub fn history(&self) -> Vec<Value> {
        self.cluster_json()
            .and_then(|c| c["history"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Runs `pgha ARGS --config <first agent's config>`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_pgha"))
            .args(args)
            .arg("--config")
            .arg(&self.agents[0].config)
            .env("PGHA_LOG", "warn")
            .output()
            .expect("run pgha")
    }

    /// Every agent's log tail, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for a in &self.agents {
            out.push_str(&format!(
                "----- {} (agent log, last {lines} lines)\n",
                a.name
            ));
            out.push_str(&tail(&a.log, lines));
            out.push('\n');
        }
        out
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
        for r in &mut self.relays {
            r.stop.store(true, Ordering::SeqCst);
        }
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
        r#"[cluster]
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
ttl_ms = 3000
safety_margin_ms = 1000
loop_wait_ms = 500
"#,
        dir = dir.display(),
        secrets = secrets.display()
    )
}

pub fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
