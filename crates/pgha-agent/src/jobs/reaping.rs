//! A dead postmaster's zombie: recognised, and waited for until its parent reaps it.

use std::time::{Duration, Instant};

/// How long a dead postmaster may stay an unreaped zombie before starting is tried anyway
/// (PostgreSQL refuses to start while its lock file names a pid that answers signals).
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Whether process `pid` has exited but not been reaped by its parent yet.
pub(super) fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Waits (bounded) until a dead postmaster's zombie is gone.
pub(super) async fn wait_reaped(inst: &pgha_pg::Instance) {
    let deadline = Instant::now() + REAP_WAIT;
    while inst.postmaster_pid().is_some_and(is_zombie) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_zombie;

    #[test]
    fn an_exited_unreaped_child_is_a_zombie_until_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A zombie still answers kill(pid, 0): that alone cannot tell a dead postmaster.
        let probe = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap();
        assert!(probe.success());
        child.wait().unwrap();
        assert!(!is_zombie(pid));
        assert!(!is_zombie(std::process::id() as i32));
    }
}
