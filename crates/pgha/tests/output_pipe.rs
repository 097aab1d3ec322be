//! What pgha writes, and where: log lines without terminal colours in files and pipes, JSON
//! log lines (`--log-format json`), and a `pgha up` whose output pipe closes still stops
//! every member on Ctrl-C (no panic on EPIPE, exit code not 101).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::pgha_bin;

/// A node config whose etcd does not answer (a closed port), with its secrets file: `pgha
/// status --config` on it logs a warning at once and then fails, without PostgreSQL or etcd.
fn unreachable_node(dir: &Path) -> String {
    let secrets = dir.join("secrets.toml");
    std::fs::write(
        &secrets,
        "superuser_password = \"su-secret-4711\"\nreplication_password = \"repl-secret-42\"\napi_token = \"test-token-0815-4711-0042\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let closed = pgha_testkit::free_port();
    let api = pgha_testkit::free_port();
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        format!(
            r#"insecure_no_tls = true
[cluster]
name = "logs"
[etcd]
endpoints = ["http://127.0.0.1:{closed}"]
timeout_ms = 200
[member]
name = "n1"
dir = "{dir}/n1"
host = "127.0.0.1"
port = 5432
api = "127.0.0.1:{api}"
[secrets]
file = "{secrets}"
"#,
            dir = dir.display(),
            secrets = secrets.display(),
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// `pgha status --config FILE` plus `extra` arguments, with stderr to a file (not a
/// terminal), plus `env`: its output and what it logged.
fn status_logging_to_file(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let config = unreachable_node(dir);
    let log = dir.join("stderr.log");
    let out = Command::new(pgha_bin())
        .args(["status", "--config", &config])
        .args(extra)
        .env_remove("PGHA_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env("PGHA_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .expect("run pgha status");
    (out, std::fs::read_to_string(&log).unwrap())
}

/// Log lines written to a file carry no ANSI escape codes (they did: colours were on
/// whatever stderr was).
#[test]
fn no_colours_in_a_log_file() {
    let tmp = common::test_dir();
    let (out, log) = status_logging_to_file(tmp.path(), &[], &[]);
    assert!(!out.status.success(), "etcd and the agent are unreachable");
    assert!(log.contains("WARN"), "the warning is logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "an ESC byte in the log file: {log:?}"
    );
}

/// `--log-format json` (or PGHA_LOG_FORMAT=json): every line on stderr is a JSON object,
/// the final error too.
#[test]
fn json_log_lines_parse() {
    for env in [&[][..], &[("PGHA_LOG_FORMAT", "json")][..]] {
        let tmp = common::test_dir();
        let flag: &[&str] = if env.is_empty() {
            &["--log-format=json"]
        } else {
            &[]
        };
        let (out, log) = status_logging_to_file(tmp.path(), flag, env);
        assert!(!out.status.success());
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.len() >= 2, "a warning and the error: {log}");
        let mut levels = Vec::new();
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
            levels.push(v["level"].as_str().unwrap_or_default().to_string());
            assert!(v["fields"]["message"].is_string(), "{line}");
        }
        assert!(levels.contains(&"WARN".to_string()), "{levels:?}");
        assert_eq!(levels.last().map(String::as_str), Some("ERROR"), "{log}");
        assert!(!log.contains('\u{1b}'), "{log:?}");
    }
}

/// `pgha up ... 2>&1 | tee up.log`, then Ctrl-C (which ends `tee` too): pgha's output pipe has
/// no reader any more. It used to panic on the first write (exit 101) and leave every
/// PostgreSQL running; the shutdown must run whatever the output does.
#[test]
fn up_stops_every_member_when_its_output_pipe_closed() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    use nix::sys::signal::Signal;
    use pgha_testkit::{alive, poll, postmaster_pid, serial, stop_child};

    let _serial = serial();
    let tmp = common::test_dir();
    let dir = tmp.path().join("ha");
    let data_dirs: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| dir.join(n).join("data"))
        .collect();
    // Whatever happens below, no PostgreSQL outlives the test.
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for data in &self.0 {
                pgha_testkit::stop_postmaster(data);
            }
        }
    }
    let _cleanup = Cleanup(data_dirs.clone());

    // Close-on-exec: the reader's end must not leak into pgha (then the pipe would keep a
    // reader and fill up instead of closing).
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let base = common::free_base_port(2).to_string();
    let mut args = vec!["up", "--dir", dir.to_str().unwrap(), "--members", "2"];
    args.extend(["--port", &base]);
    args.extend(common::TEST_PARAMS);
    let mut child = Command::new(pgha_bin())
        .args(&args)
        .env("PGHA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone().unwrap()))
        .stderr(Stdio::from(writer))
        .spawn()
        .expect("spawn pgha up");
    // The reader (`tee`) reads until the cluster is up, then goes away.
    let mut lines = BufReader::new(std::fs::File::from(reader)).lines();
    let mut seen = String::new();
    let up = poll(Duration::from_secs(120), Duration::ZERO, || {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => return Some(false),
        };
        seen.push_str(&line);
        seen.push('\n');
        line.contains("cluster up in").then_some(true)
    });
    assert_eq!(
        up,
        Some(true),
        "pgha up did not come up; its output:\n{seen}"
    );
    let pids: Vec<u32> = data_dirs.iter().filter_map(|d| postmaster_pid(d)).collect();
    assert_eq!(pids.len(), 2, "both members run: {pids:?}\n{seen}");
    drop(lines);
    // The members keep logging into the closed pipe for a moment, then Ctrl-C.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "pgha up exited when its output pipe closed: {:?}",
        child.try_wait()
    );
    let status = stop_child(&mut child, Signal::SIGINT, Duration::from_secs(60))
        .expect("pgha up stops within 60 s of Ctrl-C");
    assert_ne!(status.code(), Some(101), "pgha up panicked: {status}");
    assert!(status.success(), "pgha up: {status}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "PostgreSQL left running: {left:?}");
    for data in &data_dirs {
        assert_eq!(postmaster_pid(data), None, "{} still runs", data.display());
    }
}
