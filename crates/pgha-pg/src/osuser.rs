//! Running PostgreSQL programs as an unprivileged OS user when pgha itself runs as root.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::error::{PgError, Result};

/// Who PostgreSQL programs run as: pgha's own user, or (when pgha is root) a configured OS user.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// `None` when pgha is not root: programs run as pgha's own user.
    pub user: Option<OsUser>,
}

#[derive(Debug, Clone)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    groups: Vec<u32>,
}

impl RunAs {
    /// Decides who runs PostgreSQL: `os_user` when pgha runs as root, otherwise pgha's own user.
    pub fn detect(os_user: &str) -> Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(RunAs { user: None });
        }
        let user =
            User::from_name(os_user)
                .ok()
                .flatten()
                .ok_or_else(|| PgError::OsUserMissing {
                    user: os_user.to_string(),
                })?;
        let cname = CString::new(os_user).expect("user names hold no NUL");
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|_| vec![user.gid.as_raw()]);
        Ok(RunAs {
            user: Some(OsUser {
                name: os_user.to_string(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir,
                groups,
            }),
        })
    }

    /// A command for `program` that runs as the PostgreSQL OS user, in `cwd`, and dies with
    /// the agent: killed when its job is cancelled (the handle dropped), and by the kernel when
    /// the thread that started it ends, as when the agent is killed. A pg_rewind or
    /// pg_basebackup left running by a dead agent would go on changing the data directory
    /// under the agent that replaces it.
    ///
    /// The parent is the thread that spawns it: a tokio worker thread, which lives as long as
    /// the runtime. Never spawn one from `spawn_blocking` (those threads end when idle).
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        cwd: &Path,
    ) -> tokio::process::Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = tokio::process::Command::new(program);
        self.run_as_postgres(cmd.as_std_mut());
        cmd.current_dir(cwd).kill_on_drop(true);
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec;
        // closures run after the credentials change, which would clear the signal.
        unsafe {
            cmd.as_std_mut().pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1); // the agent died before the signal was set
                }
                Ok(())
            });
        }
        cmd
    }

    /// Makes `cmd` run as the PostgreSQL OS user (its uid and gid, with HOME, USER and LOGNAME
    /// set to its own), in the C locale and without pgha's PGPASSWORD.
    pub(crate) fn run_as_postgres(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt as _;
        cmd.env("LC_ALL", "C").env_remove("PGPASSWORD");
        if let Some(user) = &self.user {
            cmd.uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
    }

    /// Gives `path` to the PostgreSQL OS user (no-op when pgha is not root).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.user {
            nix::unistd::chown(
                path,
                Some(Uid::from_raw(user.uid)),
                Some(Gid::from_raw(user.gid)),
            )
            .map_err(|e| {
                PgError::io(
                    format!("chown {} to {}", path.display(), user.name),
                    e.into(),
                )
            })?;
        }
        Ok(())
    }

    /// Fails with a clear message when the PostgreSQL OS user cannot traverse every directory
    /// above `path` (a cluster under /root, mode 0700, is the usual case).
    pub fn check_reachable(&self, path: &Path) -> Result<()> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        ancestors.reverse();
        for dir in ancestors {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            let mode = meta.mode();
            let allowed = if meta.uid() == user.uid {
                mode & 0o100 != 0
            } else if user.groups.contains(&meta.gid()) {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !allowed {
                return Err(PgError::PathNotReachable {
                    user: user.name.clone(),
                    path: path.to_path_buf(),
                    ancestor: dir.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("OS user {}", u.name),
            None => "the current user".into(),
        }
    }
}
