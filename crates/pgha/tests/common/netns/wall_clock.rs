//! Wall-clock steps (libfaketime).

use super::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The Debian package, and its library under `/usr/lib/<triplet>/`.
const FAKETIME_PACKAGE: &str = "libfaketime";
const FAKETIME_LIB: &str = "faketime/libfaketimeMT.so.1";

/// A wall clock a test can step, for the processes started with [`FakeWallClock::env`]:
/// libfaketime (`LD_PRELOAD`) adds to what `CLOCK_REALTIME` reads (`clock_gettime`,
/// `gettimeofday`, `time`) the offset written in a timestamp file that it reads again on every
/// call (`FAKETIME_NO_CACHE`), and leaves `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` alone
/// (`FAKETIME_DONT_FAKE_MONOTONIC`; without it libfaketime fakes them too): what a clock step
/// (`date -s`, an NTP step, a VM resynchronised after a pause) does, and no more.
/// [`FakeWallClock::check`] proves both on this machine before a test relies on them.
///
/// Only programs named `pgha` see the fake (`FAKETIME_ONLY_CMDS`): the agent and its
/// `pgha supervise` (started through `/proc/self/exe` with argv[0] `pgha`). PostgreSQL, the
/// shell that starts it and the PostgreSQL tools inherit the preload but keep the true clock:
/// the checker orders writes by the server's `clock_timestamp()` (see [`judge_writers`], which
/// also stops trusting a server clock that strays from the checker's), and what PostgreSQL
/// itself does on a step (e.g. `wal_sender_timeout` is measured on its wall clock) is not what
/// these tests look at.
///
/// It also shifts the file times `stat` reports to those processes (pgha reads none: no file's
/// age decides anything).
///
/// The multi-threaded build: with `libfaketime.so.1`, threads that read the clock while the
/// file changes get invalid timespecs (Rust's std panics on them) — not what a real step does.
#[derive(Clone, Debug)]
pub struct FakeWallClock {
    pub lib: PathBuf,
    /// When it was found (see [`FakeWallClock::remove_leftovers`]).
    since: std::time::SystemTime,
}

impl FakeWallClock {
    /// Finds libfaketime; panics naming the Debian package when it is missing.
    pub fn find() -> FakeWallClock {
        let lib = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(FAKETIME_LIB))
            .chain(std::iter::once(Path::new("/usr/lib").join(FAKETIME_LIB)))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "no /usr/lib/*/{FAKETIME_LIB}: the wall-clock tests need it \
                     (apt-get install -y {FAKETIME_PACKAGE})"
                )
            });
        FakeWallClock {
            lib,
            since: std::time::SystemTime::now(),
        }
    }

    /// Removes what libfaketime left in /dev/shm since [`FakeWallClock::find`] for processes
    /// that no longer live: every preloaded program creates `faketime_shm_<pid>` and
    /// `sem.faketime_sem_<pid>` and only a clean exit removes them, so the agents and
    /// postmasters a test kills leave theirs behind (and a later process given that pid could
    /// trip over them).
    pub fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix("faketime_shm_")
                .or_else(|| name.strip_prefix("sem.faketime_sem_"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let recent = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= self.since);
            if recent && !alive(pid) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The environment of a process whose wall clock follows `file` (if its program is named
    /// `pgha`, or like the binary under test).
    pub fn env(&self, file: &Path) -> Vec<(String, String)> {
        let mut only = vec!["pgha".to_string()];
        if let Some(name) = Path::new(&pgha_bin()).file_name() {
            let name = name.to_string_lossy().to_string();
            if !only.contains(&name) {
                only.push(name);
            }
        }
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
            ("FAKETIME_ONLY_CMDS".into(), only.join(",")),
        ]
    }

    /// Proves, with a python3 probe under [`FakeWallClock::env`] in `dir`, that in one running
    /// process named `pgha` the steps +3600 s, -3600 s and +0 move `CLOCK_REALTIME` (and
    /// `time.time()`) by exactly that and leave `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` true, and
    /// that a process named `postgres` keeps the true wall clock. Panics, with the figures,
    /// otherwise.
    pub fn check(self, dir: &Path) -> FakeWallClock {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::process::CommandExt;
        // the interpreter itself (not a wrapper script): argv[0] must reach it
        let python = must(Command::new("python3").args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ]));
        let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
        let file = dir.join("probe.faketime");
        let probe = "import sys, time\n\
                     for _ in sys.stdin:\n    \
                         print(time.clock_gettime_ns(time.CLOCK_REALTIME), time.time_ns(), \
                         time.clock_gettime_ns(time.CLOCK_MONOTONIC), \
                         time.clock_gettime_ns(time.CLOCK_BOOTTIME), flush=True)\n";
        let clock = |id| {
            let ts = nix::time::clock_gettime(id).expect("clock_gettime");
            ts.tv_sec() as i64 * 1_000_000_000 + ts.tv_nsec() as i64
        };
        let truth = || {
            [
                clock(nix::time::ClockId::CLOCK_REALTIME),
                clock(nix::time::ClockId::CLOCK_MONOTONIC),
                clock(nix::time::ClockId::CLOCK_BOOTTIME),
            ]
        };
        let run = |name: &str, steps: &[i64]| {
            write_clock_offset(&file, steps[0]);
            let mut child = Command::new(&python)
                .arg0(name)
                .args(["-c", probe])
                .envs(self.env(&file))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run {python}: {e}"));
            let mut input = child.stdin.take().unwrap();
            let mut output = BufReader::new(child.stdout.take().unwrap());
            let mut seen = Vec::new();
            for &step in steps {
                write_clock_offset(&file, step);
                let before = truth();
                writeln!(input, "now").expect("write to the probe");
                let mut line = String::new();
                output.read_line(&mut line).expect("read from the probe");
                let after = truth();
                let v: Vec<i64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                assert_eq!(v.len(), 4, "the clock probe said {line:?}");
                seen.push((step, before, v, after));
            }
            drop(input);
            let _ = child.wait();
            seen
        };
        // within [before, after] of the true clock, shifted by `shift` seconds (1 ms of slack)
        let within = |v: i64, before: i64, after: i64, shift: i64| {
            let s = shift * 1_000_000_000;
            v >= before + s - 1_000_000 && v <= after + s + 1_000_000
        };
        let mut wrong = Vec::new();
        for (step, before, v, after) in run("pgha", &[3600, -3600, 0]) {
            let ok = within(v[0], before[0], after[0], step)
                && within(v[1], before[0], after[0], step)
                && within(v[2], before[1], after[1], 0)
                && within(v[3], before[2], after[2], 0);
            if !ok {
                wrong.push(format!(
                    "as pgha at {step:+} s: realtime, time(), monotonic, boottime {v:?}, true \
                     realtime, monotonic, boottime from {before:?} to {after:?}"
                ));
            }
        }
        for (step, before, v, after) in run("postgres", &[3600]) {
            if !within(v[0], before[0], after[0], 0) || !within(v[3], before[2], after[2], 0) {
                wrong.push(format!(
                    "as postgres at {step:+} s (should be true): {v:?}, true from {before:?} to \
                     {after:?}"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} does not step the wall clock alone as these tests assume:\n{}",
            self.lib.display(),
            wrong.join("\n")
        );
        self
    }
}

/// Writes `secs` (the offset from the true time: `+3600`, `-3600`, `+0`) into a libfaketime
/// timestamp file, atomically: the processes read it on every clock call.
pub fn write_clock_offset(file: &Path, secs: i64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{secs:+}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("rename to {}: {e}", file.display()));
}

/// The wall-clock time (µs since the epoch) that stamps an agent log line (`tracing`'s UTC
/// RFC 3339 timestamp, e.g. `2026-12-01T10:11:12.123456Z`, colours stripped or not).
pub fn log_line_wall_us(line: &str) -> Option<i64> {
    let line = strip_ansi(line);
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000_000 + ss * 1_000_000 + micros)
}
