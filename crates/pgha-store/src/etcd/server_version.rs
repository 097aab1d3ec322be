//! etcd's server version, and whether it is one that lets a stalled leader revoke leases kept
//! alive elsewhere once it resumes (etcd-io/etcd#15247, fixed in 3.4.28 and 3.5.11).

use super::EtcdStore;
use crate::error::StoreError;

/// Whether etcd `version` ("3.4.23") lets a leader that stalled (a paused VM, a disk stuck in
/// fsync) revoke, once it resumes, the leases that expired on its own stopped clock, though
/// the new leader kept them alive: the leader key then vanishes before its lease ends, and the
/// members elect again. Unknown versions are not said to.
pub fn revokes_leases_after_a_stall(version: &str) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
    match (
        parts.next().flatten(),
        parts.next().flatten(),
        parts.next().flatten(),
    ) {
        (Some(3), Some(minor), _) if minor < 4 => true,
        (Some(3), Some(4), Some(patch)) => patch < 28,
        (Some(3), Some(5), Some(patch)) => patch < 11,
        _ => false,
    }
}

impl EtcdStore {
    /// The version of the etcd member in use (its maintenance status).
    pub async fn server_version(&self) -> Result<String, StoreError> {
        self.call(async {
            let mut client = self.client();
            let status = client.status().await.map_err(super::convert::map_err)?;
            Ok(status.version().to_string())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::revokes_leases_after_a_stall;

    #[test]
    fn versions_before_the_fix_are_named() {
        for version in ["3.4.23", "3.4.27", "3.5.0", "3.5.10", "3.3.25"] {
            assert!(revokes_leases_after_a_stall(version), "{version}");
        }
        for version in [
            "3.4.28", "3.4.35", "3.5.11", "3.5.17", "3.6.0", "4.0.1", "weird",
        ] {
            assert!(!revokes_leases_after_a_stall(version), "{version}");
        }
    }
}
