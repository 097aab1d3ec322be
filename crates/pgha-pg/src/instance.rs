//! One member's PostgreSQL instance on disk: initdb, start, stop, promote, reload, its files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::binaries::PgBinaries;
use crate::command::{file_tail, run, TAIL_LINES};
use crate::conf::{MemberConf, PGHA_CONF};
pub use crate::controldata::ControlData;
use crate::controldata::HotStandbySettings;
use crate::error::{PgError, Result};
use crate::lease_file::LeaseFile;
use crate::osuser::RunAs;
use crate::pid_file::PidFileHolder;
use crate::supervisor::{self, SuperviseArgs};

/// How `pg_ctl stop` shuts PostgreSQL down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, write a shutdown checkpoint.
    Fast,
    /// Quit at once; crash recovery runs at the next start.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// One member's PostgreSQL: `<member_dir>/data` and `<member_dir>/postgresql.log`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub member_dir: PathBuf,
    pub bins: PgBinaries,
    pub run_as: RunAs,
    /// The program run as `<program> supervise ...` to start PostgreSQL: this very binary.
    pub supervisor: PathBuf,
    /// How the supervisor uses the watchdog device while the lease is armed.
    pub watchdog: crate::supervisor::WatchdogSetting,
    /// The primary's settings last read from the data directory's pg_control.
    known_primary_settings: Arc<Mutex<Option<HotStandbySettings>>>,
}

impl Instance {
    pub fn new(name: &str, member_dir: &Path, bins: PgBinaries, run_as: RunAs) -> Self {
        Instance {
            name: name.to_string(),
            member_dir: member_dir.to_path_buf(),
            bins,
            run_as,
            supervisor: PathBuf::from("/proc/self/exe"),
            watchdog: crate::supervisor::WatchdogSetting::default(),
            known_primary_settings: Arc::default(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.member_dir.join("data")
    }

    pub fn log_file(&self) -> PathBuf {
        self.member_dir.join("postgresql.log")
    }

    /// Whether the data directory holds an initialised cluster.
    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// [`Self::is_initialized`], `None` when `PG_VERSION` could not be looked at.
    pub fn initialized(&self) -> Option<bool> {
        match std::fs::metadata(self.data_dir().join("PG_VERSION")) {
            Ok(meta) => Some(meta.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }

    /// Creates the member directory, owned by the PostgreSQL OS user, mode 0700.
    pub fn create_member_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.member_dir)
            .map_err(|e| PgError::io(format!("create {}", self.member_dir.display()), e))?;
        std::fs::set_permissions(&self.member_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| PgError::io(format!("chmod {}", self.member_dir.display()), e))?;
        self.run_as.chown(&self.member_dir)
    }

    /// Runs initdb into `target` with scram-sha-256 authentication and data checksums; the
    /// superuser password goes through a short-lived 0600 file, never the command line.
    pub async fn initdb(&self, target: &Path, superuser: &str, password: &str) -> Result<()> {
        let pwfile = self.member_dir.join(".initdb-pw");
        write_private(&pwfile, &format!("{password}\n"), &self.run_as)?;
        let mut cmd = self
            .run_as
            .command(self.bins.program("initdb"), &self.member_dir);
        cmd.arg("-D")
            .arg(target)
            .args([
                "--auth=scram-sha-256",
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--username={superuser}"))
            .arg(format!("--pwfile={}", pwfile.display()));
        let result = run(cmd, "initdb", Duration::from_secs(300)).await;
        let _ = crate::beneath::remove(&pwfile, &self.run_as);
        result.map(|_| ())
    }

    /// Writes pgha.conf, pg_hba.conf and the `include` line in postgresql.conf; writes or
    /// removes standby.signal to match the role.
    /// A standby's settings are raised to the primary's its `pg_control` records
    /// ([`MemberConf::primary_settings`]; none when pg_controldata cannot read it).
    pub async fn write_config(&self, data_dir: &Path, conf: &MemberConf, hba: &str) -> Result<()> {
        let mut conf = conf.clone();
        if conf.standby {
            conf.primary_settings = self.primary_settings_of(data_dir).await;
        }
        write_owned(&data_dir.join(PGHA_CONF), &conf.render(), &self.run_as)?;
        write_owned(&data_dir.join("pg_hba.conf"), hba, &self.run_as)?;
        let main_conf = data_dir.join("postgresql.conf");
        let text = crate::beneath::read_to_string(&main_conf, &self.run_as)?;
        let include = format!("include '{PGHA_CONF}'");
        if !text.lines().any(|l| l.trim() == include) {
            let mut new_text = text;
            if !new_text.ends_with('\n') {
                new_text.push('\n');
            }
            new_text.push_str(&format!(
                "\n# pgha's settings come last so they win (postgresql.auto.conf, read after\n# this file, is kept clear of them by pgha)\n{include}\n"
            ));
            write_owned(&main_conf, &new_text, &self.run_as)?;
        }
        let signal = data_dir.join("standby.signal");
        if conf.standby {
            write_owned(&signal, "", &self.run_as)?;
        } else {
            crate::beneath::remove(&signal, &self.run_as)?;
        }
        Ok(())
    }

    /// The primary's settings `data_dir`'s pg_control records. For the data directory while
    /// PostgreSQL runs, the last ones read serve: they count only when a postmaster starts,
    /// and every start writes the configuration first, stopped (so a write on the way to a
    /// promotion does not wait for pg_controldata).
    async fn primary_settings_of(&self, data_dir: &Path) -> HotStandbySettings {
        let ours = data_dir == self.data_dir();
        let known = *self.known_primary_settings.lock().expect("not poisoned");
        if let Some(known) = known.filter(|_| ours && self.is_running()) {
            return known;
        }
        match self.controldata_of(data_dir).await {
            Ok(cd) => {
                if ours {
                    *self.known_primary_settings.lock().expect("not poisoned") =
                        Some(cd.primary_settings);
                }
                cd.primary_settings
            }
            Err(e) => {
                tracing::debug!("{}: no pg_control settings to keep: {e}", self.name);
                HotStandbySettings::default()
            }
        }
    }

    /// Whether the data directory is set up as a standby (`false` too when that cannot be
    /// looked at: for callers to which a standby taken for a primary's data costs nothing).
    pub fn has_standby_signal(&self) -> bool {
        self.standby_signal() == Some(true)
    }

    /// Whether `standby.signal` is there; `None` when that could not be looked at (no
    /// descriptor left, an I/O error).
    pub fn standby_signal(&self) -> Option<bool> {
        match crate::beneath::found(&self.data_dir().join("standby.signal"), &self.run_as) {
            crate::beneath::Found::File => Some(true),
            crate::beneath::Found::NotAFile | crate::beneath::Found::Absent => Some(false),
            crate::beneath::Found::Unknown(_) => None,
        }
    }

    /// The postmaster's pid if one is running on this data directory. A postmaster that died
    /// and waits to be reaped (a zombie) is not running, nor is another process holding the
    /// pid `postmaster.pid` names (the file left by a crash, the pid reused since).
    pub fn postmaster_pid(&self) -> Option<i32> {
        self.pid_file_holder().postmaster()
    }

    /// What holds the pid in this data directory's `postmaster.pid` now.
    pub fn pid_file_holder(&self) -> PidFileHolder {
        crate::pid_file::holder(&self.data_dir())
    }

    /// Whether a postmaster may run on this data directory: one seen running, or one that
    /// could not be looked for (`postmaster.pid` or `/proc` unreadable), never taken for none.
    pub fn is_running(&self) -> bool {
        self.pid_file_holder().may_run()
    }

    /// The member's fencing deadline file (see [`crate::supervisor`]).
    pub fn lease_file(&self) -> LeaseFile {
        LeaseFile::for_member_dir(&self.member_dir)
    }

    /// Starts PostgreSQL under its supervisor (`pgha supervise`, which kills it at the lease
    /// deadline and takes it along when it dies) and waits until it accepts connections; on
    /// failure the error carries the tail of the member's log. A standby is started with its
    /// fencing disarmed: only a lease holder arms it.
    pub async fn start(&self, timeout: Duration) -> Result<()> {
        if self.rewind_maybe_incomplete() {
            return Err(PgError::RewindIncomplete {
                member: self.name.clone(),
                data: self.data_dir(),
                marker: self.rewind_marker(),
            });
        }
        let lease = self.lease_file();
        if self.has_standby_signal() {
            lease.disarm()?;
        }
        let args = SuperviseArgs {
            member: self.name.clone(),
            lease_file: lease.path().to_path_buf(),
            data_dir: self.data_dir(),
            log_file: self.log_file(),
            postgres: self.bins.program("postgres"),
            os_user: self.run_as.user.as_ref().map(|u| u.name.clone()),
            watchdog: self.watchdog.clone(),
        };
        let mut cmd = tokio::process::Command::new(&self.supervisor);
        cmd.arg0("pgha")
            .arg("supervise")
            .args(args.to_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe. A session of its own: a terminal's Ctrl-C or the
        // agent's process group being signalled does not reach PostgreSQL's supervisor.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let failed = |status: String| PgError::StartFailed {
            member: self.name.clone(),
            status,
            log: self.log_file(),
            log_tail: file_tail(&self.log_file(), TAIL_LINES),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", self.supervisor.display())))?;
        let supervisor = child.id().map(|p| p as i32);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(failed(supervisor::why_it_exited(status, &lease)));
            }
            if let Some(status) = crate::pid_file::status_line(&self.data_dir()) {
                let ours = self
                    .postmaster_pid()
                    .and_then(supervisor::parent_of)
                    .is_some_and(|p| Some(p) == supervisor);
                if ours && (status == "ready" || status == "standby") {
                    // The supervisor outlives this call (and the agent): reap it when it ends.
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failed(format!(
                    "not accepting connections after {} s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops PostgreSQL (no-op when it is not running). A postmaster that ends while pg_ctl
    /// waits (killed by its supervisor's fencing) has stopped too, whatever pg_ctl says.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<()> {
        let holder = self.pid_file_holder();
        if holder == PidFileHolder::Unknown {
            // pg_ctl would signal whatever pid the file names, one reused since included
            let (member, data) = (self.name.clone(), self.data_dir());
            return Err(PgError::PostmasterUnknown { member, data });
        }
        if holder.postmaster().is_none() {
            return Ok(());
        }
        let args = ["stop", "-m", mode.as_arg()];
        match self.pg_ctl(&args, Some(timeout)).await {
            Err(_) if !self.is_running() => Ok(()),
            answer => answer,
        }
    }

    /// Asks PostgreSQL to promote itself (`pg_ctl promote -W`) and returns at once: the
    /// caller watches the promotion, which lasts as long as the WAL left to replay.
    pub async fn request_promotion(&self) -> Result<()> {
        self.pg_ctl(&["promote", "-W"], None).await
    }

    /// Asks PostgreSQL to re-read its configuration.
    pub async fn reload(&self) -> Result<()> {
        self.pg_ctl(&["reload"], None).await
    }

    /// Runs `pg_ctl ARGS -D DATA -s` as the OS user; with `wait`, also `-w -t SECONDS`, and
    /// gives up 5 s after that (without, after 30 s).
    async fn pg_ctl(&self, args: &[&str], wait: Option<Duration>) -> Result<()> {
        let mut cmd = self
            .run_as
            .command(self.bins.program("pg_ctl"), &self.member_dir);
        cmd.args(args).arg("-D").arg(self.data_dir()).arg("-s");
        let limit = match wait {
            Some(timeout) => {
                cmd.args(["-w", "-t"])
                    .arg(timeout.as_secs().max(1).to_string());
                timeout + Duration::from_secs(5)
            }
            None => Duration::from_secs(30),
        };
        run(cmd, &format!("pg_ctl {}", args[0]), limit)
            .await
            .map(|_| ())
    }

    /// Reads pg_controldata's view of the data directory.
    pub async fn controldata(&self) -> Result<ControlData> {
        self.controldata_of(&self.data_dir()).await
    }

    /// Reads pg_controldata's view of `data_dir` (the data directory, or a clone's staging
    /// directory).
    pub async fn controldata_of(&self, data_dir: &Path) -> Result<ControlData> {
        let mut cmd = self
            .run_as
            .command(self.bins.program("pg_controldata"), &self.member_dir);
        cmd.arg("-D").arg(data_dir);
        let text = run(cmd, "pg_controldata", Duration::from_secs(30)).await?;
        Ok(ControlData::parse(&text))
    }
}

/// Parses PostgreSQL's `X/Y` WAL position notation.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Writes a file readable by the PostgreSQL OS user only (mode 0600), atomically.
pub fn write_private(path: &Path, contents: &str, run_as: &RunAs) -> Result<()> {
    write_with_mode(path, contents, 0o600, run_as)
}

/// Writes a file owned by the PostgreSQL OS user (mode 0600), atomically.
fn write_owned(path: &Path, contents: &str, run_as: &RunAs) -> Result<()> {
    write_with_mode(path, contents, 0o600, run_as)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32, run_as: &RunAs) -> Result<()> {
    crate::beneath::write(path, contents.as_bytes(), mode, run_as)
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
