//! The core's clock: boot-clock milliseconds since the agent started, and tokio/std instants.

use std::time::Duration;

use pgha_core::Millis;
use pgha_pg::lease_file::boot_clock_ms;
use tokio::time::Instant;

use super::Agent;

impl Agent {
    pub(crate) fn now(&self) -> Millis {
        Millis(boot_clock_ms().saturating_sub(self.boot_origin))
    }

    /// The tokio instant at which the core's time reaches `at`.
    pub(crate) fn instant_of(&self, at: Millis) -> Instant {
        Instant::now() + Duration::from_millis(at.0.saturating_sub(self.now().0))
    }

    /// An instant on the monotonic clock as the core's milliseconds.
    pub(crate) fn millis_at(&self, at: std::time::Instant) -> Millis {
        let now = self.now().0;
        let std_now = std::time::Instant::now();
        if at >= std_now {
            Millis(now + (at - std_now).as_millis() as u64)
        } else {
            Millis(now.saturating_sub((std_now - at).as_millis() as u64))
        }
    }
}
