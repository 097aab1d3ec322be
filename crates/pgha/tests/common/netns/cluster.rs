//! The cluster on test hosts: its options, and how it starts (etcd included).

use super::*;

use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::Duration;

use pgha_testkit::{
    etcd_binary, etcd_healthy, poll, serial, tail, traversable_tempdir, CallHold, EtcdNode, TcpLink,
};

use crate::dist::write_secrets;

/// How a test cluster is configured.
#[derive(Clone, Debug)]
pub struct Opts {
    pub members: usize,
    /// Extra `[dynamic]` settings (TOML values), e.g. ("synchronous_mode", "\"on\""); the
    /// ttl, safety margin and loop wait given here replace the test clusters' own.
    pub dynamic: Vec<(String, String)>,
    /// Extra `[postgresql.parameters]` (TOML values).
    pub parameters: Vec<(String, String)>,
    /// Every agent (and its supervisor) runs with a wall clock the test can step
    /// ([`Cluster::set_wall_clock`]; see [`FakeWallClock`]), and logs each loop's reason (debug)
    /// so that its log's wall-clock timestamps show the step.
    pub fake_wall_clock: bool,
    /// Each member's directory (data directory and all) on a file system of its own, an ext4
    /// image mounted through a loop device, so that a test can stall its disk
    /// ([`Cluster::freeze_disk`]). The lease file and the agent's log stay outside it.
    pub member_disks: bool,
    /// Each member's directory sits on a small file system of the member's host (a 16 MiB
    /// tmpfs, `nN-host/`) that holds its lease file and failsafe promise beside it, as `/`
    /// holds `/var/lib/pgha/nN.lease` when the data volume is mounted at the member
    /// directory, so that a test can fill it ([`Cluster::fill_host_disk`]). Needs
    /// [`Opts::member_disks`] (the data directory's own disk, mounted inside it).
    pub host_disks: bool,
    /// Each member reaches etcd through a [`TcpLink`] of its own on etcd's host, so that a
    /// test can make etcd answer late, to every member ([`Cluster::set_etcd_latency`]) or to
    /// one ([`Cluster::set_etcd_latency_of`]); the proxy and the CLI reach it directly.
    pub etcd_latency: bool,
    /// Each member reaches etcd through a [`CallHold`] of its own on etcd's host (the same
    /// port as [`Opts::etcd_latency`]'s link, which it replaces), so that a test can hold one
    /// of its calls back while the others pass ([`Cluster::hold_next_call_of`]).
    pub etcd_call_holds: bool,
    /// How many etcd members run, each on a host of its own (`etcd`, `etcd1`, `etcd2`, ...:
    /// [`etcd_host`]; ports 2379/2380, 2381/2382, ...), so that a link between two of them
    /// can be cut; every config lists all of them, the first one first. One by default.
    pub etcd_members: usize,
    /// Each etcd member's data directory on a file system of its own (an ext4 image through a
    /// loop device, as [`Opts::member_disks`]), so that a test can stall etcd's disk
    /// ([`Cluster::freeze_etcd_disk`]).
    pub etcd_disks: bool,
    /// etcd's space quota (`--quota-backend-bytes`): past it etcd raises its NOSPACE alarm
    /// and refuses every write ([`Cluster::fill_etcd`]). etcd's default (2 GiB) otherwise.
    pub etcd_quota_bytes: Option<u64>,
    /// TOML appended to every member's configuration (a `[callbacks]` table, say).
    pub member_toml: String,
}

/// The test host etcd member `i` runs on: `etcd` for the first, `etcd1`, `etcd2`, ...
pub fn etcd_host(i: usize) -> String {
    match i {
        0 => "etcd".to_string(),
        i => format!("etcd{i}"),
    }
}

/// The client ports of `members` etcd members: 2379, 2381, ...
fn etcd_client_ports(members: usize) -> Vec<u16> {
    (0..members).map(|i| ETCD_PORT + 2 * i as u16).collect()
}

/// The client addresses (`ip:port`) of `members` etcd members, each on its own host.
/// Where member `i` (1 for n1) reaches etcd through its [`TcpLink`] ([`Opts::etcd_latency`])
/// or its [`CallHold`] ([`Opts::etcd_call_holds`]).
pub(super) fn etcd_delayed_port(i: usize) -> u16 {
    ETCD_DELAYED_PORT + u16::try_from(i - 1).expect("a member's number")
}

pub(super) fn etcd_addrs(net: &Net, members: usize) -> Vec<String> {
    etcd_client_ports(members)
        .into_iter()
        .enumerate()
        .map(|(i, port)| format!("{}:{port}", net.host(&etcd_host(i)).ip))
        .collect()
}

/// The name of the test clusters.
pub const CLUSTER: &str = "faults";

/// The etcd key `rest` of the test clusters (the layout below `/pgha/<cluster>/` the etcd
/// store documents), e.g. `leader`: what a test holds a call by.
pub fn etcd_key(rest: &str) -> Vec<u8> {
    format!("/pgha/{CLUSTER}/{rest}").into_bytes()
}

/// The gRPC path of etcd's transactions: every write the agents compare (taking, keeping or
/// releasing the leader key; the leader's `sync` and `failsafe` keys).
pub const ETCD_TXN: &str = "/etcdserverpb.KV/Txn";

/// The gRPC path of etcd's lease keep-alives (a stream each): how a leader's renewal keeps its
/// lease alive, beside the transaction that checks its key.
pub const ETCD_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";

/// ttl, safety margin and loop wait of the test clusters.
pub use crate::dist::{LOOP_WAIT, SAFETY_MARGIN, TTL};
/// `wal_receiver_timeout` / `wal_sender_timeout` of the test clusters: what pgha renders
/// for their ttl (`ClusterConfig::replication_timeout`: a ttl, 5 s at least); the harness does
/// not set them, so the faults tests check pgha's own values.
pub const WAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Opts {
    fn default() -> Self {
        Opts {
            members: 3,
            dynamic: Vec::new(),
            parameters: Vec::new(),
            fake_wall_clock: false,
            member_disks: false,
            host_disks: false,
            etcd_latency: false,
            etcd_call_holds: false,
            etcd_members: 1,
            etcd_disks: false,
            etcd_quota_bytes: None,
            member_toml: String::new(),
        }
    }
}

/// etcd, the members and `pgha proxy` on their own test hosts. The test thread itself runs in
/// the client host's namespace while this lives (so REST and SQL checks go over the bridge).
/// One at a time in a test binary: it holds the binary's `serial()` lock while it lives.
pub struct Cluster {
    pub members: Vec<Member>,
    pub net: Net,
    pub root: PathBuf,
    pub client_config: PathBuf,
    /// The etcd members ([`Opts::etcd_members`]), in the order the configs list them.
    pub(super) etcd: Vec<NsProcess>,
    pub(super) proxy: Option<NsProcess>,
    /// libfaketime, when the agents run with a fake wall clock.
    pub fake_clock: Option<FakeWallClock>,
    /// The members' own file systems ([`Opts::member_disks`]); unmounted on drop.
    pub(super) disks: Vec<MemberDisk>,
    /// The file systems their directories sit on ([`Opts::host_disks`]); unmounted on drop,
    /// after `disks`.
    pub(super) host_disks: Vec<HostDisk>,
    /// Each member's way to etcd, in the members' order, when it can be slowed
    /// ([`Opts::etcd_latency`]).
    pub(super) etcd_links: Vec<TcpLink>,
    /// Each member's way to etcd, in the members' order, when a call of it can be held
    /// ([`Opts::etcd_call_holds`]).
    pub(super) etcd_holds: Vec<CallHold>,
    /// [`Opts::etcd_quota_bytes`], for every start of etcd.
    etcd_quota_bytes: Option<u64>,
    /// etcd member `i`'s own file system ([`Opts::etcd_disks`]); unmounted on drop, once etcd
    /// has stopped.
    pub(super) etcd_disks: Vec<MemberDisk>,
    _tmp: tempfile::TempDir,
    // last: restored after the namespaces are gone
    pub(super) thread_ns: Option<NetnsGuard>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Builds the hosts, starts etcd, every agent and the proxy; waits until one primary runs,
    /// the others stream and the bootstrap is recorded.
    pub fn start(opts: &Opts) -> Cluster {
        assert!(
            !(opts.etcd_latency && opts.etcd_call_holds),
            "Opts::etcd_latency and Opts::etcd_call_holds use the same ports: one or the other"
        );
        let serial = serial();
        let mut names: Vec<String> = (0..opts.etcd_members).map(etcd_host).collect();
        names.extend((1..=opts.members).map(|i| format!("n{i}")));
        names.push("client".into());
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let net = Net::new(&name_refs);
        let tmp = traversable_tempdir("pgha-faults-");
        let root = tmp.path().to_path_buf();
        let secrets = write_secrets(&root);
        let etcd_ip = net.host("etcd").ip.clone();
        let client_ip = net.host("client").ip.clone();
        let subnet = format!("10.201.{}.0/24", net.subnet);
        let config_text = |name: &str, host: &str, etcd: &[String]| {
            let mut params = vec![
                ("fsync".to_string(), "\"off\"".to_string()),
                ("shared_buffers".into(), "\"16MB\"".into()),
                ("max_connections".into(), "30".into()),
            ];
            params.retain(|(k, _)| !opts.parameters.iter().any(|(key, _)| key == k));
            params.extend(opts.parameters.iter().cloned());
            let mut dynamic = vec![
                ("ttl_ms".to_string(), TTL.as_millis().to_string()),
                (
                    "safety_margin_ms".into(),
                    SAFETY_MARGIN.as_millis().to_string(),
                ),
                ("loop_wait_ms".into(), LOOP_WAIT.as_millis().to_string()),
            ];
            dynamic.retain(|(k, _)| !opts.dynamic.iter().any(|(key, _)| key == k));
            dynamic.extend(opts.dynamic.iter().cloned());
            let lines = |kv: &[(String, String)]| {
                kv.iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect::<String>()
            };
            format!(
                "insecure_no_tls = true\nreplication_from = [\"{subnet}\"]\n\
                 [cluster]\nname = \"{CLUSTER}\"\n\
                 [etcd]\nendpoints = [{endpoints}]\n\
                 [member]\nname = \"{name}\"\ndir = \"{dir}\"\nhost = \"{host}\"\nport = {PG_PORT}\napi = \"{host}:{API_PORT}\"\n\
                 [secrets]\nfile = \"{secrets}\"\n\
                 [postgresql.parameters]\n{params}\
                 [proxy]\nrw_listen = \"{client_ip}:{PROXY_RW_PORT}\"\nro_listen = \"{client_ip}:{PROXY_RO_PORT}\"\n\
                 [dynamic]\n{dynamic}",
                endpoints = etcd
                    .iter()
                    .map(|addr| format!("\"http://{addr}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir = if name == "client" {
                    root.join(name)
                } else {
                    member_dir(&root, name, opts)
                }
                .display(),
                secrets = secrets.display(),
                params = lines(&params),
                dynamic = lines(&dynamic),
            )
        };
        let mut members = Vec::new();
        let mut disks = Vec::new();
        let mut host_disks = Vec::new();
        assert!(
            !opts.host_disks || opts.member_disks,
            "Opts::host_disks needs Opts::member_disks"
        );
        for i in 1..=opts.members {
            let name = format!("n{i}");
            if opts.host_disks {
                host_disks.push(HostDisk::mount(&root, &name));
            }
            if opts.member_disks {
                disks.push(MemberDisk::mount(&root, &member_dir(&root, &name, opts)));
            }
            let host = net.host(&name).clone();
            let config = root.join(format!("{name}.toml"));
            let etcd = if opts.etcd_latency || opts.etcd_call_holds {
                vec![format!("{etcd_ip}:{}", etcd_delayed_port(i))]
            } else {
                etcd_addrs(&net, opts.etcd_members)
            };
            let text = config_text(&name, &host.ip, &etcd) + &opts.member_toml;
            std::fs::write(&config, text).unwrap();
            let wall_clock = opts.fake_wall_clock.then(|| {
                let file = root.join(format!("{name}.faketime"));
                write_clock_offset(&file, 0);
                file
            });
            members.push(Member {
                log: root.join(format!("{name}.agent.log")),
                dir: member_dir(&root, &name, opts),
                name,
                host,
                config,
                agent: None,
                runs: Vec::new(),
                wall_clock,
            });
        }
        let client_config = root.join("client.toml");
        let etcd = etcd_addrs(&net, opts.etcd_members);
        std::fs::write(&client_config, config_text("client", &client_ip, &etcd)).unwrap();
        // checked on this machine before any agent runs with it (see FakeWallClock::check)
        let fake_clock = opts
            .fake_wall_clock
            .then(|| FakeWallClock::find().check(&root));
        let thread_ns = NetnsGuard::enter(&net.host("client").ns);
        let mut c = Cluster {
            members,
            net,
            root,
            client_config,
            etcd: Vec::new(),
            proxy: None,
            fake_clock,
            disks,
            host_disks,
            etcd_links: Vec::new(),
            etcd_holds: Vec::new(),
            etcd_quota_bytes: opts.etcd_quota_bytes,
            etcd_disks: Vec::new(),
            _tmp: tmp,
            thread_ns: Some(thread_ns),
            _serial: serial,
        };
        if opts.etcd_disks {
            for i in 0..opts.etcd_members {
                let mount = c.root.join("etcd-disks").join(format!("m{i}"));
                c.etcd_disks.push(MemberDisk::mount(&c.root, &mount));
            }
        }
        c.start_etcd(opts.etcd_members);
        if opts.etcd_latency {
            c.start_etcd_links();
        }
        if opts.etcd_call_holds {
            c.start_etcd_call_holds();
        }
        for i in 0..c.members.len() {
            let name = c.members[i].name.clone();
            c.start_agent(&name);
        }
        c.start_proxy();
        c.wait_converged(Duration::from_secs(120));
        c.wait_bootstrapped(Duration::from_secs(60));
        c
    }

    /// Starts `members` etcd members on etcd's host, one cluster, and waits until each is
    /// healthy (which needs a leader).
    pub(super) fn start_etcd(&mut self, members: usize) {
        let ip = |i: usize| self.net.host(&etcd_host(i)).ip.clone();
        let name = |i: usize| {
            if members == 1 {
                "pgha-faults".to_string()
            } else {
                format!("m{i}")
            }
        };
        let peer = |i: usize| format!("{}:{}", ip(i), ETCD_PORT + 1 + 2 * i as u16);
        let initial_cluster = (0..members)
            .map(|i| format!("{}=http://{}", name(i), peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut started = Vec::new();
        for (i, port) in etcd_client_ports(members).into_iter().enumerate() {
            let node = EtcdNode {
                initial_cluster: initial_cluster.clone(),
                token: format!("pgha-faults-{}", std::process::id()),
                ..EtcdNode::single(&name(i), format!("{}:{port}", ip(i)), peer(i))
            };
            let (data, log) = if let Some(disk) = self.etcd_disks.get(i) {
                let log = self.root.join(format!("etcd-{}.log", name(i)));
                (disk.disk.path().join("data"), log)
            } else if members == 1 {
                (
                    self.root.join("etcd").join("data"),
                    self.root.join("etcd.log"),
                )
            } else {
                let member = name(i);
                let log = self.root.join(format!("etcd-{member}.log"));
                (self.root.join("etcd").join(member), log)
            };
            let mut cmd = self.net.command(&etcd_host(i), etcd_binary());
            let mut args = node.args(&data);
            if !self.etcd_disks.is_empty() {
                // a disk of its own is there to be stalled or crashed: etcd must sync to it
                args.retain(|a| a != "--unsafe-no-fsync");
            }
            cmd.args(args);
            if let Some(quota) = self.etcd_quota_bytes {
                cmd.arg(format!("--quota-backend-bytes={quota}"));
            }
            started.push((node, NsProcess::spawn("etcd", cmd, &log), log));
        }
        for (node, p, log) in &mut started {
            let healthy = poll(Duration::from_secs(30), Duration::from_millis(50), || {
                assert!(p.running(), "etcd exited:\n{}", tail(log, 20));
                etcd_healthy(&node.client).then_some(())
            });
            assert!(
                healthy.is_some(),
                "etcd not healthy within 30 s:\n{}",
                tail(log, 20)
            );
        }
        self.etcd = started.into_iter().map(|(_, p, _)| p).collect();
    }
}

impl AgentSet for Cluster {
    type Agent = Member;

    const POLL: Duration = Duration::from_millis(200);

    fn rest_agents(&self) -> &[Member] {
        &self.members
    }

    fn failure_logs(&self) -> String {
        self.logs(60)
    }
}
