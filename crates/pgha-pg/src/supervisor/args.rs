//! The arguments of `pgha supervise`, written by the agent that starts a supervisor and read
//! back from a running one's command line (its watchdog, which a later agent must allow for).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::watchdog::WatchdogMode;

/// The argument before the supervisor's own: `pgha supervise --member ...`.
const SUBCOMMAND: &str = "supervise";

/// What `pgha supervise` runs.
#[derive(Debug, Clone)]
pub struct SuperviseArgs {
    pub member: String,
    pub lease_file: PathBuf,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// The `postgres` server program.
    pub postgres: PathBuf,
    /// The OS user PostgreSQL runs as (only when the supervisor runs as root).
    pub os_user: Option<String>,
    pub watchdog: WatchdogSetting,
}

/// How a supervisor uses the watchdog device while its lease is armed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogSetting {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    /// Seconds without a keep-alive before the machine is reset ([`crate::watchdog::timeout_for`]).
    pub timeout_s: u32,
}

impl WatchdogSetting {
    /// How long after the supervisor's last keep-alive the watchdog may reset the host (0:
    /// no watchdog): the fencing deadline leaves that much room before the store may expire
    /// the lease.
    pub fn reset_after_ms(&self) -> u64 {
        match self.mode {
            WatchdogMode::Off => 0,
            _ => u64::from(self.timeout_s) * 1000,
        }
    }
}

impl Default for WatchdogSetting {
    fn default() -> Self {
        WatchdogSetting {
            mode: WatchdogMode::Off,
            device: PathBuf::from("/dev/watchdog"),
            timeout_s: 1,
        }
    }
}

impl SuperviseArgs {
    /// The command-line arguments after `pgha supervise`.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = vec![
            "--member".into(),
            self.member.clone().into(),
            "--lease-file".into(),
            self.lease_file.clone().into(),
            "--data-dir".into(),
            self.data_dir.clone().into(),
            "--log-file".into(),
            self.log_file.clone().into(),
            "--postgres".into(),
            self.postgres.clone().into(),
        ];
        if let Some(user) = &self.os_user {
            out.push("--os-user".into());
            out.push(user.clone().into());
        }
        if self.watchdog.mode != WatchdogMode::Off {
            out.push("--watchdog".into());
            out.push(self.watchdog.mode.to_string().into());
            out.push("--watchdog-device".into());
            out.push(self.watchdog.device.clone().into());
            out.push("--watchdog-timeout".into());
            out.push(self.watchdog.timeout_s.to_string().into());
        }
        out
    }
}

impl WatchdogSetting {
    /// The watchdog a supervisor was started with, from its command line `args` (`None`: not
    /// a `pgha supervise`, i.e. no `supervise` followed by a `--lease-file`). A flag it cannot
    /// read leaves that part of the default; a mode it cannot read counts as on.
    pub fn from_supervise_command(args: &[OsString]) -> Option<WatchdogSetting> {
        let after = args.iter().position(|a| a == SUBCOMMAND)?;
        if !args[after + 1..].iter().any(|a| a == "--lease-file") {
            return None;
        }
        let mut setting = WatchdogSetting::default();
        let mut flags = args[after + 1..].iter();
        while let Some(flag) = flags.next() {
            let Some(flag) = flag.to_str() else { continue };
            match flag {
                "--watchdog" => {
                    setting.mode = flags
                        .next()
                        .and_then(|m| m.to_str()?.parse().ok())
                        .unwrap_or(WatchdogMode::Automatic);
                }
                "--watchdog-device" => {
                    if let Some(device) = flags.next() {
                        setting.device = PathBuf::from(device);
                    }
                }
                "--watchdog-timeout" => {
                    if let Some(timeout) = flags.next().and_then(|t| t.to_str()?.parse().ok()) {
                        setting.timeout_s = timeout;
                    }
                }
                _ => {}
            }
        }
        Some(setting)
    }
}

/// The watchdog of the supervisor running `postmaster` (its parent), as that supervisor was
/// started: perhaps by an earlier agent, from another margin than this one's. `None` when the
/// parent is not a `pgha supervise` (PostgreSQL started otherwise) or is gone.
pub fn watchdog_of_supervisor(postmaster: i32) -> Option<WatchdogSetting> {
    let supervisor = super::parent_of(postmaster)?;
    let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).ok()?;
    let args: Vec<OsString> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a).to_os_string())
        .collect();
    WatchdogSetting::from_supervise_command(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(watchdog: WatchdogSetting) -> SuperviseArgs {
        SuperviseArgs {
            member: "n1".into(),
            lease_file: "/var/lib/pgha/n1.lease".into(),
            data_dir: "/var/lib/pgha/n1/data".into(),
            log_file: "/var/lib/pgha/n1/pg.log".into(),
            postgres: "/usr/lib/postgresql/15/bin/postgres".into(),
            os_user: Some("postgres".into()),
            watchdog,
        }
    }

    fn command_line(args: &SuperviseArgs) -> Vec<OsString> {
        let mut line: Vec<OsString> = vec!["/usr/bin/pgha".into(), SUBCOMMAND.into()];
        line.extend(args.to_args());
        line
    }

    #[test]
    fn the_watchdog_reads_back_from_the_command_line_it_was_written_to() {
        for watchdog in [
            WatchdogSetting::default(),
            WatchdogSetting {
                mode: WatchdogMode::Automatic,
                device: "/dev/watchdog1".into(),
                timeout_s: 5,
            },
            WatchdogSetting {
                mode: WatchdogMode::Required,
                device: "/dev/watchdog".into(),
                timeout_s: 2,
            },
        ] {
            let line = command_line(&args(watchdog.clone()));
            assert_eq!(
                WatchdogSetting::from_supervise_command(&line),
                Some(watchdog)
            );
        }
        for other in [
            &["postgres", "-D", "x"][..],
            &["cargo", "test", "supervise"],
        ] {
            let line: Vec<OsString> = other.iter().map(OsString::from).collect();
            assert_eq!(WatchdogSetting::from_supervise_command(&line), None);
        }
    }

    /// A running process whose parent was started as `pgha supervise` with a 4 s watchdog.
    #[test]
    fn a_running_supervisors_watchdog_is_read_from_its_command_line() {
        let watchdog = WatchdogSetting {
            mode: WatchdogMode::Automatic,
            device: "/dev/watchdog".into(),
            timeout_s: 4,
        };
        let pid_file = tempfile::NamedTempFile::new().unwrap();
        // sh -c SCRIPT $0 $1...: its command line is sh's, then `supervise` and the flags.
        let mut parent = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"sleep 30 & echo $! > "$PGHA_TEST_PID"; wait"#)
            .arg(SUBCOMMAND)
            .args(args(watchdog.clone()).to_args())
            .env("PGHA_TEST_PID", pid_file.path())
            .spawn()
            .unwrap();
        let child = (0..200)
            .find_map(|_| {
                let text = std::fs::read_to_string(pid_file.path()).unwrap_or_default();
                let pid = text.trim().parse::<i32>().ok();
                if pid.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                pid
            })
            .expect("the child's pid");
        let found = watchdog_of_supervisor(child);
        let own = watchdog_of_supervisor(std::process::id() as i32);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = parent.wait();
        assert_eq!(found, Some(watchdog));
        assert_eq!(own, None, "a test binary's parent is no supervisor");
    }
}
