//! A finished command's output: it must have succeeded (its stdout is the answer) or failed (its stderr says why).

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

/// The stderr of `out`, which must have failed; panics, with `what`, if it succeeded.
pub fn refused(what: &str, out: &Output) -> String {
    assert!(!out.status.success(), "{what} was not refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
