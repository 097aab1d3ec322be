//! The campaign's one time base: microseconds since it started, and the wall clock at that
//! instant (to place a server's `clock_timestamp()` on the same axis).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Microseconds since the campaign started.
pub type Micros = i64;

/// The campaign's start, on the monotonic and on the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_epoch_us: i64,
}

impl Clock {
    pub fn start() -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start: Instant::now(),
            start_epoch_us: epoch.as_micros() as i64,
        }
    }

    /// Now, in microseconds since the start.
    pub fn now(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    /// A wall-clock instant (µs since the Unix epoch) on the campaign's axis.
    pub fn from_epoch_us(&self, epoch_us: i64) -> Micros {
        epoch_us - self.start_epoch_us
    }

    /// The wall-clock start, µs since the Unix epoch.
    pub fn start_epoch_us(&self) -> i64 {
        self.start_epoch_us
    }
}

/// `us` as a duration (0 when negative).
pub fn duration(us: Micros) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// `us` in milliseconds, for reports.
pub fn ms(us: Micros) -> f64 {
    us as f64 / 1000.0
}
