//! (e) Refused at start: etcd unreachable, a foreign data directory, bad config, no watchdog.

use super::*;

use std::collections::BTreeMap;

/// (e) etcd unreachable at start: a clear retry message and no initdb until etcd answers, then
/// a bootstrap. A member whose data directory belongs to another cluster is refused, and the
/// directory is left as it was.
#[test]
fn etcd_unreachable_at_start_then_foreign_data_directory_refused() {
    let _serial = serial();
    let t = Instant::now();
    let one = Options {
        members: 1,
        cluster: "late".into(),
        ..Options::default()
    };
    let mut late = DistCluster::prepare(&one);
    late.agents[0].start();
    wait_until("a retry message", Duration::from_secs(10), || {
        let log = late.agents[0].log();
        (log.contains("unreachable") && log.contains("retrying")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        late.agents[0].exited().is_none(),
        "the agent gave up: {}",
        late.agents[0].log()
    );
    assert!(
        !late.agents[0].data_dir().exists(),
        "data directory created while etcd was unreachable"
    );
    let msg = late.agents[0].log();
    assert!(
        msg.contains(&late.etcd.endpoint()),
        "the message names the endpoint: {msg}"
    );
    late.etcd.start();
    wait_until(
        "the bootstrap once etcd is up",
        Duration::from_secs(30),
        || late.agents[0].is_primary().then_some(()),
    );
    wait_until(
        "the bootstrap in the history",
        Duration::from_secs(10),
        || (history_kinds(&late, "bootstrap").len() == 1).then_some(()),
    );
    late.agents[0].terminate(Duration::from_secs(30));

    // Another cluster, bootstrapped; then one of its members pointed at `late`'s data.
    let mut other = DistCluster::start(&Options {
        members: 1,
        ..Options::default()
    });
    other.agents[0].terminate(Duration::from_secs(30));
    let foreign = late.agents[0].dir.clone();
    let data = late.agents[0].data_dir();
    let before = dir_fingerprint(&data);
    let config = std::fs::read_to_string(&other.agents[0].config).unwrap();
    let moved = config.replace(
        &format!("dir = \"{}\"", other.agents[0].dir.display()),
        &format!("dir = \"{}\"", foreign.display()),
    );
    assert_ne!(config, moved);
    std::fs::write(&other.agents[0].config, moved).unwrap();
    other.agents[0].start();
    let status = other.agents[0]
        .wait_exit(Duration::from_secs(20))
        .expect("the agent must refuse and exit");
    let log = other.agents[0].log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("belongs to another cluster"), "{log}");
    assert!(
        log.contains(&data.display().to_string()),
        "the error names the directory: {log}"
    );
    assert_eq!(
        dir_fingerprint(&data),
        before,
        "the foreign data directory was changed"
    );
    assert!(
        late.agents[0].postmaster_pid().is_none(),
        "PostgreSQL was started on it"
    );
    eprintln!("test (e) took {:.1} s", t.elapsed().as_secs_f64());
}

/// Every file under `dir` with its size and modification time.
fn dir_fingerprint(dir: &std::path::Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                e.path().display().to_string(),
                (m.len(), m.modified().unwrap()),
            );
        }
    }
    out
}

/// (e) Config errors name the key and the file, for the agent and the CLI.
#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(
        &secrets,
        "superuser_password = \"a\"\nreplication_password = \"b\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let good = node_config(
        "demo",
        "http://127.0.0.1:1",
        "node1",
        &dir.path().join("node1"),
        25431,
        "127.0.0.1:28001",
        &secrets,
        26432,
        26433,
    );
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"node1\"", "name = \"Node 1\"", "member.name"),
        ("port = 25431", "port = \"x\"", "port"),
        (
            "host = \"127.0.0.1\"",
            "host = \"127.0.0.1\"\ncolour = \"red\"",
            "colour",
        ),
        ("ttl_ms = 3000", "ttl_ms = 10", "ttl_ms"),
        (
            "endpoints = [\"http://127.0.0.1:1\"]",
            "endpoints = []",
            "etcd.endpoints",
        ),
        (
            "api = \"127.0.0.1:28001\"",
            "api = \"localhost\"",
            "member.api",
        ),
        (
            "rw_listen = \"127.0.0.1:26432\"",
            "rw_listen = \"nowhere\"",
            "proxy.rw_listen",
        ),
    ];
    for (i, (from, to, key)) in cases.iter().enumerate() {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "case {key}");
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        for args in [vec!["agent"], vec!["status"]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
                .args(&args)
                .arg("--config")
                .arg(&file)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {key}: {err}");
            assert!(
                err.contains(key) && err.contains(&file.display().to_string()),
                "pgha {args:?}: the error should name {key} and {}: {err}",
                file.display()
            );
        }
    }
    // A missing secrets file is named too.
    let file = dir.path().join("nosecrets.toml");
    std::fs::write(&file, good.replace("secrets.toml", "missing.toml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["agent", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing.toml"),
        "{err}"
    );
}

/// `[watchdog] mode = "required"` on a host without a usable device: the member says why and
/// is never promoted (as Patroni's required mode), even when the leader's node crashes.
#[test]
fn a_required_watchdog_that_cannot_open_keeps_the_member_from_being_promoted() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options {
        members: 2,
        ..Options::default()
    });
    // A one-second watchdog needs a safety margin of at least two seconds.
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap();
        let text = text.replace("safety_margin_ms = 1000", "safety_margin_ms = 2000");
        std::fs::write(&a.config, text).unwrap();
    }
    let mut text = std::fs::read_to_string(&c.agents[1].config).unwrap();
    text.push_str("[watchdog]\nmode = \"required\"\ndevice = \"/nonexistent/watchdog\"\n");
    std::fs::write(&c.agents[1].config, text).unwrap();
    c.etcd.start();
    c.agents[0].start();
    wait_until("node1 primary", Duration::from_secs(60), || {
        c.agents[0].is_primary().then_some(())
    });
    c.agents[1].start();
    c.wait_converged(Duration::from_secs(60));
    let log = c.agents[1].log();
    assert!(
        log.contains("watchdog required but unusable") && log.contains("/nonexistent/watchdog"),
        "node2 must say why it will not be promoted:\n{log}"
    );
    let cluster = c.cluster_json().expect("GET /cluster");
    assert!(
        cluster.to_string().contains("\"nofailover\":true"),
        "node2 is published as not promotable: {cluster}"
    );
    c.agents[0].crash();
    // Three ttls (3 s each) later node2 has still not been promoted.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        assert!(
            !c.agents[1].is_primary(),
            "node2 promoted without its watchdog"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        c.agents[1].log().contains("nofailover") || c.agents[1].log().contains("not eligible"),
        "node2 says why it does not take over:\n{}",
        c.agents[1].log()
    );
}

/// A second `pgha agent` of a running member (its configuration copied with another REST API
/// address: an operator's start beside systemd's) is refused before it touches anything, and
/// says which process runs the member; that one goes on leading.
#[test]
fn a_second_agent_of_a_member_is_refused_while_the_first_runs() {
    let _serial = serial();
    let c = DistCluster::start(&Options {
        members: 1,
        ..Options::default()
    });
    let first = &c.agents[0];
    let config = std::fs::read_to_string(&first.config).unwrap();
    let own_api = format!("api = \"127.0.0.1:{}\"", pgha_testkit::free_port());
    let copy = c.root.join("second.toml");
    let moved = config.replace(&format!("api = \"{}\"", first.api), &own_api);
    assert_ne!(moved, config, "the copy has an API address of its own");
    std::fs::write(&copy, moved).unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"));
    second.args(["agent", "--config"]).arg(&copy);
    let Some((status, stderr)) = pgha_testkit::exit_within(second, Duration::from_secs(20)) else {
        panic!("a second agent of node1 kept running beside the first");
    };
    assert!(!status.success(), "{stderr}");
    let pid = first.pid().unwrap();
    assert!(
        stderr.contains(&format!("another pgha process (pid {pid}) runs the member"))
            && stderr.contains("member.dir"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(first.is_primary(), "{}", c.logs(20));
    let s = c.status_json();
    assert_eq!(s["leader"], "node1", "{s}");
}
