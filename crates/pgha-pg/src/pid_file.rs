//! Who holds the pid a data directory's `postmaster.pid` names: its postmaster, a zombie,
//! nobody, or another process that took that pid after a crash (a reboot starts pids over).

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// What the pid in `DATA/postmaster.pid` is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFileHolder {
    /// No file, no pid in it, or no process with that pid.
    Nobody,
    /// A `postgres` process of the data directory's owner working in that directory: the
    /// postmaster. Also what a process of the owner that cannot be read is taken for (no
    /// `CAP_SYS_PTRACE` in a container, say): as PostgreSQL itself does, a live pid is
    /// assumed to be the postmaster unless seen not to be.
    Postmaster(i32),
    /// A process with that pid that has exited and waits for its parent to reap it: it still
    /// answers `kill(pid, 0)`, so PostgreSQL will not start until it is gone.
    Zombie(i32),
    /// A live process that is seen not to be this directory's postmaster: another user's,
    /// another program, or a `postgres` working elsewhere (the file was left by a crash and
    /// the pid reused since).
    /// PostgreSQL would refuse to start while that process runs under its own OS user.
    Stranger(i32),
    /// The file, or the process it names, could not be looked at (no descriptor left, an I/O
    /// error): a postmaster may be running, and nothing is decided as if none were.
    Unknown,
}

impl PidFileHolder {
    /// Whether a postmaster may be running: one seen, or one that could not be looked for.
    pub fn may_run(self) -> bool {
        matches!(self, PidFileHolder::Postmaster(_) | PidFileHolder::Unknown)
    }

    /// The postmaster's pid, when one is seen running.
    pub fn postmaster(self) -> Option<i32> {
        match self {
            PidFileHolder::Postmaster(pid) => Some(pid),
            PidFileHolder::Nobody
            | PidFileHolder::Zombie(_)
            | PidFileHolder::Stranger(_)
            | PidFileHolder::Unknown => None,
        }
    }
}

/// The holder of the pid in `data_dir/postmaster.pid`, seen from this process.
pub fn holder(data_dir: &Path) -> PidFileHolder {
    match pid_in_file(&data_dir.join("postmaster.pid")) {
        Ok(Some(pid)) => classify(pid, data_dir),
        Ok(None) => PidFileHolder::Nobody,
        Err(_) => PidFileHolder::Unknown,
    }
}

/// The postmaster's status line in `data_dir/postmaster.pid` (`starting`, `ready`,
/// `standby`, ...), once it has written one.
pub fn status_line(data_dir: &Path) -> Option<String> {
    let head = read_head(&data_dir.join("postmaster.pid")).ok()??;
    Some(head.lines().nth(7)?.trim().to_string())
}

/// The pid on the first line of a pid file (negated by a single-user `postgres`); `None` when
/// there is no such file or no pid in it, an error when it could not be read.
fn pid_in_file(path: &Path) -> std::io::Result<Option<i32>> {
    let Some(head) = read_head(path)? else {
        return Ok(None);
    };
    let pid = head
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok());
    Ok(pid.and_then(i32::checked_abs).filter(|p| *p > 0))
}

/// The start of a pid file (its lines are short: a pid, paths, a port, a key, a status), read
/// without following a symlink and without waiting on anything but a regular file: the
/// PostgreSQL OS user may put anything at that name, and pgha reads it as root. `None`: no
/// file there, or something else than a file (a symlink, a directory).
fn read_head(path: &Path) -> std::io::Result<Option<String>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut head = String::new();
    match file.by_ref().take(8192).read_to_string(&mut head) {
        Ok(_) => Ok(Some(head)),
        // not text: no pid PostgreSQL wrote
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

fn classify(pid: i32, data_dir: &Path) -> PidFileHolder {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let state = match crate::killed::stat_fields(&proc_dir.join("stat")) {
        Ok(fields) => fields.first().and_then(|f| f.chars().next()),
        Err(e) if crate::killed::gone(&e) => return PidFileHolder::Nobody,
        // `/proc` mounted `hidepid` (or a security module): a process of another user than
        // the data directory's owner is not its postmaster; one of that user may be
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let owner = std::fs::metadata(data_dir).map(|m| m.uid());
            let holder = std::fs::metadata(&proc_dir).map(|m| m.uid());
            return match (owner, holder) {
                (Ok(owner), Ok(holder)) if owner != holder => PidFileHolder::Stranger(pid),
                _ => PidFileHolder::Unknown,
            };
        }
        Err(_) => return PidFileHolder::Unknown,
    };
    let Some(state) = state else {
        return PidFileHolder::Unknown;
    };
    if state == 'Z' {
        return PidFileHolder::Zombie(pid);
    }
    // PostgreSQL runs only as the owner of its data directory: a process of another user is
    // not its postmaster, whether or not this one may read where it works.
    let owner = std::fs::metadata(data_dir).map(|m| m.uid());
    if let (Ok(owner), Some(uid)) = (owner, effective_uid(&proc_dir)) {
        if owner != uid {
            return PidFileHolder::Stranger(pid);
        }
    }
    let (exe, cwd) = match (
        std::fs::read_link(proc_dir.join("exe")),
        std::fs::read_link(proc_dir.join("cwd")),
    ) {
        (Ok(exe), Ok(cwd)) => (exe, cwd),
        (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return PidFileHolder::Nobody;
        }
        _ => return PidFileHolder::Postmaster(pid),
    };
    let program = exe.file_name().map(|n| {
        n.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string()
    });
    let is_postgres = matches!(program.as_deref(), Some("postgres" | "postmaster"));
    let here = match std::fs::canonicalize(data_dir) {
        Ok(dir) => dir == cwd,
        Err(_) => return PidFileHolder::Unknown,
    };
    if is_postgres && here {
        PidFileHolder::Postmaster(pid)
    } else {
        PidFileHolder::Stranger(pid)
    }
}

/// The effective uid on the `Uid:` line of `/proc/PID/status`, if that process exists.
fn effective_uid(proc_dir: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    fn write_pid(data: &Path, pid: u32) {
        let text = format!(
            "{pid}\n{}\n1700000000\n5432\n\n\n  1234567     0\nready   \n",
            data.display()
        );
        std::fs::write(data.join("postmaster.pid"), text).unwrap();
    }

    /// `program` (a copy of `sleep` under that name) started in `cwd`.
    fn sleeper(bin_dir: &Path, program: &str, cwd: &Path) -> Child {
        let copy = bin_dir.join(program);
        if !copy.exists() {
            std::fs::copy("/bin/sleep", &copy).unwrap();
        }
        Command::new(&copy)
            .arg("60")
            .current_dir(cwd)
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_pid_file_holder_is_told_by_program_and_working_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert_eq!(holder(&data), PidFileHolder::Nobody, "no file");

        let mut postmaster = sleeper(root.path(), "postgres", &data);
        let mut other_postgres = sleeper(root.path(), "postgres", &elsewhere);
        let mut other_program = sleeper(root.path(), "sleep", &data);
        for (child, is_postmaster, what) in [
            (
                &postmaster,
                true,
                "a postgres working in the data directory",
            ),
            (
                &other_postgres,
                false,
                "a postgres of another data directory",
            ),
            (
                &other_program,
                false,
                "another program working in the data directory",
            ),
        ] {
            write_pid(&data, child.id());
            let pid = child.id() as i32;
            let expected = match is_postmaster {
                true => PidFileHolder::Postmaster(pid),
                false => PidFileHolder::Stranger(pid),
            };
            assert_eq!(holder(&data), expected, "{what}");
        }

        other_program.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while holder(&data) != PidFileHolder::Zombie(other_program.id() as i32) {
            assert!(std::time::Instant::now() < deadline, "{:?}", holder(&data));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        other_program.wait().unwrap();
        assert_eq!(holder(&data), PidFileHolder::Nobody, "a reaped pid");

        let text = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
        std::fs::write(data.join("postmaster.pid"), text.replacen('\n', "x\n", 1)).unwrap();
        assert_eq!(
            holder(&data),
            PidFileHolder::Nobody,
            "no pid on the first line"
        );

        for child in [&mut postmaster, &mut other_postgres] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A process of a user other than the data directory's owner is never its postmaster,
    /// even one named `postgres` working there (and one this process could not read).
    #[test]
    fn a_process_of_another_user_is_a_stranger() {
        use std::os::unix::fs::PermissionsExt as _;
        use std::os::unix::process::CommandExt as _;
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        assert!(
            nix::unistd::geteuid().is_root(),
            "starting a process of another user takes root (test.sh runs as root)"
        );
        let other = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("the nobody user");
        let copy = root.path().join("postgres");
        std::fs::copy("/bin/sleep", &copy).unwrap();
        let mut theirs = Command::new(&copy)
            .arg("60")
            .current_dir(&data)
            .uid(other.uid.as_raw())
            .gid(other.gid.as_raw())
            .spawn()
            .unwrap();
        write_pid(&data, theirs.id());
        assert_eq!(holder(&data), PidFileHolder::Stranger(theirs.id() as i32));
        nix::unistd::chown(&data, Some(other.uid), Some(other.gid)).unwrap();
        assert_eq!(
            holder(&data),
            PidFileHolder::Postmaster(theirs.id() as i32),
            "once the directory is theirs"
        );
        theirs.kill().unwrap();
        theirs.wait().unwrap();
    }

    #[test]
    fn a_pid_file_that_is_a_fifo_or_a_symlink_is_not_read_and_a_file_gives_its_status() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        nix::unistd::mkfifo(&data.join("postmaster.pid"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let fifo = "a fifo (never blocks)";
        assert_eq!(holder(&data), PidFileHolder::Nobody, "{fifo}");
        assert_eq!(status_line(&data), None, "{fifo}");
        std::fs::remove_file(data.join("postmaster.pid")).unwrap();
        let target = root.path().join("elsewhere.pid");
        std::fs::write(&target, format!("{}\n", std::process::id())).unwrap();
        std::os::unix::fs::symlink(&target, data.join("postmaster.pid")).unwrap();
        assert_eq!(holder(&data), PidFileHolder::Nobody, "a symlink");
        assert_eq!(status_line(&data), None, "a symlink");
        std::fs::remove_file(data.join("postmaster.pid")).unwrap();
        write_pid(&data, std::process::id());
        assert_eq!(status_line(&data).as_deref(), Some("ready"));
    }
}
