//! The promises a leader was given, kept in a root-owned file beside its member directory, so
//! that an agent restarted in the same term (its leader key adopted) can still give them back
//! once its PostgreSQL stops: the next leader need not wait them out. Written by a thread of
//! its own, the newest content only: a stalled disk holds up no failsafe round.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::give_back::Held;

/// Where the promises held are written, by a thread that keeps only the newest content.
#[derive(Debug)]
pub(super) struct HeldFile {
    to_write: mpsc::Sender<String>,
}

/// The file beside the member's promise file (`<member dir>.failsafe`).
pub(super) fn path_beside(promise_file: &Path) -> PathBuf {
    let mut name = promise_file.file_name().unwrap_or_default().to_os_string();
    name.push("-held");
    promise_file.with_file_name(name)
}

impl HeldFile {
    /// Writes to `file` from now on (each write replaces the whole file).
    pub(super) fn open(file: PathBuf) -> HeldFile {
        let (to_write, written) = mpsc::channel::<String>();
        let writer = move || {
            while let Ok(mut text) = written.recv() {
                while let Ok(newer) = written.try_recv() {
                    text = newer;
                }
                if let Err(e) = super::promises::replace(&file, &text, false) {
                    tracing::debug!(
                        "failsafe: cannot keep the promises held in {}: {e}",
                        file.display()
                    );
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("failsafe-held".into())
            .spawn(writer)
        {
            tracing::warn!("failsafe: no thread to keep the promises held on disk: {e}");
        }
        HeldFile { to_write }
    }

    /// Has `held` (promises of `term`) written, soon.
    pub(super) fn keep(&self, term: u64, held: &[Held]) {
        let _ = self.to_write.send(text(term, held));
    }
}

/// One line a promise: "BOOT_ID DEADLINE_MS TERM PROMISE MEMBER API", the deadline on the boot
/// clock (a promise that ran out is left out).
fn text(term: u64, held: &[Held]) -> String {
    let now = Instant::now();
    let (boot, boot_now) = (
        super::promises::boot_id(),
        pgha_pg::lease_file::boot_clock_ms(),
    );
    held.iter()
        .filter(|h| h.until > now)
        .map(|h| {
            let left = h.until.saturating_duration_since(now).as_millis() as u64;
            format!(
                "{boot} {} {term} {} {} {}\n",
                boot_now + left,
                h.promise,
                h.member,
                h.api
            )
        })
        .collect()
}

/// The promises in `file` still running in this boot, and their term (the newest term's only).
pub(super) fn read(file: &Path) -> (u64, Vec<Held>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return (0, Vec::new());
    };
    let (boot, boot_now) = (
        super::promises::boot_id(),
        pgha_pg::lease_file::boot_clock_ms(),
    );
    let lines: Vec<(u64, Held)> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [line_boot, deadline, term, promise, member, api] = f[..] else {
                return None;
            };
            let left = deadline.parse::<u64>().ok()?.checked_sub(boot_now)?;
            (line_boot == boot && left > 0).then_some(())?;
            let held = Held {
                member: member.to_string(),
                api: api.to_string(),
                promise: promise.parse().ok()?,
                until: Instant::now() + Duration::from_millis(left),
            };
            Some((term.parse().ok()?, held))
        })
        .collect();
    let term = lines.iter().map(|(t, _)| *t).max().unwrap_or(0);
    let held = lines
        .into_iter()
        .filter(|(t, _)| *t == term)
        .map(|(_, h)| h)
        .collect();
    (term, held)
}
