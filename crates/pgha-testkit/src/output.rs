//! A finished command's output: it must have succeeded, and then its stdout is the answer.

use std::process::Output;

/// The stdout of `out`; panics, with `what`, the exit status and stderr, unless it succeeded.
pub fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
