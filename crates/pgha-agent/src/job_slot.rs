//! Jobs one at a time: a job replaced by another is cancelled, and the next begins only once
//! the cancelled one has really ended.
//!
//! Cancelling a task (`abort`) takes effect only at its next `.await`. A job blocked in a
//! system call (a configuration write on a stalled disk) goes on when the call returns, and up
//! to its next `.await` it may still act: write files, start a postmaster. So a cancelled job
//! keeps its turn until its task has ended, it is told to start nothing more (see
//! [`Cancelled`]), and while one that may make PostgreSQL writable winds down, the fence stays
//! armed ([`JobSlot::may_make_writable`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgha_core::JobKind;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Set once a job is cancelled: checked by the job before each step that starts something
/// (a postmaster), which a cancelled job must not begin.
#[derive(Clone, Debug, Default)]
pub struct Cancelled(Arc<AtomicBool>);

impl Cancelled {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One job's task, as the slot knows it.
struct Task {
    kind: JobKind,
    may_make_writable: bool,
    cancelled: Cancelled,
    handle: AbortHandle,
}

impl Task {
    fn cancel(&self) {
        self.cancelled.set();
        self.handle.abort();
    }
}

/// The agent's jobs: the one it runs now, and those cancelled whose task has not ended yet.
pub struct JobSlot {
    current: Option<Task>,
    cancelled: Vec<Task>,
    /// One permit, held by a job's task from its beginning to its end: the next job's task
    /// waits for it.
    turn: Arc<Semaphore>,
    /// The last job, when it ended with success and none has started since.
    succeeded: Option<JobKind>,
}

impl Default for JobSlot {
    fn default() -> Self {
        JobSlot {
            current: None,
            cancelled: Vec::new(),
            turn: Arc::new(Semaphore::new(1)),
            succeeded: None,
        }
    }
}

impl JobSlot {
    /// The job the agent runs now (a cancelled one no longer counts).
    pub fn current(&self) -> Option<JobKind> {
        self.current.as_ref().map(|t| t.kind)
    }

    /// Runs `job` once every earlier job has ended, cancelling the current one; the kind
    /// cancelled, if any. `job` is given the flag its cancellation sets.
    pub fn start<F, Fut>(
        &mut self,
        kind: JobKind,
        may_make_writable: bool,
        job: F,
    ) -> Option<JobKind>
    where
        F: FnOnce(Cancelled) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let replaced = self.cancel_current();
        self.succeeded = None;
        let cancelled = Cancelled::default();
        let job = job(cancelled.clone());
        let turn = self.turn.clone();
        let handle = tokio::spawn(async move {
            let Ok(_turn) = turn.acquire_owned().await else {
                return;
            };
            job.await;
        });
        self.current = Some(Task {
            kind,
            may_make_writable,
            cancelled,
            handle: handle.abort_handle(),
        });
        replaced
    }

    /// The current job of `kind` ended (its outcome arrived), with success or not.
    pub fn ended(&mut self, kind: JobKind, succeeded: bool) {
        if self.current() == Some(kind) {
            self.current = None;
            self.succeeded = succeeded.then_some(kind);
        }
    }

    /// The kind of the last job, when it succeeded and no job has started since.
    pub fn last_succeeded(&self) -> Option<JobKind> {
        self.succeeded
    }

    /// Whether a job that may make PostgreSQL writable has not ended: the current one, or a
    /// cancelled one still winding down.
    pub fn may_make_writable(&mut self) -> bool {
        self.cancelled.retain(|t| !t.handle.is_finished());
        self.current
            .iter()
            .chain(&self.cancelled)
            .any(|t| t.may_make_writable && !t.handle.is_finished())
    }

    /// Cancels the current job and waits up to `limit` for every job's task to end; whether
    /// they all did.
    pub async fn cancel_all(&mut self, limit: Duration) -> bool {
        self.cancel_current();
        let ended = tokio::time::timeout(limit, self.turn.clone().acquire_owned())
            .await
            .is_ok();
        self.cancelled.retain(|t| !t.handle.is_finished());
        ended
    }

    fn cancel_current(&mut self) -> Option<JobKind> {
        let task = self.current.take()?;
        task.cancel();
        let kind = task.kind;
        self.cancelled.push(task);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    fn say(log: &Log, what: &'static str) {
        log.lock().unwrap().push(what);
    }

    /// Starts a job that blocks its worker thread for `ms` (as a write on a frozen file system
    /// does), then says `then`, or `if_cancelled` when it was cancelled meanwhile (and may make
    /// PostgreSQL writable, as a start of a primary); returns once it is blocked.
    async fn start_blocked(
        slot: &mut JobSlot,
        log: &Log,
        ms: u64,
        then: &'static str,
        if_cancelled: &'static str,
    ) {
        let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
        let log = log.clone();
        slot.start(
            JobKind::Start,
            true,
            move |cancelled: Cancelled| async move {
                blocked_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(ms));
                say(
                    &log,
                    if cancelled.is_set() {
                        if_cancelled
                    } else {
                        then
                    },
                );
                tokio::time::sleep(Duration::from_secs(60)).await;
            },
        );
        tokio::task::spawn_blocking(move || blocked_rx.recv().unwrap())
            .await
            .unwrap();
    }

    type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A job that says `what` when it begins.
    fn saying(log: &Log, what: &'static str) -> impl FnOnce(Cancelled) -> Job {
        let log = log.clone();
        move |_| Box::pin(async move { say(&log, what) })
    }

    /// Waits until no job that may make PostgreSQL writable is left.
    async fn wait_unfenced(slot: &mut JobSlot) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while slot.may_make_writable() {
            assert!(Instant::now() < deadline, "the cancelled start never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for(log: &Log, lines: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.lock().unwrap().len() < lines {
            assert!(Instant::now() < deadline, "{:?}", log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A job blocked in a system call (a write on a stalled disk) when it is cancelled goes on
    /// once the call returns; the job that replaced it must not begin before then, and the
    /// fence must see a job that may make PostgreSQL writable until it has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_job_ends_before_the_next_begins_and_keeps_the_fence_meanwhile() {
        let log: Log = Arc::default();
        let mut slot = JobSlot::default();
        start_blocked(
            &mut slot,
            &log,
            400,
            "start: postmaster started",
            "start: cancelled",
        )
        .await;
        let replaced = slot.start(JobKind::Demote, false, saying(&log, "demote: begins"));
        assert_eq!(replaced, Some(JobKind::Start));
        assert_eq!(slot.current(), Some(JobKind::Demote));
        assert!(
            slot.may_make_writable(),
            "the cancelled start still runs: the fence must stay armed"
        );
        wait_for(&log, 2).await;
        wait_unfenced(&mut slot).await;
        assert_eq!(
            *log.lock().unwrap(),
            vec!["start: cancelled", "demote: begins"]
        );
        assert!(slot.cancel_all(Duration::from_secs(5)).await);
    }

    /// Jobs cancelled one after another while the first still winds down: the last begins
    /// only after all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_of_cancellations_keeps_the_jobs_in_order() {
        let log: Log = Arc::default();
        let mut slot = JobSlot::default();
        start_blocked(&mut slot, &log, 300, "first: not cancelled", "first: ended").await;
        slot.start(JobKind::Demote, false, saying(&log, "second: begins"));
        let replaced = slot.start(JobKind::Stop, false, saying(&log, "last: begins"));
        assert_eq!(replaced, Some(JobKind::Demote));
        wait_for(&log, 2).await;
        assert_eq!(*log.lock().unwrap(), vec!["first: ended", "last: begins"]);
        assert!(slot.cancel_all(Duration::from_secs(5)).await);
        wait_unfenced(&mut slot).await;
    }
}
