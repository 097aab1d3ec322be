//! etcd with its own authentication on: pgha as an etcd user whose role reads and writes the
//! cluster's prefix alone.

use super::*;

use pgha_testkit::etcd_auth::enable_auth;

const ETCD_USER: &str = "pgha";
const ETCD_PASSWORD: &str = "etcd-secret-0042";

/// `[etcd] user` in every host's config, and `etcd_password = password` in the secrets file.
fn use_etcd_user(c: &DistCluster, password: &str) {
    for a in &c.agents {
        let config = std::fs::read_to_string(&a.config).unwrap();
        let with_user = config.replace("[etcd]\n", &format!("[etcd]\nuser = \"{ETCD_USER}\"\n"));
        assert_ne!(config, with_user);
        std::fs::write(&a.config, with_user).unwrap();
    }
    set_etcd_password(c, Some(password));
}

/// The secrets file's `etcd_password`: set to `password`, or removed.
fn set_etcd_password(c: &DistCluster, password: Option<&str>) {
    let file = c.root.join("secrets.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut kept: String = text
        .lines()
        .filter(|l| !l.starts_with("etcd_password"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(p) = password {
        kept.push_str(&format!("etcd_password = \"{p}\"\n"));
    }
    std::fs::write(&file, kept).unwrap();
}

/// etcd with authentication on (a root user, and `pgha` granted `/pgha/demo/` alone): an
/// agent without a user, or with a wrong password, stops at once naming what to set and
/// where (not waiting as for an unreachable etcd); with the right one the cluster bootstraps,
/// the CLI reads it, an etcd restart (which forgets every token) is lived through and a
/// switchover and a failover after it run as usual.
#[test]
fn a_cluster_on_an_etcd_with_users_runs_and_outlives_an_etcd_restart() {
    let _serial = serial();
    let t = Instant::now();
    let mut c = DistCluster::prepare(&Options::default());
    c.etcd.start();
    enable_auth(&c.etcd.endpoint(), ETCD_USER, ETCD_PASSWORD, "/pgha/demo/");

    // No user given: etcd answers "user name is empty"; the agent says what to set.
    c.agents[0].start();
    let status = c.agents[0]
        .wait_exit(Duration::from_secs(20))
        .expect("an agent without an etcd user must stop");
    let log = c.agents[0].log();
    let config = c.agents[0].config.display().to_string();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("user name is empty") && log.contains("etcd.user") && log.contains(&config),
        "{log}"
    );

    // A wrong password: refused, naming the user, both keys and both files.
    use_etcd_user(&c, "not-the-password");
    c.agents[0].start();
    let status = c.agents[0]
        .wait_exit(Duration::from_secs(20))
        .expect("an agent whose etcd password is wrong must stop");
    let log = c.agents[0].log();
    assert!(!status.success(), "{log}");
    let secrets = c.root.join("secrets.toml").display().to_string();
    for said in ["\"pgha\"", "etcd.user", "etcd_password", &config, &secrets] {
        assert!(log.contains(said), "the refusal names {said}: {log}");
    }
    assert!(!c.agents[0].data_dir().exists(), "initdb ran anyway");

    set_etcd_password(&c, Some(ETCD_PASSWORD));
    for a in &mut c.agents {
        a.start();
    }
    let leader = c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    // An etcd whose stalled leader may revoke leases kept alive elsewhere is named at start.
    let version = etcd_version();
    let warned = c.agents[0].log().contains("etcd-io/etcd#15247");
    assert_eq!(
        warned,
        pgha_store::etcd::server_version::revokes_leases_after_a_stall(&version),
        "etcd {version}: {}",
        c.agents[0].log()
    );
    let status = c.status_json();
    assert_eq!(status["leader"], leader.as_str(), "{status}");

    // etcd keeps tokens in memory: restarted, it knows none of the agents' tokens.
    c.etcd.terminate();
    c.etcd.start();
    let leader = c.wait_converged(Duration::from_secs(30));
    // A leader that took its lease again after the restart refuses a request made before:
    // asked again, as its refusal says.
    // Named, as this test is about etcd's users, not the choice of a target (a switchover
    // naming none: `distributed::untargeted_switchover`).
    let to = another_member(&c, &leader);
    wait_until("a switchover", Duration::from_secs(30), || {
        let asked = Instant::now();
        let out = c.cli(&["switchover", "--to", &to]);
        if !out.status.success() {
            // what it said, should this ever take longer than it may
            eprintln!(
                "`pgha switchover` after {:.1} s: {}: {}{}",
                asked.elapsed().as_secs_f64(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success().then_some(())
    });
    let after_switchover = c.wait_converged(Duration::from_secs(30));
    assert_ne!(after_switchover, leader, "the switchover moved the leader");

    let crashed = c.index(&after_switchover);
    c.agents[crashed].crash();
    wait_until("a failover", Duration::from_secs(30), || {
        let primaries = c.primaries();
        (primaries.len() == 1 && primaries[0] != after_switchover).then_some(())
    });
    c.agents[crashed].start();
    let last = c.wait_converged(Duration::from_secs(60));
    assert_ne!(last, after_switchover);
    assert!(
        !c.whole_logs().contains("invalid auth token"),
        "a token etcd forgot was not replaced:\n{}",
        c.logs(40)
    );
    eprintln!("took {:.1} s", t.elapsed().as_secs_f64());
}

/// The version `etcd --version` prints, e.g. "3.4.23".
fn etcd_version() -> String {
    let out = std::process::Command::new(pgha_testkit::etcd_binary())
        .arg("--version")
        .output()
        .expect("etcd --version");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    said.lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or_else(|| panic!("no version in {said}"))
        .trim()
        .to_string()
}
