//! Test helper: a throwaway single-node `etcd` on free loopback ports, killed (by pid) on drop;
//! and [`EtcdCluster`], several such members forming one cluster.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer `/health` after it was started.
const STARTUP: Duration = Duration::from_secs(30);

/// A running etcd; dropping it (also while a test panics) kills the process and removes its data.
pub struct EtcdServer {
    child: Child,
    binary: PathBuf,
    node: Node,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// How one member is started: its name, its URLs and the cluster it belongs to.
#[derive(Clone)]
struct Node {
    name: String,
    endpoint: String,
    peer: String,
    /// `--initial-cluster`: `name=peer` of every member.
    cluster: String,
    /// `--initial-cluster-token`: unique per cluster, so that stray members never join.
    token: String,
}

impl Node {
    fn single(name: &str) -> Node {
        let peer = format!("http://{}", free_port());
        Node {
            name: name.to_string(),
            endpoint: format!("http://{}", free_port()),
            cluster: format!("{name}={peer}"),
            peer,
            token: format!("pgha-test-{}", std::process::id()),
        }
    }
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. Panics, saying what to install, when the
    /// binary cannot be found: these tests never skip.
    pub fn start() -> EtcdServer {
        let binary = find_etcd();
        let mut last_error = String::new();
        // A free port picked here can be taken by someone else before etcd binds it: retry.
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start etcd ({}): {last_error}", binary.display());
    }

    fn try_start(binary: &Path) -> Result<EtcdServer, String> {
        let mut server = Self::spawn_node(binary, Node::single("pgha-test"))?;
        server.wait_healthy()?;
        Ok(server)
    }

    /// Starts the process of `node` without waiting for it.
    fn spawn_node(binary: &Path, node: Node) -> Result<EtcdServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let log = dir.path().join("etcd.log");
        let child = spawn(binary, dir.path(), &node, &log)?;
        Ok(EtcdServer {
            child,
            binary: binary.to_path_buf(),
            node,
            log,
            dir,
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.node.endpoint
    }

    /// Freezes etcd (SIGSTOP, by pid): its connections stay open but nothing answers, as
    /// on a stalled host or a silent network partition. [`EtcdServer::resume`] undoes it.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Kills etcd (SIGKILL, by pid); [`EtcdServer::start_again`] brings it back.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a stopped etcd again on the same ports and data directory.
    pub fn start_again(&mut self) {
        let dir = self.dir.path();
        self.child = spawn(&self.binary, dir, &self.node, &self.log)
            .unwrap_or_else(|e| panic!("restarting etcd: {e}"));
        self.wait_healthy()
            .unwrap_or_else(|e| panic!("restarting etcd: {e}"));
    }

    fn kill(&mut self) {
        // Child::kill sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let addr: SocketAddr = self.node.endpoint["http://".len()..]
            .parse()
            .expect("loopback address");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited with {status}:\n{}", self.log_tail()));
            }
            if health(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd did not become healthy within {STARTUP:?}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused process.
        self.kill();
    }
}

/// Several etcd members forming one cluster on loopback; each is killed (by pid) on drop.
pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each answers `/health` (which needs a leader).
    pub fn start(size: usize) -> EtcdCluster {
        let binary = find_etcd();
        let mut last_error = String::new();
        for attempt in 0..3 {
            match Self::try_start(&binary, size, attempt) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "could not start an etcd cluster ({}): {last_error}",
            binary.display()
        );
    }

    fn try_start(binary: &Path, size: usize, attempt: usize) -> Result<EtcdCluster, String> {
        let peers: Vec<(String, String)> = (0..size)
            .map(|i| (format!("m{i}"), format!("http://{}", free_port())))
            .collect();
        let cluster = peers
            .iter()
            .map(|(name, peer)| format!("{name}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("pgha-test-{}-{attempt}", std::process::id());
        let mut members = Vec::with_capacity(size);
        for (name, peer) in peers {
            let node = Node {
                name,
                endpoint: format!("http://{}", free_port()),
                peer,
                cluster: cluster.clone(),
                token: token.clone(),
            };
            members.push(EtcdServer::spawn_node(binary, node)?);
        }
        for member in &mut members {
            member.wait_healthy()?;
        }
        Ok(EtcdCluster { members })
    }
}

/// Starts the etcd process, logging to `log` (appended to across restarts).
fn spawn(binary: &Path, dir: &Path, node: &Node, log: &Path) -> Result<Child, String> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("log file: {e}"))?;
    let stderr = log_file.try_clone().map_err(|e| format!("log file: {e}"))?;
    let mut command = Command::new(binary);
    command
        .arg(format!("--name={}", node.name))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={}", node.endpoint))
        .arg(format!("--advertise-client-urls={}", node.endpoint))
        .arg(format!("--listen-peer-urls={}", node.peer))
        .arg(format!("--initial-advertise-peer-urls={}", node.peer))
        .arg(format!("--initial-cluster={}", node.cluster))
        .arg(format!("--initial-cluster-token={}", node.token))
        .arg("--initial-cluster-state=new")
        // Faster elections (a member cut off from its quorum loses its leader within 0.5 s);
        // leases can still be as short as 1 s.
        .args(["--heartbeat-interval=50", "--election-timeout=500"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr);
    if supports_no_fsync(binary) {
        command.arg("--unsafe-no-fsync");
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill etcd if the thread
    // that started it dies without dropping the guard (e.g. the test binary is SIGKILLed).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        format!(
            "spawn {}: {e} (install the Debian package etcd-server, or set PGHA_ETCD_BIN)",
            binary.display()
        )
    })
}

/// `PGHA_ETCD_BIN`, else `etcd` on `PATH`, else a clear panic naming the package.
fn find_etcd() -> PathBuf {
    if let Some(bin) = std::env::var_os("PGHA_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the etcd contract tests need the `etcd` binary, which was not found on PATH: \
                 install the Debian package etcd-server (./test.sh does), or set PGHA_ETCD_BIN"
            )
        })
}

fn supports_no_fsync(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .map(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text).contains("--unsafe-no-fsync")
        })
        .unwrap_or(false)
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

/// Whether etcd's `/health` says it has a leader and serves requests.
fn health(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
