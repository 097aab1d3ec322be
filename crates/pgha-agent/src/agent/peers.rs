//! Keeps the members the core has seen form the cluster beside the data (`pgha_pg::peers`).

use super::Agent;

impl Agent {
    /// Writes the core's peers beside the data directory when they changed since the last
    /// write (or since they were read at start).
    pub(crate) fn keep_peers(&mut self) {
        let peers = self.member.peers();
        if peers == self.peers_kept {
            return;
        }
        let names: Vec<String> = peers.iter().map(|n| n.to_string()).collect();
        match pgha_pg::peers::remember(&self.spec.instance, &names) {
            Ok(()) => self.peers_kept = peers,
            Err(e) => tracing::warn!(
                "{}: cannot keep the cluster's members beside the data directory: {e}",
                self.spec.name
            ),
        }
    }
}
