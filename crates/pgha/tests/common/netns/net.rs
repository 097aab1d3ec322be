//! Network namespaces: the test hosts, the bridge that joins them, iptables faults.

use super::*;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;
use pgha_testkit::signal;

/// Moves the calling thread into network namespace `ns` (only this thread: the network
/// namespace is per thread; threads it spawns afterwards inherit it).
pub fn enter_netns(ns: &str) -> std::io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    setns(&f)
}

fn setns(f: &File) -> std::io::Result<()> {
    // SAFETY: setns on a valid, open namespace descriptor; affects the calling thread only.
    let rc = unsafe { nix::libc::setns(f.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the current thread back into the network namespace it was in when created.
pub struct NetnsGuard(File);

impl NetnsGuard {
    pub fn enter(ns: &str) -> NetnsGuard {
        let original = File::open("/proc/thread-self/ns/net").expect("open own network namespace");
        enter_netns(ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
        NetnsGuard(original)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = setns(&self.0);
    }
}

const NS_PREFIX: &str = "pgf";

/// The entries of `dir` named `<NS_PREFIX><pid>x...` by a test process `pid` that is gone
/// (names and paths).
pub(super) fn left_by_dead_runs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name.strip_prefix(NS_PREFIX)?.split('x').next()?;
            let dead = pid.parse::<u32>().is_ok_and(|pid| !alive(pid));
            dead.then(|| (name, e.path()))
        })
        .collect()
}

/// Namespaces left behind by an earlier run whose test process died (SIGKILL, OOM): their
/// processes are killed by pid and the namespaces deleted.
fn remove_stale_namespaces() {
    // first thaw what a dead run left frozen: a frozen task dies of SIGKILL only once thawed
    remove_stale_freezers();
    for (name, _) in left_by_dead_runs(Path::new("/run/netns")) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<u32>() {
                    signal(p, Signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
}

/// One test host: a network namespace with `eth0` on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Short name: "etcd", "n1", "client", ...
    pub name: String,
    /// The namespace's name under /run/netns.
    pub ns: String,
    pub ip: String,
}

/// Which way a link is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// What the first host's programs send the second is dropped, the reverse flows: every
    /// packet but TCP segments without data (bare acknowledgements, a SYN-ACK, a FIN), so
    /// that TCP still carries what the second host sends. A drop of every packet would also
    /// drop those acknowledgements, and within a retransmission timeout the second host could
    /// send nothing either: a cut both ways, not one.
    OneWay,
    Both,
}

/// The bridge, the hosts and the iptables rules in force.
pub struct Net {
    pub prefix: String,
    /// The third octet of 10.201.N.0/24.
    pub subnet: u8,
    bridge_ns: String,
    pub hosts: Vec<Host>,
    iptables: String,
    /// (namespace, rule arguments after -A/-D)
    rules: Vec<(String, Vec<String>)>,
}

impl Net {
    /// Creates the bridge namespace and one namespace per host name (addresses
    /// 10.201.N.<10 + index>).
    pub fn new(host_names: &[&str]) -> Net {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        assert!(
            nix::unistd::geteuid().is_root(),
            "the fault tests need root (network namespaces, iptables)"
        );
        let ipv = Command::new("ip").arg("-V").output();
        assert!(
            ipv.map(|o| o.status.success()).unwrap_or(false),
            "`ip` is missing: apt-get install -y iproute2"
        );
        remove_stale_namespaces();
        let pid = std::process::id();
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{NS_PREFIX}{pid}x{k}");
        let subnet = ((pid as usize * 7 + k) % 200 + 20) as u8;
        let bridge_ns = format!("{prefix}-br");
        let mut net = Net {
            prefix: prefix.clone(),
            subnet,
            bridge_ns: bridge_ns.clone(),
            hosts: Vec::new(),
            iptables: String::new(),
            rules: Vec::new(),
        };
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        for (i, name) in host_names.iter().enumerate() {
            let ns = format!("{prefix}-{name}");
            let addr = format!("10.201.{subnet}.{}", 10 + i);
            let veth = format!("v{i}");
            ip(&["netns", "add", &ns]);
            // pushed before configuring so that a failure below still removes it
            net.hosts.push(Host {
                name: name.to_string(),
                ns: ns.clone(),
                ip: addr.clone(),
            });
            ip(&[
                "-n", &bridge_ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&[
                "-n", &bridge_ns, "link", "set", &veth, "master", "br0", "up",
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net.iptables = net.pick_iptables();
        net
    }

    /// `iptables` (nf_tables on Debian 12) or `iptables-legacy`, whichever can add and delete
    /// a rule inside a test namespace; panics naming the package when neither works.
    fn pick_iptables(&self) -> String {
        let ns = &self.hosts[0].ns;
        let mut errors = Vec::new();
        for candidate in ["iptables", "iptables-nft", "iptables-legacy"] {
            let rule = ["OUTPUT", "-d", "192.0.2.1", "-j", "DROP"];
            let run = |op: &str| {
                Command::new("ip")
                    .args(["netns", "exec", ns, candidate, "-w", op])
                    .args(rule)
                    .output()
            };
            match run("-A") {
                Ok(o) if o.status.success() => {
                    let del = run("-D");
                    if matches!(del, Ok(ref o) if o.status.success()) {
                        return candidate.to_string();
                    }
                    errors.push(format!("{candidate}: could add but not delete a rule"));
                }
                Ok(o) => errors.push(format!(
                    "{candidate}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => errors.push(format!("{candidate}: {e}")),
            }
        }
        panic!(
            "no working iptables inside a network namespace (install it: apt-get install -y iptables): {}",
            errors.join("; ")
        );
    }

    /// The iptables binary in use.
    pub fn iptables(&self) -> &str {
        &self.iptables
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    fn add_rule(&mut self, ns: &str, rule: &[&str]) {
        must(
            Command::new("ip")
                .args(["netns", "exec", ns, &self.iptables, "-w", "-A"])
                .args(rule),
        );
        self.rules
            .push((ns.to_string(), rule.iter().map(|s| s.to_string()).collect()));
    }

    /// Blackholes TCP between `a` and `port` on `b`, both ways (rules in `a`'s namespace): one
    /// service cut, the rest of the link working (a standby's replication, say, while its API
    /// still answers).
    pub fn cut_port(&mut self, a: &str, b: &str, port: u16) {
        let (ns, peer, port) = (
            self.host(a).ns.clone(),
            self.host(b).ip.clone(),
            port.to_string(),
        );
        self.add_rule(
            &ns,
            &[
                "OUTPUT", "-d", &peer, "-p", "tcp", "--dport", &port, "-j", "DROP",
            ],
        );
        self.add_rule(
            &ns,
            &[
                "INPUT", "-s", &peer, "-p", "tcp", "--sport", &port, "-j", "DROP",
            ],
        );
    }

    /// Slows what `a` sends `b` from its `port` to about `packets` a second (the rest dropped,
    /// so TCP backs off: a slow link for one service; healed by [`Net::heal`]).
    pub fn throttle_from_port(&mut self, a: &str, b: &str, port: u16, packets: u32) {
        let (ns, peer) = (self.host(a).ns.clone(), self.host(b).ip.clone());
        let (port, rate) = (port.to_string(), format!("{packets}/sec"));
        let name = format!("slow{}", self.rules.len());
        let rule = [
            "OUTPUT",
            "-d",
            &peer,
            "-p",
            "tcp",
            "--sport",
            &port,
            "-m",
            "hashlimit",
            "--hashlimit-above",
            &rate,
            "--hashlimit-burst",
            "20",
            "--hashlimit-name",
            &name,
            "-j",
            "DROP",
        ];
        self.add_rule(&ns, &rule);
    }

    /// Blackholes the link between hosts `a` and `b` (rules in `a`'s namespace): `OneWay`
    /// drops what `a`'s programs send to `b` (see [`Way::OneWay`]); `Both` every packet either
    /// way.
    pub fn cut(&mut self, a: &str, b: &str, way: Way) {
        let (ns, peer) = (self.host(a).ns.clone(), self.host(b).ip.clone());
        match way {
            Way::Both => {
                self.add_rule(&ns, &["OUTPUT", "-d", &peer, "-j", "DROP"]);
                self.add_rule(&ns, &["INPUT", "-s", &peer, "-j", "DROP"]);
            }
            Way::OneWay => {
                // A TCP segment carries data when the packet is longer than its headers: the
                // IP header (20 bytes, no options here) and the TCP header, whose length
                // (20 to 60 bytes) its data offset says; one rule per TCP header length.
                for tcp_header in (20..=60).step_by(4) {
                    let u32_match = format!(
                        "0>>24&0x0F=5&&0>>22&0x3C@12>>26&0x3C={tcp_header}&&0&0xFFFF={}:65535",
                        20 + tcp_header + 1
                    );
                    let rule = ["OUTPUT", "-d", &peer, "-p", "tcp", "-m", "u32", "--u32"];
                    let rule = [&rule[..], &[u32_match.as_str(), "-j", "DROP"]].concat();
                    self.add_rule(&ns, &rule);
                }
                let not_tcp = ["OUTPUT", "-d", &peer, "!", "-p", "tcp", "-j", "DROP"];
                self.add_rule(&ns, &not_tcp);
            }
        }
    }

    /// Drops every packet in and out of `a`'s eth0 (its loopback still works).
    pub fn isolate(&mut self, a: &str) {
        let ns = self.host(a).ns.clone();
        self.add_rule(&ns, &["INPUT", "-i", "eth0", "-j", "DROP"]);
        self.add_rule(&ns, &["OUTPUT", "-o", "eth0", "-j", "DROP"]);
    }

    /// Drops a random `fraction` (0..1) of the packets in and out of `a`'s eth0, each way on
    /// its own (iptables `statistic --mode random`): a lossy link, not a cut. TCP still gets
    /// through, late, after retransmissions with growing back-off.
    pub fn lossy(&mut self, a: &str, fraction: f64) {
        assert!((0.0..1.0).contains(&fraction), "a loss fraction in 0..1");
        let ns = self.host(a).ns.clone();
        let p = format!("{fraction}");
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            self.add_rule(
                &ns,
                &[
                    chain,
                    dir,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Removes every rule added so far.
    pub fn heal_all(&mut self) {
        let rules = std::mem::take(&mut self.rules);
        self.delete_rules(rules);
    }

    /// Removes the rules [`Net::cut`] and [`Net::cut_port`] added in `a`'s namespace for the
    /// link between `a` and `b`, and those only: the other cuts stay.
    pub fn heal(&mut self, a: &str, b: &str) {
        let (ns, peer) = (self.host(a).ns.clone(), self.host(b).ip.clone());
        let (healed, kept) = std::mem::take(&mut self.rules)
            .into_iter()
            .partition(|(n, rule)| *n == ns && rule.contains(&peer));
        self.rules = kept;
        self.delete_rules(healed);
    }

    fn delete_rules(&self, rules: Vec<(String, Vec<String>)>) {
        for (ns, rule) in rules.into_iter().rev() {
            must(
                Command::new("ip")
                    .args(["netns", "exec", &ns, &self.iptables, "-w", "-D"])
                    .args(&rule),
            );
        }
    }

    /// `ip netns exec NS program args...`, not started yet.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(host).ns]).arg(program);
        c
    }

    pub(super) fn destroy(&mut self) {
        for h in &self.hosts {
            // whatever still runs in the namespace was started by this test
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &h.ns]).output() {
                for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(p) = p.parse::<u32>() {
                        signal(p, Signal::SIGCONT);
                        signal(p, Signal::SIGKILL);
                    }
                }
            }
        }
        for h in self.hosts.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}
