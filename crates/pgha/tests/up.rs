//! End-to-end tests of `pgha up`, `status` and `url` against real PostgreSQL.

mod common;

#[path = "up/restart.rs"]
mod restart;
#[path = "up/stalled.rs"]
mod stalled;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use pgha_testkit::{assert_read_only, connect, free_port, query_value, refused, succeeded};

const SYSTEM_ID: &str = "SELECT system_identifier::text FROM pg_control_system()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_and_standbys_refuse_writes() {
    let tmp = test_dir();
    let dir = tmp.path().join("demo");
    let up = UpProcess::start(&dir, 3);

    let status = up.status().unwrap();
    assert_eq!(status["leader"], "n1");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["host"], "127.0.0.1");
        assert!(m["port"].as_u64().unwrap() > 0);
        assert_eq!(m["timeline"], 1);
        assert!(m["lsn"].as_str().unwrap().contains('/'));
    }
    assert_eq!(members[1]["sync_state"], "async");
    // Issue 14: the version and system identifier, and who streams from whom.
    assert!(
        members[0]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("15."),
        "{status}"
    );
    assert_eq!(members[1]["upstream"], "n1", "{status}");
    let out = pgha(&["status", "--topology", "--dir", dir.to_str().unwrap()]);
    let tree = pgha_testkit::succeeded("pgha status --topology", &out);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], "n1 (primary, running)", "{tree}");
    assert!(lines[1].starts_with("├── n2 (standby, streaming"), "{tree}");
    assert!(lines[2].starts_with("└── n3 (standby, streaming"), "{tree}");
    assert!(members[1]["lag_bytes"].is_u64());

    // Settings pgha owns are in effect.
    let primary = connect(&up.url(None)).await;
    for (name, expected) in [
        ("wal_level", "replica"),
        ("wal_log_hints", "on"),
        ("data_checksums", "on"),
        ("password_encryption", "scram-sha-256"),
    ] {
        let row = primary
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "{name}");
    }
    // The replication role can replicate and nothing more.
    let row = primary
        .query_one(
            "SELECT rolreplication, rolsuper, rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = 'replicator'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (true, false, true, false)
    );
    // Each standby streams through its own slot, under its own application_name.
    let rows = primary
        .query(
            "SELECT application_name FROM pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["n2", "n3"]);
    let active: i64 = primary
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name IN ('n2','n3')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 2);

    primary
        .batch_execute("CREATE TABLE visits(id int PRIMARY KEY, who text); INSERT INTO visits VALUES (1, 'dba')")
        .await
        .unwrap();
    for standby in ["n2", "n3"] {
        let client = connect(&up.url(Some(standby))).await;
        let who: String = wait_row(&client, "SELECT who FROM visits WHERE id = 1").await;
        assert_eq!(who, "dba");
        assert_read_only(&client, "INSERT INTO visits VALUES (2, 'nope')").await;
    }

    // The password never appears inline in primary_conninfo, and the passfile is private.
    let conf = std::fs::read_to_string(dir.join("n2/data/pgha.conf")).unwrap();
    let secrets = std::fs::read_to_string(dir.join("secrets.toml")).unwrap();
    let replication_password = secret(&secrets, "replication_password");
    assert!(
        conf.contains("passfile=") && conf.contains("application_name=''n2''"),
        "{conf}"
    );
    assert!(!conf.contains(&replication_password));
    // Issue 11: the control API listens on loopback and changes nothing without the token
    // of the secrets file (the CLI sends it).
    let api = format!("http://127.0.0.1:{}", up.base + 2);
    let token = secret(&secrets, "api_token");
    assert!(token.len() >= 32, "a long random token");
    for given in [None, Some("wrong")] {
        let mut request = ureq::post(&format!("{api}/pause"));
        if let Some(t) = given {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        match request.send_json(serde_json::json!({})) {
            Err(ureq::Error::Status(code, _)) => assert_eq!(code, 401, "{given:?}"),
            other => panic!("POST /pause with token {given:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(
        ureq::get(&format!("{api}/cluster"))
            .call()
            .unwrap()
            .status(),
        200
    );
    let paused = pgha(&["pause", "--dir", dir.to_str().unwrap()]);
    assert!(paused.status.success(), "{}", stderr_of(&paused));
    let resumed = pgha(&["resume", "--dir", dir.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));

    // Issue 11: `pgha url` keeps the password out of the URI (and so out of the process list
    // of the psql it is given to): libpq reads it from the cluster's password file.
    let superuser_password = secret(&secrets, "superuser_password");
    let out = pgha(&["url", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!uri.contains(&superuser_password), "{uri}");
    assert!(uri.contains("passfile="), "{uri}");
    let psql = std::process::Command::new("psql")
        .args([uri.as_str(), "-Atc", "select 40 + 2"])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "42",
        "psql with {uri}: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let out = pgha(&["url", "--password", "--dir", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&superuser_password));

    // Issue 11: TLS on every connection pgha makes or configures. The URI verifies the
    // server's certificate (through the proxy, which passes TLS through), and on the primary
    // every walsender and every connection of pgha's agents and prober is encrypted.
    assert!(uri.contains("sslmode=verify-full"), "{uri}");
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([uri.as_str(), "-Atc", sql])
            .output()
            .unwrap();
        succeeded(&format!("psql {sql}"), &out)
    };
    assert_eq!(
        psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()").trim(),
        "t"
    );
    let sessions = pgha_testkit::wait_until(
        "walsenders and pgha's connections",
        Duration::from_secs(20),
        || {
            let text = psql(
                "select a.backend_type || ' ' || coalesce(nullif(a.application_name, ''), '-') \
             || ' ' || s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid) \
             where a.backend_type = 'walsender' or a.application_name like 'pgha%'",
            );
            let rows: Vec<String> = text.lines().map(String::from).collect();
            let count = |what: &str| rows.iter().filter(|r| r.contains(what)).count();
            (count("walsender") >= 2 && count(" pgha ") >= 1 && count("pgha-proxy-prober") >= 1)
                .then_some(rows)
        },
    );
    assert!(
        sessions.iter().all(|r| r.ends_with(" true")),
        "connections without TLS: {sessions:#?}"
    );

    use std::os::unix::fs::PermissionsExt;
    for file in ["secrets.toml", "pgpass"] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

/// The value of `key` in the text of a secrets file.
fn secret(secrets: &str, key: &str) -> String {
    let line = secrets
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in secrets.toml:\n{secrets}"));
    line.split('"').nth(1).expect("a quoted value").to_string()
}

async fn wait_row(client: &tokio_postgres::Client, sql: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(row)) = client.query_opt(sql, &[]).await {
            return row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "row never became visible: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_does_not_reinitialise() {
    let tmp = test_dir();
    let dir = tmp.path().join("again");
    let mut up = UpProcess::start(&dir, 2);
    let primary = connect(&up.url(None)).await;
    primary
        .batch_execute("CREATE TABLE kept(v text); INSERT INTO kept VALUES ('before restart')")
        .await
        .unwrap();
    let sysid: String = query_value(&primary, SYSTEM_ID).await;
    drop(primary);

    // The terminal it ran in closed (SIGHUP): it stops as for Ctrl-C or SIGTERM, cleanly,
    // rather than die leaving its standbys' PostgreSQL running with no agent.
    assert_eq!(
        up.stop_with(nix::sys::signal::Signal::SIGHUP),
        Some(0),
        "a hang-up must stop it cleanly, exit 0; log:\n{}",
        up.log()
    );
    assert!(up.log().contains("hung up"), "{}", up.log());
    for data in up.data_dirs() {
        assert!(
            !data.join("postmaster.pid").exists(),
            "{} still running after shutdown",
            data.display()
        );
    }
    let base = up.base;
    drop(up);
    // While it is stopped, a change is stored for the next start; PostgreSQL checks a
    // parameter first, here too (no member running to ask).
    let d = dir.to_str().unwrap();
    let bad = pgha(&["config", "set", "--dir", d, "postgresql.shared_bufers=1GB"]);
    let why = refused("a misspelt parameter, cluster stopped", &bad);
    assert!(
        why.contains("unrecognized configuration parameter"),
        "{why}"
    );
    let good = pgha(&["config", "set", "--dir", d, "postgresql.work_mem=8MB"]);
    assert!(good.status.success(), "{}", stderr_of(&good));
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(said.contains("applied at the next `pgha up`"), "{said}");

    let mut again = UpProcess::spawn(&dir, 2, base, &[]);
    again.wait_streaming(Duration::from_secs(60));
    let primary = connect(&again.url(None)).await;
    let v: String = query_value(&primary, "SELECT v FROM kept").await;
    assert_eq!(v, "before restart");
    let sysid2: String = query_value(&primary, SYSTEM_ID).await;
    assert_eq!(sysid, sysid2, "the cluster was re-initialised");
    let work_mem: String = query_value(&primary, "SHOW work_mem").await;
    assert_eq!(work_mem, "8MB", "the change made while stopped");
    // The member with the primary's data gets the leader key before the agents start
    // (core::restart::seed_leader): no election, no promotion, the same timeline.
    let status = again.status().unwrap();
    assert_eq!(status["leader"], "n1", "{status}");
    for m in status["members"].as_array().unwrap() {
        assert_eq!(m["timeline"], 1, "a restart promoted someone: {status}");
    }
    let standby = connect(&again.url(Some("n2"))).await;
    assert_eq!(
        wait_row(&standby, "SELECT v FROM kept").await,
        "before restart"
    );
    assert!(
        !again.log().contains("initdb"),
        "second up ran initdb:\n{}",
        again.log()
    );

    // A second `up` on the same directory is refused while the first runs.
    let out = pgha(&["up", "--dir", dir.to_str().unwrap()]);
    let why = refused("a second up", &out);
    assert!(why.contains("already running"), "{why}");

    // Nor may a `pgha agent` run one of its members beside it: `pgha up` is that member's
    // agent, and holds its lock. The agent stops before it binds its API or reaches etcd.
    let config = tmp.path().join("n1-agent.toml");
    std::fs::write(
        &config,
        format!(
            "insecure_no_tls = true\n[cluster]\nname = \"again\"\n\
             [etcd]\nendpoints = [\"127.0.0.1:1\"]\n\
             [member]\nname = \"n1\"\ndir = \"{member}\"\nhost = \"127.0.0.1\"\n\
             port = {port}\napi = \"127.0.0.1:{api}\"\n\
             [secrets]\nfile = \"{secrets}\"\n",
            member = dir.join("n1").display(),
            port = free_port(),
            api = free_port(),
            secrets = dir.join("secrets.toml").display(),
        ),
    )
    .unwrap();
    let mut agent = std::process::Command::new(pgha_bin());
    agent.args(["agent", "--config"]).arg(&config);
    let Some((status, stderr)) = pgha_testkit::exit_within(agent, Duration::from_secs(20)) else {
        panic!("a `pgha agent` of n1 kept running beside `pgha up`");
    };
    assert!(!status.success(), "{stderr}");
    let pid = again.pid().unwrap();
    assert!(
        stderr.contains(&format!("another pgha process (pid {pid}) runs the member"))
            && stderr.contains("n1.agent"),
        "{stderr}"
    );
    let status = again.status().unwrap();
    assert_eq!(status["leader"], "n1", "{status}");
}

/// Issue 11: `--proxy-tls terminate` makes the proxy present its own certificate from the
/// cluster CA (name `pgha-proxy` and the cluster's address), so clients verify one name for the
/// cluster whichever member serves them; `pgha url` gives a URI that verifies it. `require`
/// refuses clients without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_proxy_is_verified_by_its_own_name() {
    let tmp = test_dir();
    let dir = tmp.path().join("terminating");
    let d = dir.to_str().unwrap();
    let mut up = UpProcess::spawn(&dir, 2, free_base_port(2), &["--proxy-tls", "require"]);
    up.wait_streaming(Duration::from_secs(90));
    let config = std::fs::read_to_string(dir.join("pgha.toml")).unwrap();
    assert!(config.contains("proxy_tls = \"require\""), "{config}");

    let out = pgha(&["url", "--dir", d]);
    let uri = succeeded("pgha url", &out).trim().to_string();
    assert!(!uri.contains("channel_binding"), "{uri}");
    let psql = |conninfo: &str| {
        std::process::Command::new("psql")
            .args([conninfo, "-Atc", "select 40 + 2"])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap()
    };
    let out = psql(&uri);
    assert_eq!(succeeded(&format!("psql {uri}"), &out).trim(), "42");

    // Only the proxy's certificate names `pgha-proxy`: through a passthrough proxy this
    // connection would meet a member's certificate and fail verification. SCRAM is bound to
    // the proxy's certificate (the proxy authenticates the role itself).
    let ca = dir.join("tls/ca.crt");
    let passfile = dir.join("pgpass");
    let by_name = format!(
        "host=pgha-proxy hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={} passfile={} channel_binding=require",
        up.base,
        ca.display(),
        passfile.display()
    );
    let out = psql(&by_name);
    assert_eq!(succeeded(&format!("psql {by_name}"), &out).trim(), "42");

    // require: a client without TLS is refused, naming why.
    let plain = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable passfile={}",
        up.base,
        passfile.display()
    );
    let out = psql(&plain);
    assert!(!out.status.success(), "a client without TLS got in");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.to_lowercase().contains("tls") || err.contains("SSL"),
        "{err}"
    );

    // The mode is kept: a later `up` with another --proxy-tls is refused.
    assert_eq!(up.terminate(), Some(0), "{}", up.log());
    let out = pgha(&["up", "--dir", d, "--proxy-tls", "passthrough"]);
    let why = refused("another --proxy-tls", &out);
    assert!(why.contains("--proxy-tls"), "{why}");
}
