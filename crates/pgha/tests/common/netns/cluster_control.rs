//! The cluster on test hosts: power, etcd, the proxy and the agents under a test's hand; teardown.

use super::*;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::{children_of, http, signal, wait_until, CallHold, TcpLink};

impl Cluster {
    /// Every pgha host and etcd's lose power at once (the client's host, with the proxy and
    /// the writers, keeps it): every agent, supervisor, postmaster and backend and every etcd
    /// member is stopped, then killed, and each disk of its own ([`Opts::member_disks`],
    /// [`Opts::etcd_disks`]) keeps only what was synced to it ([`LoopDisk::lose_power`]).
    pub fn lose_power(&mut self) {
        assert!(
            self.disks.len() == self.members.len() && self.etcd_disks.len() == self.etcd.len(),
            "a power loss needs Opts::member_disks and Opts::etcd_disks"
        );
        let mut pids: Vec<u32> = self.etcd.iter().filter_map(NsProcess::pid).collect();
        for m in &self.members {
            if let Some(pm) = m.postmaster_pid() {
                pids.extend(m.supervisor_pid());
                pids.push(pm);
                pids.extend(children_of(pm));
            }
            pids.extend(m.agent_pid());
        }
        // stopped first, so that none of them sees another one die
        for pid in &pids {
            signal(*pid, Signal::SIGSTOP);
        }
        for pid in &pids {
            signal(*pid, Signal::SIGKILL);
        }
        for m in &mut self.members {
            m.kill_agent();
        }
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        for d in self.disks.iter_mut().chain(&mut self.etcd_disks) {
            d.disk.lose_power();
        }
    }

    /// The power is back after [`Cluster::lose_power`]: etcd's members start on what their
    /// disks kept, then every agent.
    pub fn power_back(&mut self) {
        self.start_etcd(self.etcd_disks.len());
        for i in 0..self.members.len() {
            let name = self.members[i].name.clone();
            self.start_agent(&name);
        }
    }

    /// etcd loses every key: its members are killed (kill -9), their data directories
    /// removed, and new, empty members started at the same addresses, as after a disk lost
    /// without a backup or a restore from the wrong one.
    pub fn wipe_etcd(&mut self) {
        let members = self.etcd.len();
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        std::fs::remove_dir_all(self.root.join("etcd")).expect("remove etcd's data");
        self.start_etcd(members);
    }

    /// Makes etcd member `i` ([`Opts::etcd_members`]) etcd's leader (`leads`) or a follower:
    /// etcd's leader hands its leadership over (`transfer-leadership`, through etcd's HTTP
    /// gateway) when it has to, and this waits until it has.
    pub fn etcd_leadership(&self, i: usize, leads: bool) {
        let addrs = etcd_addrs(&self.net, self.etcd.len());
        let ports = &addrs;
        let addr = |k: usize| addrs[k].clone();
        // (this member's id, the leader's id), as member k sees them
        let status = |k: usize| -> Option<(String, String)> {
            let (_, body) = http("POST", &addr(k), "/v3/maintenance/status", None, Some("{}"))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let id = v["header"]["member_id"].as_str()?.to_string();
            Some((id, v["leader"].as_str()?.to_string()))
        };
        // Just after a member was cut off or stalled, it may not answer yet, or an election
        // may be under way (no leader): wait until every member answers, naming one leader.
        let settled = "every etcd member's status, naming the same leader";
        let seen: Vec<(String, String)> = wait_until(settled, Duration::from_secs(30), || {
            let seen = (0..ports.len()).map(status).collect::<Option<Vec<_>>>()?;
            let leader = &seen.first()?.1;
            let agreed = leader != "0" && seen.iter().all(|(_, l)| l == leader);
            agreed.then_some(seen)
        });
        let leader = seen[i].1.clone();
        let id = |k: usize| seen[k].0.clone();
        let target = match (leads, id(i) == leader) {
            (true, false) => i,
            (false, true) => (i + 1) % ports.len(),
            _ => return,
        };
        let from = (0..ports.len())
            .find(|k| id(*k) == leader)
            .expect("a leader");
        let body = format!("{{\"targetID\":\"{}\"}}", id(target));
        let path = "/v3/maintenance/transfer-leadership";
        let moved = http("POST", &addr(from), path, None, Some(&body));
        assert!(
            moved.as_ref().is_some_and(|(code, _)| *code == 200),
            "etcd's transfer-leadership: {moved:?}"
        );
        wait_until("etcd's leadership moved", Duration::from_secs(10), || {
            status(target)
                .filter(|(me, leader)| me == leader)
                .map(|_| ())
        });
    }

    /// A [`TcpLink`] on etcd's host for each member, from [`etcd_delayed_port`] to etcd (no
    /// delay yet).
    pub(super) fn start_etcd_links(&mut self) {
        self.etcd_links = self.on_etcd_host_for_each_member(TcpLink::start);
    }

    /// A [`CallHold`] on etcd's host for each member, from [`etcd_delayed_port`] to etcd
    /// (holding nothing yet).
    pub(super) fn start_etcd_call_holds(&mut self) {
        self.etcd_holds = self.on_etcd_host_for_each_member(CallHold::start);
    }

    /// A forwarder `start`ed in etcd's namespace for each member, in the members' order, from
    /// [`etcd_delayed_port`] to etcd.
    fn on_etcd_host_for_each_member<T>(
        &self,
        start: impl Fn(SocketAddr, SocketAddr) -> std::io::Result<T>,
    ) -> Vec<T> {
        let ip = self.net.host("etcd").ip.clone();
        let _in_etcd_host = NetnsGuard::enter(&self.net.host("etcd").ns);
        let target = format!("{ip}:{ETCD_PORT}").parse().unwrap();
        (1..=self.members.len())
            .map(|i| {
                let listen = format!("{ip}:{}", etcd_delayed_port(i)).parse().unwrap();
                start(listen, target).expect("a way to etcd for a member")
            })
            .collect()
    }

    /// `member`'s way to etcd that can hold a call. Needs [`Opts::etcd_call_holds`].
    pub fn etcd_hold_of(&self, member: &str) -> &CallHold {
        let i = self.members.iter().position(|m| m.name == member);
        let hold = i.and_then(|i| self.etcd_holds.get(i));
        hold.unwrap_or_else(|| {
            panic!("no call-holding way to etcd for {member} (Opts::etcd_call_holds)")
        })
    }

    /// Holds `member`'s next call `calls` catches for `delay` ([`CallHold::hold_next`]).
    pub fn hold_next_call_of(&self, member: &str, calls: Calls, delay: Duration) {
        self.etcd_hold_of(member).hold_next(calls, delay);
    }

    /// How late etcd's answers reach the members, and their requests reach etcd, from now
    /// on (each way). Needs [`Opts::etcd_latency`].
    pub fn set_etcd_latency(&self, latency: Latency) {
        assert!(!self.etcd_links.is_empty(), "needs Opts::etcd_latency");
        for link in &self.etcd_links {
            link.set(latency);
        }
    }

    /// [`Cluster::set_etcd_latency`] for `member` alone.
    pub fn set_etcd_latency_of(&self, member: &str, latency: Latency) {
        let i = self.members.iter().position(|m| m.name == member);
        let link = i.and_then(|i| self.etcd_links.get(i));
        link.unwrap_or_else(|| panic!("no link to etcd for {member} (Opts::etcd_latency)"))
            .set(latency);
    }

    pub(super) fn start_proxy(&mut self) {
        let mut cmd = self.net.command("client", pgha_bin());
        cmd.args(["proxy", "--config"])
            .arg(&self.client_config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        self.proxy = Some(NsProcess::spawn(
            "pgha proxy",
            cmd,
            &self.root.join("proxy.log"),
        ));
    }

    /// Sends `sig` to `pgha proxy` (e.g. SIGSTOP, SIGCONT: a stalled process or VM).
    pub fn signal_proxy(&self, sig: Signal) {
        self.proxy.as_ref().expect("pgha proxy runs").signal(sig);
    }

    /// Starts (again) `name`'s agent on its host.
    pub fn start_agent(&mut self, name: &str) {
        let i = self.index(name);
        let m = &self.members[i];
        assert!(m.agent.is_none(), "{name}'s agent already runs");
        let mut cmd = self.net.command(name, pgha_bin());
        cmd.args(["agent", "--config"])
            .arg(&m.config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        if let (Some(fake), Some(file)) = (&self.fake_clock, &m.wall_clock) {
            cmd.envs(fake.env(file))
                .env("RUST_LOG", "info,pgha_agent::agent=debug");
        }
        let p = NsProcess::spawn(&format!("{name}'s agent"), cmd, &m.log);
        let m = &mut self.members[i];
        m.runs.push(p.log_start);
        m.agent = Some(p);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let keep_anyway = std::env::var_os("PGHA_FAULTS_KEEP_LOGS").is_some();
        if std::thread::panicking() || keep_anyway {
            if !keep_anyway {
                eprintln!("{}", self.logs(60));
            }
            // keep every log (the directory itself goes away)
            let keep = std::env::temp_dir()
                .join("pgha-faults-logs")
                .join(&self.net.prefix);
            if std::fs::create_dir_all(&keep).is_ok() {
                for e in std::fs::read_dir(&self.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = e.file_name();
                    if name.to_string_lossy().ends_with(".log") {
                        let _ = std::fs::copy(e.path(), keep.join(&name));
                    }
                }
                for m in &self.members {
                    let _ = std::fs::copy(
                        m.dir.join("postgresql.log"),
                        keep.join(format!("{}.postgresql.log", m.name)),
                    );
                }
                eprintln!("logs kept in {}", keep.display());
            }
        }
        // Thawed first: a process with a thread waiting on a frozen disk (an agent's data
        // directory check, a job) cannot end, not even killed, until it thaws.
        for d in self.disks.iter_mut().chain(&mut self.etcd_disks) {
            d.thaw();
        }
        if let Some(mut p) = self.proxy.take() {
            p.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
        // SIGTERM every agent at once (SIGCONT first: one may be stopped), SIGKILL after 15 s
        for m in &self.members {
            if let Some(a) = &m.agent {
                a.signal(Signal::SIGCONT);
                a.signal(Signal::SIGTERM);
            }
        }
        for m in &mut self.members {
            if let Some(mut a) = m.agent.take() {
                a.stop(Signal::SIGTERM, Duration::from_secs(15));
            }
        }
        for m in &self.members {
            m.stop_postmaster();
        }
        for d in self.disks.drain(..) {
            d.unmount();
        }
        for d in self.host_disks.drain(..) {
            d.unmount();
        }
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        for d in self.etcd_disks.drain(..) {
            d.unmount();
        }
        self.net.destroy();
        if let Some(fake) = &self.fake_clock {
            fake.remove_leftovers();
        }
        self.thread_ns.take();
    }
}
