//! TLS in distributed mode (issue 11): certificates made with `pgha tls`, every replication
//! and pgha connection encrypted, and a fake member written into etcd never receives the
//! superuser password (it cannot prove a name with a certificate from the cluster CA).

#[path = "common/dist.rs"]
mod dist;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dist::AgentSet;
use pgha_store::Store;
use pgha_testkit::succeeded;
use serde_json::Value;

fn pgha(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .output()
        .unwrap();
    succeeded(&format!("pgha {args:?}"), &out);
}

/// A certificate from the cluster CA in `dir`: `pgha tls KIND` (member or proxy) for `name`,
/// reached at 127.0.0.1.
fn issue(dir: &str, kind: &str, name: &str) {
    pgha(&[
        "tls",
        kind,
        "--dir",
        dir,
        "--name",
        name,
        "--host",
        "127.0.0.1",
    ]);
}

/// A cluster prepared (not started) whose CA and agents' certificates `pgha tls` made in
/// `<root>/tls`, each agent's config naming its own; and that directory.
fn prepare_with_tls() -> (dist::DistCluster, PathBuf) {
    let c = dist::DistCluster::prepare(&dist::Options::default());
    let dir = c.root.join("tls");
    let d = dir.to_str().unwrap();
    pgha(&["tls", "ca", "--dir", d]);
    for a in &c.agents {
        issue(d, "member", &a.name);
        // The fixture's hosts run without TLS, saying so; these get a [tls] section instead.
        let text = std::fs::read_to_string(&a.config).unwrap();
        let text = text.replacen("insecure_no_tls = true\n", "", 1);
        std::fs::write(
            &a.config,
            format!(
                "{text}\n[tls]\nca_file = \"{d}/ca.crt\"\ncert_file = \"{d}/{n}.crt\"\nkey_file = \"{d}/{n}.key\"\n",
                n = a.name
            ),
        )
        .unwrap();
    }
    (c, dir)
}

/// A server that says it is PostgreSQL: it declines TLS, and to a startup message it answers
/// with a request for a clear-text password. It records what it was sent.
fn fake_postgres() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut len = [0u8; 4];
                while conn.read_exact(&mut len).is_ok() {
                    let n = u32::from_be_bytes(len) as usize;
                    let mut body = vec![0u8; n.saturating_sub(4)];
                    if conn.read_exact(&mut body).is_err() {
                        return;
                    }
                    if body.get(..4) == Some(&80877103u32.to_be_bytes()[..]) {
                        record.lock().unwrap().push("ssl request".into());
                        let _ = conn.write_all(b"N");
                        continue;
                    }
                    record.lock().unwrap().push("startup".into());
                    // AuthenticationCleartextPassword, then read the password message.
                    let _ = conn.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
                    let mut tag = [0u8; 1];
                    if conn.read_exact(&mut tag).is_ok() && tag[0] == b'p' {
                        record.lock().unwrap().push("password".into());
                    }
                    return;
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn replication_and_pgha_connections_use_tls_and_a_fake_member_gets_no_password() {
    let (mut c, _) = prepare_with_tls();
    c.launch();
    let leader = c.wait_converged(Duration::from_secs(60));
    let primary = c.agent(&leader);

    // Every walsender and every connection of the agents is encrypted.
    let sql = "select a.backend_type || ' ' || coalesce(nullif(a.application_name, ''), '-') \
               || ' ' || s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid) \
               where a.backend_type = 'walsender' or a.application_name like 'pgha%'";
    let sessions = dist::wait_until(
        "two walsenders and a pgha connection",
        Duration::from_secs(30),
        || {
            let rows = pgha_testkit::pg::run_sql(&primary.conninfo(), sql).ok()?;
            let rows: Vec<String> = rows.into_iter().filter_map(|r| r[0].clone()).collect();
            let count = |what: &str| rows.iter().filter(|r| r.contains(what)).count();
            (count("walsender") >= 2 && count(" pgha ") >= 1).then_some(rows)
        },
    );
    assert!(
        sessions.iter().all(|r| r.ends_with(" true")),
        "connections without TLS: {sessions:#?}"
    );

    // A fake member written into etcd (as anyone who can write to etcd could) is probed by
    // `pgha status`, and never receives the password.
    let (fake_port, seen) = fake_postgres();
    let cluster = c.cluster_json().unwrap();
    let mut record: Value = cluster["members"][leader.as_str()].clone();
    record["in_recovery"] = Value::Bool(true);
    record["streaming_from"] = Value::String(leader.clone());
    record["addresses"]["postgres"] = Value::String(format!("127.0.0.1:{fake_port}"));
    record["addresses"].as_object_mut().unwrap().remove("api");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            pgha_store::EtcdStore::connect(&[c.etcd.endpoint()], "demo", Duration::from_secs(2))
                .await
                .unwrap();
        store
            .put_member("evil", &record.to_string(), pgha_core::Ttl::from_secs(60))
            .await
            .unwrap();
    });
    let status = c.status_json();
    let evil = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "evil")
        .unwrap_or_else(|| panic!("the fake member is not even probed: {status}"))
        .clone();
    assert!(evil["error"].is_string(), "{evil}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the fake member was never contacted");
    assert!(
        !seen.iter().any(|e| e == "password" || e == "startup"),
        "the fake member got as far as: {seen:?}"
    );

    // Found by review: with TLS to an IP address a standby's conninfo names its upstream as
    // `host` (checked against its certificate) and the IP as `hostaddr`, and PostgreSQL reports
    // that name as the WAL sender: it matched no member's address, so an agent restarted
    // beside a streaming standby never learned whom it streams from. In maintenance mode
    // (nothing reconfigures the standby, from which it would learn it) its record said nobody,
    // and a switchover to it was refused.
    c.cli_ok(&["pause"]);
    let standby = c
        .agents
        .iter()
        .find(|a| a.name != leader)
        .unwrap()
        .name
        .clone();
    let postmaster = c.agent(&standby).postmaster_pid();
    c.agent_mut(&standby).kill();
    rt.block_on(async {
        let store =
            pgha_store::EtcdStore::connect(&[c.etcd.endpoint()], "demo", Duration::from_secs(2))
                .await
                .unwrap();
        store.delete_member(&standby).await.unwrap();
    });
    c.agent_mut(&standby).start();
    let upstream = || {
        let cluster = c.cluster_json()?;
        let record = cluster["members"].get(standby.as_str())?.clone();
        Some(record["streaming_from"].clone())
    };
    let first = dist::wait_until(
        "the restarted agent's record",
        Duration::from_secs(30),
        upstream,
    );
    let settled =
        pgha_testkit::wait::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            (upstream()? == Value::String(leader.clone())).then_some(())
        });
    assert!(
        settled.is_some(),
        "{standby}'s record names no upstream after its agent restarted (first: {first}, now: \
         {:?})\n{}",
        upstream(),
        c.logs(40)
    );
    assert_eq!(
        c.agent(&standby).postmaster_pid(),
        postmaster,
        "{standby} restarted"
    );
    c.cli_ok(&["resume"]);
}

/// etcd over TLS with `--client-cert-auth`: the agents and the CLI reach it with their member
/// certificates (`[etcd] ca_file, cert_file, key_file`); a client without one is refused.
#[test]
fn etcd_over_tls_requires_the_members_certificates() {
    let (mut c, dir) = prepare_with_tls();
    let d = dir.to_str().unwrap();
    issue(d, "member", "etcd");
    let mut node = c.etcd.node.clone();
    node.tls = Some(pgha_testkit::EtcdTls {
        cert_file: dir.join("etcd.crt"),
        key_file: dir.join("etcd.key"),
        ca_file: dir.join("ca.crt"),
        metrics: format!("127.0.0.1:{}", pgha_testkit::free_port()),
    });
    let plain = c.etcd.endpoint();
    let secure = node.endpoint();
    c.etcd = pgha_testkit::EtcdServer::new(node, &c.root.join("etcd-tls"));
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap();
        let with_tls = text.replace(
            &format!("endpoints = [\"{plain}\"]"),
            &format!(
                "endpoints = [\"{secure}\"]\nca_file = \"{d}/ca.crt\"\ncert_file = \"{d}/{n}.crt\"\nkey_file = \"{d}/{n}.key\"",
                n = a.name
            ),
        );
        assert_ne!(
            text,
            with_tls,
            "no etcd endpoint line in {}",
            a.config.display()
        );
        std::fs::write(&a.config, with_tls).unwrap();
    }
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    let out = c.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");

    // Without a client certificate (TLS only), etcd refuses.
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let access = pgha_store::EtcdAccess {
            ca_pem: Some(ca),
            ..Default::default()
        };
        match pgha_store::EtcdStore::connect_with(
            std::slice::from_ref(&secure),
            "demo",
            Duration::from_secs(2),
            &access,
        )
        .await
        {
            Ok(store) => store.snapshot().await.is_err(),
            Err(_) => true,
        }
    });
    assert!(refused, "etcd answered a client without a certificate");
}

/// `[tls] api = true`: the agents' REST API speaks HTTPS with the member certificates. The CLI
/// reaches it over HTTPS, plain HTTP gets nothing, and the leader keeps its lease through an
/// etcd outage longer than it may trust the lease alone: the others' failsafe confirmations
/// travel over HTTPS too.
#[test]
fn the_api_speaks_https_and_the_failsafe_travels_over_it() {
    let (mut c, _) = prepare_with_tls();
    for a in &c.agents {
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(&a.config)
            .unwrap();
        writeln!(config, "api = true").unwrap();
    }
    c.launch();
    // Converged, as the CLI sees it over HTTPS.
    let status = |c: &dist::DistCluster| -> Option<Value> {
        let out = c.cli(&["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    };
    let converged = |s: &Value| -> Option<String> {
        let members = s["members"].as_array()?;
        let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
        (members.len() == 3 && streaming == 2 && s["leader"].is_string())
            .then(|| s["leader"].as_str().unwrap().to_string())
    };
    let leader = dist::wait_until("convergence over HTTPS", Duration::from_secs(60), || {
        converged(&status(&c)?)
    });
    let api = c.agent(&leader).api.clone();
    assert!(
        dist::http("GET", &api, "/health", None, None).is_none(),
        "the API answered plain HTTP"
    );
    let started = "SELECT pg_postmaster_start_time()::text";
    let conninfo = c.agent(&leader).conninfo();
    let before = pgha_testkit::pg::run_sql(&conninfo, started).unwrap();

    // etcd down for longer than the leader trusts its lease alone (ttl - margin = 2 s).
    c.etcd.terminate();
    std::thread::sleep(Duration::from_millis(3500));
    c.etcd.start();
    let s = dist::wait_until("convergence after etcd", Duration::from_secs(30), || {
        status(&c).filter(|s| converged(s).is_some())
    });
    assert_eq!(s["leader"], leader.as_str(), "the leader changed: {s}");
    assert_eq!(
        pgha_testkit::pg::run_sql(&conninfo, started).unwrap(),
        before,
        "{leader}'s PostgreSQL was restarted (demoted)"
    );
    let log = c.agent(&leader).log();
    assert!(
        log.contains("every member confirmed this leader"),
        "no failsafe confirmation over HTTPS in {leader}'s log:\n{log}"
    );
}

/// Issue 11: `pgha proxy` with `[proxy.tls]` terminates clients' TLS with the certificate
/// `pgha tls proxy` issued (clients verify one name for the cluster, here db.cluster.test),
/// and reaches the members over TLS verified with the cluster CA.
#[test]
fn the_standalone_proxy_terminates_tls_with_its_own_certificate() {
    let (mut c, tls) = prepare_with_tls();
    let t = tls.to_str().unwrap();
    issue(t, "proxy", "db.cluster.test");
    let proxy_config = c.root.join("proxy.toml");
    let metrics = format!("127.0.0.1:{}", pgha_testkit::free_port());
    let agent_config = std::fs::read_to_string(&c.agents[0].config).unwrap();
    std::fs::write(
        &proxy_config,
        format!(
            "{}\n[proxy.tls]\ncert_file = \"{t}/db.cluster.test.crt\"\nkey_file = \"{t}/db.cluster.test.key\"\nrequire = true\n",
            agent_config.replacen("[proxy]\n", &format!("[proxy]\nmetrics_listen = \"{metrics}\"\n"), 1)
        ),
    )
    .unwrap();
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    let log = std::fs::File::create(c.root.join("proxy.log")).unwrap();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["proxy", "--config", proxy_config.to_str().unwrap()])
        .stderr(log)
        .spawn()
        .unwrap();
    let conninfo = format!(
        "host=db.cluster.test hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         password={} sslmode=verify-full sslrootcert={t}/ca.crt channel_binding=require \
         connect_timeout=2",
        c.proxy_rw,
        dist::SUPERUSER_PASSWORD
    );
    let answer = dist::wait_until("a query through the proxy", Duration::from_secs(30), || {
        let out = Command::new("psql")
            .args([conninfo.as_str(), "-Atc", "select pg_is_in_recovery()"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    assert_eq!(answer, "f", "the read-write entry point reached a standby");
    // require = true: a client without TLS is refused.
    let plain = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres password={} sslmode=disable",
        c.proxy_rw,
        dist::SUPERUSER_PASSWORD
    );
    let out = Command::new("psql")
        .args([plain.as_str(), "-Atc", "select 1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a client without TLS got in");
    // Issue 14: the standalone proxy exports its counters too.
    let (code, text) = pgha_testkit::http("GET", &metrics, "/metrics", None, None).unwrap();
    assert_eq!(code, 200, "{text}");
    let counter = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    };
    assert!(counter("pgha_proxy_tls_terminated_total") >= 1.0, "{text}");
    assert!(counter("pgha_proxy_scram_by_proxy_total") >= 1.0, "{text}");
    // Issue 13: `pgha chaos --config` writes through the terminating proxy too (verified at
    // its address) beside the multi-host route, and a switchover under TLS loses nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["chaos", "--config", proxy_config.to_str().unwrap()])
        .args(["--rounds", "1", "--faults", "switchover", "--seed", "1"])
        .args(["--min-gap", "1s", "--max-gap", "1s", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let j: Value = serde_json::from_str(&stdout).unwrap();
    let routes = j["settings"]["write_routes"].as_array().unwrap();
    assert_eq!(
        routes[0].as_str(),
        Some(format!("entry 127.0.0.1:{}", c.proxy_rw).as_str()),
        "{stderr}"
    );
    assert!(
        routes[1].as_str().unwrap().starts_with("multi-host"),
        "{routes:?}"
    );
    assert!(j["writes_acknowledged"].as_u64().unwrap() > 0, "{stderr}");
    pgha_testkit::process::stop_child(
        &mut proxy,
        nix::sys::signal::Signal::SIGTERM,
        Duration::from_secs(10),
    );
}
