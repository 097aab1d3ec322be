//! Client programs run by the tests (psql, psycopg 3), among them those of the cancel tests:
//! tests/cancel_clients.py, psql's Ctrl-C and `\conninfo`, and the check that each cancel ended
//! its statement in time.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use pgha_testkit::free_port;
use serde_json::{json, Value};

use super::{conninfo, test_python};

/// A statement must end this soon after the cancel was asked for.
pub const CANCEL_WITHIN: Duration = Duration::from_secs(2);

pub struct Case {
    pub name: String,
    pub dsn: String,
    pub monitor: String,
    pub api: &'static str,
    pub wrong_key_first: bool,
}

pub fn direct(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable")
}

pub fn case(
    listener: &str,
    proxy: std::net::SocketAddr,
    backend_port: u16,
    extra: &str,
    api: &'static str,
) -> Case {
    Case {
        name: format!("{listener} {api} {extra}"),
        dsn: format!("{} {extra}", conninfo(proxy)),
        monitor: direct(backend_port),
        api,
        wrong_key_first: false,
    }
}

/// `program` as a libpq client that takes none of this environment's PGHOST, PGPORT, PGSSLMODE,
/// PGCHANNELBINDING, PGPASSWORD (a test names what it connects with); killed when dropped.
pub fn libpq_client(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGSSLMODE",
        "PGCHANNELBINDING",
        "PGPASSWORD",
    ] {
        c.env_remove(var);
    }
    c.kill_on_drop(true);
    c
}

/// Runs `cmd` to its end; panics naming `what` when it could not start or took over `limit`.
pub async fn finish(mut cmd: tokio::process::Command, limit: Duration, what: &str) -> Output {
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {limit:?}"))
        .unwrap_or_else(|e| panic!("run {what}: {e}"))
}

/// Like [`finish`], but what the program printed before `limit` is in the panic message when
/// it runs over (which case of a script hung, and what it said).
pub async fn finish_telling(
    mut cmd: tokio::process::Command,
    limit: Duration,
    what: &str,
) -> Output {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {what}: {e}"));
    let collect = |mut from: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (seen, task)
    };
    let (stdout, out_task) = collect(Box::new(child.stdout.take().unwrap()));
    let (stderr, err_task) = collect(Box::new(child.stderr.take().unwrap()));
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).to_string();
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => {
            let status = status.unwrap_or_else(|e| panic!("wait for {what}: {e}"));
            let _ = tokio::join!(out_task, err_task);
            Output {
                status,
                stdout: stdout.lock().unwrap().clone(),
                stderr: stderr.lock().unwrap().clone(),
            }
        }
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "{what} did not finish in {limit:?}; it printed:\n{}\nstderr:\n{}",
                text(&stdout),
                text(&stderr)
            )
        }
    }
}

/// psql from `bin` through `dsn` with `-X` and `args` (30 s at most).
pub async fn psql_run(bin: &Path, dsn: &str, args: &[&str]) -> Output {
    let mut cmd = libpq_client(bin.join("psql"));
    cmd.arg(dsn).arg("-X").args(args);
    finish(cmd, Duration::from_secs(30), "psql").await
}

/// The standard output of a program that must have succeeded (else its standard error).
pub fn stdout_of_success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs tests/cancel_clients.py over `cases`; returns its header (libpq version) and reports.
pub async fn run_clients(cases: &[Case]) -> (Value, Vec<Value>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cancel_clients.py");
    let config = json!({
        "cases": cases.iter().map(|c| json!({
            "name": c.name, "dsn": c.dsn, "monitor": c.monitor, "api": c.api,
            "wrong_key_first": c.wrong_key_first,
        })).collect::<Vec<_>>()
    });
    let mut cmd = libpq_client(test_python());
    cmd.arg(script).arg(config.to_string());
    let out = finish_telling(cmd, Duration::from_secs(180), "cancel_clients.py").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cancel_clients.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let head = lines.next().expect("header line");
    let reports: Vec<Value> = lines.collect();
    assert_eq!(reports.len(), cases.len(), "{stdout}");
    eprintln!("{stdout}");
    (head, reports)
}

/// Every case's statement was running, and ended by the cancel (57014) within `CANCEL_WITHIN`;
/// a wrong key sent first had cancelled nothing.
pub fn check(cases: &[Case], reports: &[Value]) {
    let mut failures = Vec::new();
    for (c, r) in cases.iter().zip(reports) {
        let ok = r.get("error").is_none()
            && r["started"] == json!(true)
            && r["sqlstate"] == json!("57014")
            && r["seconds"]
                .as_f64()
                .is_some_and(|s| s < CANCEL_WITHIN.as_secs_f64())
            && (!c.wrong_key_first || r["after_wrong_key_running"] == json!(true));
        if !ok {
            failures.push(r.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cancels failed:\n{}",
        failures.len(),
        reports.len(),
        failures.join("\n")
    );
}

/// Runs `select pg_sleep(30)` in psql (from `bin`), interrupts it once the backend runs it as
/// Ctrl-C would, and returns how long the statement took to end after that, and psql's stderr.
pub async fn psql_ctrl_c(bin: &Path, dsn: &str, monitor_port: u16) -> (Duration, String) {
    let app = format!("cancel-test-{}", free_port());
    let child = libpq_client(bin.join("psql"))
        .arg(format!("{dsn} application_name={app}"))
        .args(["-X", "-c", "select pg_sleep(30)"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn psql");
    let monitor = connect_direct(monitor_port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = monitor
            .query_one(
                "select count(*) from pg_stat_activity where application_name = $1 \
                 and state = 'active' and query like '%pg_sleep%'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "psql's statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let pid = child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGINT) };
    // A lost cancel leaves the statement running: stop waiting (and psql) after 5 s.
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await;
    let took = asked.elapsed();
    match out {
        Ok(out) => (
            took,
            String::from_utf8_lossy(&out.unwrap().stderr).to_string(),
        ),
        Err(_) => {
            let stop =
                "select pg_cancel_backend(pid) from pg_stat_activity where application_name = $1";
            monitor.execute(stop, &[&app]).await.unwrap();
            (took, "(still running 5 s after Ctrl-C)".into())
        }
    }
}

pub async fn connect_direct(port: u16) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&direct(port), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// psql's `\conninfo` through `dsn`.
pub async fn psql_conninfo(bin: &Path, dsn: &str) -> String {
    stdout_of_success(&psql_run(bin, dsn, &["-c", "\\conninfo"]).await)
}

/// Whether psql 18's `\conninfo` table has the row `name | value`.
pub fn conninfo_row(info: &str, name: &str, value: &str) -> bool {
    info.lines()
        .any(|l| l.split('|').map(str::trim).eq([name, value]))
}

/// psql from `bin` with `conninfo`, `password` and these `-c` commands: (success, stdout,
/// stderr, time).
pub async fn psql_as(
    bin: &Path,
    conninfo: &str,
    password: &str,
    commands: &[&str],
) -> (bool, String, String, Duration) {
    let mut cmd = libpq_client(bin.join("psql"));
    cmd.arg(conninfo).args(["-X", "-At"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.env("PGPASSWORD", password);
    let started = Instant::now();
    let out = finish(cmd, Duration::from_secs(30), "psql").await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    (out.status.success(), stdout, stderr, started.elapsed())
}
