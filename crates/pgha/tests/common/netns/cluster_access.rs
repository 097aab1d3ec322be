//! The cluster on test hosts: its members, SQL, the CLI, logs, wall clocks and checkers.

use super::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

use pgha_testkit::{run_sql, tail};

impl Cluster {
    pub fn index(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    pub fn member(&self, name: &str) -> &Member {
        &self.members[self.index(name)]
    }

    pub fn member_mut(&mut self, name: &str) -> &mut Member {
        let i = self.index(name);
        &mut self.members[i]
    }

    /// Member name of a member's IP address.
    pub fn name_of_ip(&self, ip: &str) -> String {
        self.members
            .iter()
            .find(|m| m.host.ip == ip)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| ip.to_string())
    }

    /// Waits until a member other than `not` answers `/primary` 200; returns it and when.
    pub fn wait_new_primary(&self, not: &str, timeout: Duration) -> Option<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self
                .members
                .iter()
                .find(|m| m.name != not && m.is_primary())
            {
                return Some((m.name.clone(), Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Runs `pgha ARGS --config client.toml` on the client host.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run pgha")
    }

    /// [`Cluster::cli`] without waiting for it: the running command (its output piped).
    pub fn cli_spawn(&self, args: &[&str]) -> std::process::Child {
        let mut command = self.cli_command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().expect("run pgha")
    }

    /// `pgha ARGS --config CLIENT_CONFIG` on the client host.
    fn cli_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.net.command("client", pgha_bin());
        command
            .args(args)
            .arg("--config")
            .arg(&self.client_config)
            .env("PGHA_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    /// Rows of `query` (simple protocol, text) on `member`'s PostgreSQL, from the client host.
    pub fn sql(&self, member: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        run_sql(&self.member(member).conninfo(), query)
    }

    /// The first column of the first row.
    pub fn sql_one(&self, member: &str, query: &str) -> Option<String> {
        self.sql(member, query).ok()?.first()?.first()?.clone()
    }

    /// The read-write entry point of the proxy (on the client host).
    pub fn proxy_conninfo(&self) -> String {
        conninfo(&self.net.host("client").ip, PROXY_RW_PORT)
    }

    /// A libpq multi-host conninfo over every member, `target_session_attrs=read-write`.
    pub fn multi_host_conninfo(&self) -> String {
        let hosts: Vec<&str> = self.members.iter().map(|m| m.host.ip.as_str()).collect();
        format!(
            "{} target_session_attrs=read-write",
            conninfo(&hosts.join(","), PG_PORT)
        )
    }

    /// Steps `name`'s agent's wall clock (and its supervisor's) to `secs` from the true time
    /// (needs [`Opts::fake_wall_clock`]).
    pub fn set_wall_clock(&self, name: &str, secs: i64) {
        let file = self.member(name).wall_clock.as_ref().unwrap_or_else(|| {
            panic!("{name}'s agent runs on the true wall clock (Opts::fake_wall_clock)")
        });
        write_clock_offset(file, secs);
    }

    /// Waits up to `timeout` for `name`'s agent to log a line stamped `secs` from the true
    /// time (± 30 s; it logs every loop): the proof that a step reached the running process.
    /// That line, or `None`.
    pub fn await_wall_clock(&self, name: &str, secs: i64, timeout: Duration) -> Option<String> {
        let log = &self.member(name).log;
        let mut from = self.log_len(name);
        let deadline = Instant::now() + timeout;
        loop {
            let all = std::fs::read(log).unwrap_or_default();
            // complete lines only
            let end = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let text = strip_ansi(&String::from_utf8_lossy(&all[from.min(end)..end]));
            let now = wall_us();
            let found = text.lines().find(|l| {
                log_line_wall_us(l).is_some_and(|t| (t - now - secs * 1_000_000).abs() < 30_000_000)
            });
            if let Some(l) = found {
                return Some(l.to_string());
            }
            from = from.max(end);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every agent's log tail (and the proxy's), for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "----- {} ({}, agent log, last {lines} lines)\n{}\n",
                m.name,
                m.host.ip,
                tail(&m.log, lines)
            ));
        }
        out.push_str(&format!(
            "----- proxy (last 20 lines)\n{}\n",
            tail(&self.root.join("proxy.log"), 20)
        ));
        out
    }

    /// Lines of `name`'s agent log (all runs) containing any of `needles` (case-insensitive),
    /// without terminal colours.
    pub fn log_lines(&self, name: &str, needles: &[&str]) -> Vec<String> {
        self.log_lines_since(name, 0, needles)
    }

    /// The length of `name`'s agent log now (an offset for [`Cluster::log_lines_since`]).
    pub fn log_len(&self, name: &str) -> usize {
        std::fs::metadata(&self.member(name).log).map_or(0, |m| m.len() as usize)
    }

    /// Like [`Cluster::log_lines`], from byte `offset` of the log on.
    pub fn log_lines_since(&self, name: &str, offset: usize, needles: &[&str]) -> Vec<String> {
        let all = std::fs::read(&self.member(name).log).unwrap_or_default();
        let text = String::from_utf8_lossy(&all[offset.min(all.len())..]).to_string();
        strip_ansi(&text)
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                needles.iter().any(|n| l.contains(&n.to_lowercase()))
            })
            .map(str::to_string)
            .collect()
    }

    /// Starts the writers (proxy, multi-host, and one on each member's own host).
    pub fn checker(&self) -> Checker {
        Checker::start(self, None)
    }

    /// Like [`Cluster::checker`], plus a writer on each member's host that waits up to
    /// `patience` for every answer (it sees answers a stalled server delivers late).
    pub fn checker_patient(&self, patience: Duration) -> Checker {
        Checker::start(self, Some(patience))
    }
}
