//! Async work run to its end from any caller, a test's own runtime included.

use std::future::Future;

/// Runs the future `make` returns on a runtime of its own, on a thread of its own (a caller
/// inside a tokio runtime cannot block on another in place), and gives back its output; a
/// panic in it is the caller's.
pub fn on_own_thread<T, F>(make: impl FnOnce() -> F + Send) -> T
where
    T: Send,
    F: Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| crate::pg::small_runtime().block_on(make()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
