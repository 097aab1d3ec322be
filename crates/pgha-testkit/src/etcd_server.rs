//! A real etcd process: started (again) on its data directory and ports, paused, killed on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::etcd::{etcd_binary, spawn_error, EtcdNode};
use crate::log::{spawn_logged, tail};
use crate::port::free_ports;
use crate::process::{signal, stop_child};
use crate::wait::poll;

/// How long etcd may take to answer `/health` after it was started.
const STARTUP: Duration = Duration::from_secs(30);

/// One etcd member with its data (`DIR/data`) and log (`DIR/etcd.log`, appended to across
/// restarts). Dropping it, also while a test panics, kills the process (by pid).
pub struct EtcdServer {
    pub node: EtcdNode,
    binary: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl EtcdServer {
    /// Prepared on `dir` (created), not started: a test can start its clients first.
    pub fn new(node: EtcdNode, dir: &Path) -> EtcdServer {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        EtcdServer {
            node,
            binary: etcd_binary(),
            dir: dir.to_path_buf(),
            log: dir.join("etcd.log"),
            child: None,
            _tmp: None,
        }
    }

    /// Prepared in a temporary directory removed on drop, not started.
    pub(crate) fn new_temporary(node: EtcdNode) -> EtcdServer {
        let tmp = tempfile::Builder::new()
            .prefix("pgha-etcd-")
            .tempdir()
            .expect("temp dir");
        let mut server = EtcdServer::new(node, tmp.path());
        server._tmp = Some(tmp);
        server
    }

    /// A single-member etcd on free loopback ports in a temporary directory, started and
    /// healthy. A free port can be taken by someone else before etcd binds it: three tries.
    pub fn start_free() -> EtcdServer {
        Self::start_free_with(&[])
    }

    /// [`EtcdServer::start_free`] with more flags, e.g. `--auth-token-ttl=1`.
    pub fn start_free_with(extra_args: &[&str]) -> EtcdServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            let ports = free_ports(2);
            let (client, peer) = (ports[0], ports[1]);
            let node = EtcdNode {
                extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
                ..EtcdNode::single(
                    "pgha-test",
                    format!("127.0.0.1:{client}"),
                    format!("127.0.0.1:{peer}"),
                )
            };
            let mut server = EtcdServer::new_temporary(node);
            match server.try_start() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start etcd: {last_error}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        self.node.endpoint()
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        let (_, port) = self.node.client.rsplit_once(':').expect("host:port");
        port.parse().expect("a port")
    }

    /// Starts etcd (again, on the same data directory and ports) and waits until it is healthy.
    pub fn start(&mut self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("could not start etcd: {e}"));
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.spawn()?;
        self.wait_healthy()
    }

    /// Starts the process without waiting for it.
    pub(crate) fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd already running");
        let mut command = Command::new(&self.binary);
        command.args(self.node.args(&self.dir.join("data")));
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill etcd if the thread
        // that started it dies without dropping this (e.g. the test binary is SIGKILLed).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let (child, _) =
            spawn_logged(&mut command, &self.log).map_err(|e| spawn_error(&self.binary, &e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/health` answers, or the process exits, or [`STARTUP`] passes.
    pub(crate) fn wait_healthy(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().expect("etcd started");
        let node = &self.node;
        let outcome = poll(STARTUP, Duration::from_millis(50), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("etcd exited with {status}")));
            }
            node.healthy().then_some(Ok(()))
        });
        let error = match outcome {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => e,
            None => format!("etcd did not become healthy within {STARTUP:?}"),
        };
        Err(format!("{error}:\n{}", self.log_tail()))
    }

    pub fn healthy(&self) -> bool {
        self.node.healthy()
    }

    /// Freezes etcd (SIGSTOP, by pid): its connections stay open but nothing answers, as on a
    /// stalled host or a silent network partition. [`EtcdServer::resume`] undoes it.
    pub fn pause(&mut self) {
        self.send(Signal::SIGSTOP);
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume(&mut self) {
        self.send(Signal::SIGCONT);
    }

    fn send(&self, sig: Signal) {
        let pid = self.child.as_ref().expect("etcd running").id();
        assert!(signal(pid, sig), "{sig} to etcd (pid {pid})");
    }

    /// SIGKILL (by pid), as a crash; [`EtcdServer::start`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the exit (SIGKILL after 10 s).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(10));
        }
    }

    /// The last 20 lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 20)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused process.
        self.kill();
    }
}
