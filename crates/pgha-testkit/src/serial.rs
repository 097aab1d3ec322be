//! One lock per test binary, held by each test that must not run beside the others.

use std::sync::{Mutex, MutexGuard};

/// Holds off every other test of this binary that takes it, until the guard is dropped; a test
/// that panicked while holding it does not poison it for the next.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
