//! A finished command's output: it must have succeeded (its stdout is the answer) or failed (its stderr says why).

use std::process::{Command, Output, Stdio};

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

/// Runs `cmd` (stdin closed) to its end; its output, or a panic naming the command, its exit
/// status, stdout and stderr, unless it succeeded.
pub fn must(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
