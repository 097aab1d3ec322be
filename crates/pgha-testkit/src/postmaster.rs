//! The postmaster of a data directory: its pid, and an immediate stop for cleanup.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{alive, signal};
use crate::wait::poll;

/// The pid in `DATA/postmaster.pid`, if the file exists and that process lives.
pub fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Stops whatever postmaster runs on `data`: SIGQUIT (immediate shutdown; SIGCONT first, in
/// case a test stopped it), SIGKILL when it still lives 10 s later. For cleanup: never fails.
pub fn stop_postmaster(data: &Path) {
    let Some(pid) = postmaster_pid(data) else {
        return;
    };
    signal(pid, Signal::SIGCONT);
    signal(pid, Signal::SIGQUIT);
    let gone = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        (!alive(pid)).then_some(())
    });
    if gone.is_none() {
        signal(pid, Signal::SIGKILL);
    }
}
