//! Injectable monotonic clocks for lease expiry: a manual one for tests, a tokio one for real.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A monotonic clock, as elapsed time since the clock's own origin.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep<'_>;
}

/// Real monotonic time through tokio (so `tokio::time::pause` also works).
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep_until(self.origin + deadline))
    }
}

/// A clock that moves only when a test calls [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Duration>,
    ticks: tokio::sync::watch::Sender<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        ManualClock {
            now: Mutex::new(Duration::ZERO),
            ticks: tokio::sync::watch::Sender::new(Duration::ZERO),
        }
    }

    /// Moves time forward by `by` and wakes every sleeper whose deadline passed.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
        self.ticks.send_replace(*now);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().expect("clock lock")
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep<'_> {
        let mut ticks = self.ticks.subscribe();
        Box::pin(async move {
            while *ticks.borrow_and_update() < deadline {
                if ticks.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}
