//! Log files of test processes: spawned with their output appended, read per run or by tail.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Spawns `cmd` with stdin closed and stdout and stderr appended to `log` (created if needed);
/// the child and the log's length before it, where this run's output begins.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> io::Result<(Child, u64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let start = file.metadata()?.len();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    Ok((child, start))
}

/// A log file several runs of one process append to, and where the current run began.
#[derive(Clone, Debug)]
pub struct RunLog {
    pub path: PathBuf,
    pub start: u64,
}

impl RunLog {
    pub fn new(path: PathBuf) -> RunLog {
        RunLog { path, start: 0 }
    }

    /// Spawns `cmd` as the next run, its output appended (see [`spawn_logged`]).
    pub fn spawn(&mut self, cmd: &mut Command) -> io::Result<Child> {
        let (child, start) = spawn_logged(cmd, &self.path)?;
        self.start = start;
        Ok(child)
    }

    /// The output of the current (or last) run.
    pub fn this_run(&self) -> String {
        let all = std::fs::read(&self.path).unwrap_or_default();
        String::from_utf8_lossy(&all[(self.start as usize).min(all.len())..]).to_string()
    }

    /// The output of every run.
    pub fn whole(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// The last `lines` lines of every run's output.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.path, lines)
    }
}

/// The last `lines` lines of `file` (empty when it cannot be read).
pub fn tail(file: &Path, lines: usize) -> String {
    tail_of(&std::fs::read_to_string(file).unwrap_or_default(), lines)
}

/// The last `lines` lines of `text`.
pub fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `text` without ANSI escape sequences (the agents colour their log levels).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}
