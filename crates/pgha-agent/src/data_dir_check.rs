//! Whether the data directory takes writes: a thread of its own writes and syncs one page
//! there every half second and keeps since when the check has been in flight, or failing; the
//! core judges how long is too long (`pgha_core::DATA_DIR_STALL_MS`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pgha_pg::beneath::{takes_a_write, WriteCheck};
use pgha_pg::osuser::RunAs;

/// How long the thread rests between two checks.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A check slower than this is logged (a healthy disk syncs a page in milliseconds).
const SLOW_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Seen {
    /// When the check in flight began.
    in_flight_since: Option<Instant>,
    /// When the first of the checks failing in a row began.
    failing_since: Option<Instant>,
    /// The agent is gone: no check after the one in flight.
    stop: bool,
}

/// The agent's side of its data directory's checks; dropping it ends them.
#[derive(Debug)]
pub struct DataDirCheck {
    seen: Arc<Mutex<Seen>>,
}

impl DataDirCheck {
    /// Checks `data_dir` from now on (through `run_as`'s eyes: nothing the PostgreSQL OS user
    /// planted there is followed), `member` naming it in the log.
    pub fn start(member: String, data_dir: PathBuf, run_as: RunAs) -> DataDirCheck {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let checker = move || loop {
            let began = Instant::now();
            {
                let mut seen = lock(&shared);
                if seen.stop {
                    return;
                }
                seen.in_flight_since = Some(began);
            }
            let result = takes_a_write(&data_dir, &run_as);
            let took = began.elapsed();
            let mut seen = lock(&shared);
            seen.in_flight_since = None;
            match result {
                Ok(WriteCheck::Taken | WriteCheck::NoDirectory) => {
                    if seen.failing_since.take().is_some() {
                        tracing::info!("{member}: the data directory takes writes again");
                    }
                }
                Ok(WriteCheck::Unsupported) => {
                    tracing::warn!(
                        "{member}: the file system of {} has no unnamed files (O_TMPFILE): \
                         whether it takes writes is not checked, and a member whose disk \
                         stalls may be picked for a failover",
                        data_dir.display()
                    );
                    seen.failing_since = None;
                    return;
                }
                Err(e) => {
                    if seen.failing_since.is_none() {
                        tracing::warn!("{member}: the data directory does not take a write: {e}");
                        seen.failing_since = Some(began);
                    }
                }
            }
            drop(seen);
            if took >= SLOW_CHECK {
                tracing::info!(
                    "{member}: writing and syncing one page in the data directory took {} ms",
                    took.as_millis()
                );
            }
            std::thread::sleep(CHECK_EVERY);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("data-dir-check".into())
            .spawn(checker)
        {
            tracing::warn!("no thread to check that the data directory takes writes: {e}");
        }
        DataDirCheck { seen }
    }

    /// Since when the data directory has not shown that it takes a write: the check in
    /// flight, or the first of those failing in a row. `None`: the last check went through
    /// (or found no data directory).
    pub fn unwritable_since(&self) -> Option<Instant> {
        let seen = lock(&self.seen);
        seen.failing_since.or(seen.in_flight_since)
    }
}

impl Drop for DataDirCheck {
    fn drop(&mut self) {
        lock(&self.seen).stop = true;
    }
}

/// The state, whatever a thread that panicked holding it left.
fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 5 s for `check` to say `unwritable` (or not).
    fn says(check: &DataDirCheck, unwritable: bool) -> bool {
        let said = || (check.unwritable_since().is_some() == unwritable).then_some(());
        pgha_testkit::poll(Duration::from_secs(5), Duration::from_millis(20), said).is_some()
    }

    /// A data directory that cannot be written (here a file where the directory should be, as
    /// `ENOTDIR`; a failed disk answers `EIO`) is unwritable since its first failed check, and
    /// writable again once a check goes through; a missing one is nothing to check.
    #[test]
    fn a_failing_data_directory_is_unwritable_until_a_check_goes_through() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let run_as = RunAs::detect("postgres").unwrap_or(RunAs { user: None });
        let missing = DataDirCheck::start("n1".into(), tmp.path().join("absent"), run_as.clone());
        std::fs::write(&data, "not a directory").unwrap();
        let check = DataDirCheck::start("n2".into(), data.clone(), run_as);
        assert!(says(&check, true), "a data directory that is a file");
        let first = check.unwritable_since();
        std::thread::sleep(CHECK_EVERY * 2);
        assert_eq!(check.unwritable_since(), first, "since the first failure");
        std::fs::remove_file(&data).unwrap();
        std::fs::create_dir(&data).unwrap();
        assert!(says(&check, false), "a data directory that takes writes");
        assert!(says(&missing, false), "no data directory");
    }
}
