//! The promises a member gave leaders during store outages (not to take the lease before an
//! instant), kept in a root-owned file so that a restarted agent or a rebooted host still keeps
//! them. Each is named by an identifier its leader receives with the confirmation, so that a
//! leader that stopped writing can give back exactly the promises it was given, and no other.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// One promise: not to take the lease before `until`, given to `leader` in `term`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    /// What the leader was told (never 0; 0 is a promise read from the file of an older
    /// agent, which named none: it is never given back, only runs out).
    pub id: u64,
    pub until: Instant,
    pub leader: String,
    pub term: u64,
}

impl Promise {
    /// A promise to `leader` in `term` for `length` from now, with an identifier of its own.
    pub fn new(leader: &str, term: u64, length: Duration) -> Promise {
        Promise {
            id: rand::random::<u64>().max(1),
            until: Instant::now() + length,
            leader: leader.to_string(),
            term,
        }
    }

    /// What stands for the promises of a file that could not be read: one no leader may give
    /// back (its identifier is 0), running `length` from now.
    pub fn unknown(length: Duration) -> Promise {
        Promise {
            id: 0,
            until: Instant::now() + length,
            leader: String::new(),
            term: 0,
        }
    }

    /// Whether `leader` may give it back in `term` naming `ids`.
    pub fn given_back_by(&self, leader: &str, term: u64, ids: &[u64]) -> bool {
        self.id != 0 && self.leader == leader && self.term == term && ids.contains(&self.id)
    }
}

/// This boot's identity: a boot-clock instant means nothing after a reboot. Never empty (a
/// file's fields would shift): "unknown" where the kernel does not say.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Writes the promises that still run, one a line, the longest first, atomically:
/// "BOOT_ID DEADLINE_MS LENGTH_MS ID LEADER TERM" (the deadline on the boot clock, and how
/// long the promise ran from when it was written). An agent older than the identifiers reads
/// the first three fields of the file: the longest promise, which keeps it safe to go back to.
pub fn write(file: &Path, promises: &[Promise]) -> std::io::Result<()> {
    let now = Instant::now();
    let boot = boot_id();
    let boot_now = pgha_pg::lease_file::boot_clock_ms();
    let mut running: Vec<&Promise> = promises.iter().filter(|p| p.until > now).collect();
    running.sort_by_key(|p| std::cmp::Reverse(p.until));
    let mut text = String::new();
    for p in running {
        let left = p.until.saturating_duration_since(now).as_millis() as u64;
        text.push_str(&format!(
            "{boot} {} {left} {} {} {}\n",
            boot_now + left,
            p.id,
            p.leader,
            p.term
        ));
    }
    replace(file, &text, true)
}

/// Replaces `file` with `text` at once (a temporary file beside it, root's alone, renamed
/// over it; with `sync`, the file synced before and its directory after the rename, so the
/// new content is what a power loss leaves): a reader finds the old content or the new, never
/// a part. The promises' file and the leader's file of promises held are written this way.
pub(super) fn replace(file: &Path, text: &str, sync: bool) -> std::io::Result<()> {
    // one name a write: two writers of one process (an agent leaving, its successor starting)
    // never share a temporary file
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = file.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}.{n}", std::process::id()));
    let tmp = file.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)?;
    if sync {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

/// The promises kept in `file` that may still run. One written during this boot runs to its
/// deadline. One written before a reboot may still run: the leader it confirmed writes on it
/// as long as it lasts, whatever happened to this host, and a reboot can take less than a
/// ttl; it was written before the reboot, so it runs for its length from now at the most.
/// None kept: no file. A file that cannot be read is an error (no promise is taken for none).
pub fn read(file: &Path) -> std::io::Result<Vec<Promise>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let boot = boot_id();
    Ok(text
        .lines()
        .filter_map(|line| read_line(line, &boot))
        .collect())
}

fn read_line(line: &str, this_boot: &str) -> Option<Promise> {
    let mut fields = line.split_whitespace();
    let (boot, deadline) = (fields.next()?, fields.next()?.parse::<u64>().ok()?);
    let length = fields.next().and_then(|l| l.parse::<u64>().ok());
    let left = if boot == this_boot {
        deadline.checked_sub(pgha_pg::lease_file::boot_clock_ms())?
    } else {
        // written by an agent older than the length in the file: nothing to go by
        length?
    };
    if left == 0 {
        return None;
    }
    // Written by an agent older than the identifiers: a promise to nobody it can name.
    let id = fields.next().and_then(|i| i.parse().ok()).unwrap_or(0);
    let leader = fields.next().unwrap_or_default().to_string();
    let term = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(Promise {
        id,
        until: Instant::now() + Duration::from_millis(left),
        leader,
        term,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_read_back_longest_first_and_an_older_agents_line_is_kept_unnamed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n2.failsafe");
        let short = Promise::new("n1", 7, Duration::from_secs(10));
        let long = Promise::new("n1", 8, Duration::from_secs(30));
        let over = Promise {
            until: Instant::now() - Duration::from_millis(1),
            ..Promise::new("n3", 2, Duration::ZERO)
        };
        write(&file, &[short.clone(), over, long.clone()]).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let first: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(first[3..], [&long.id.to_string(), "n1", "8"], "{text}");
        let back = read(&file).unwrap();
        assert_eq!(back.len(), 2, "the promise run out is not kept: {text}");
        assert_eq!((back[0].id, back[0].term), (long.id, 8));
        assert_eq!((back[1].id, back[1].leader.as_str()), (short.id, "n1"));
        assert!(back[0].until > Instant::now() + Duration::from_secs(25));
        // An older agent's file: three fields, a promise no leader can give back.
        std::fs::write(&file, "another-boot 99999999999 20000\n").unwrap();
        let old = read(&file).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].id, 0);
        assert!(!old[0].given_back_by("", 0, &[0]));
    }

    #[test]
    fn only_its_leader_in_its_term_naming_it_gives_a_promise_back() {
        let p = Promise::new("n1", 7, Duration::from_secs(10));
        assert!(p.id != 0);
        assert!(p.given_back_by("n1", 7, &[p.id]));
        assert!(!p.given_back_by("n1", 8, &[p.id]), "another term");
        assert!(!p.given_back_by("n3", 7, &[p.id]), "another leader");
        assert!(!p.given_back_by("n1", 7, &[p.id ^ 1]), "another promise");
    }

    /// Found by review: the file was synced and renamed into place, but its directory was not
    /// synced, so a power loss right after a confirmation could leave no file at all (the
    /// rename not in the journal yet), and the rebooted member would take the lease while the
    /// leader it confirmed still wrote on that promise.
    #[test]
    fn a_promise_written_survives_a_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk =
            pgha_testkit::LoopDisk::mount(&dir.path().join("img"), &dir.path().join("disk"), 32);
        let file = disk.path().join("n2.failsafe");
        // Every write on the disk before it for good: only the promise is at stake.
        assert!(std::process::Command::new("sync")
            .status()
            .unwrap()
            .success());
        let promise = Promise::new("n1", 7, Duration::from_secs(30));
        write(&file, std::slice::from_ref(&promise)).unwrap();
        disk.lose_power();
        let back = read(&file).unwrap();
        assert_eq!(back.len(), 1, "the promise was lost with the power");
        assert_eq!((back[0].id, back[0].term), (promise.id, 7));
    }
}
