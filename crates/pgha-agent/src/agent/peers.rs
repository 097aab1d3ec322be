//! What a member remembers of its cluster beside its data (the cluster's identifier and the
//! members it formed it with, `pgha_pg::peers`): read once as its agent starts, kept as the
//! core sees them change.

use pgha_core::{Member, MemberName, SystemId};

use super::Agent;
use crate::spec::NodeSpec;

/// An agent that cannot read what its member remembers of its cluster does not start: without
/// it a store that lost the cluster (etcd's data gone, a wrong endpoint) would look empty to
/// it, and it would lead there beside a primary that lives on.
#[derive(Debug, thiserror::Error)]
#[error("member {member}: its agent does not start: {source}")]
pub struct MemoryUnreadable {
    pub member: MemberName,
    #[source]
    pub source: pgha_pg::PgError,
}

/// Gives `member` what `spec`'s member remembers of its cluster.
pub(super) fn recall(spec: &NodeSpec, member: &mut Member) -> Result<(), MemoryUnreadable> {
    let unreadable = |source| MemoryUnreadable {
        member: spec.name.clone(),
        source,
    };
    if let Some(id) = spec.instance.remembered_cluster().map_err(unreadable)? {
        member.knows_cluster(SystemId(id));
    }
    let peers = pgha_pg::peers::remembered(&spec.instance).map_err(unreadable)?;
    member.knows_peers(peers.iter().map(MemberName::new));
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgha_store::{MemoryStore, TokioClock};

    use crate::agent::Agent;
    use crate::test_spec::spec;

    /// Found by review: a `peers` (or `cluster-id`) file that could not be read counted as
    /// none, and the agent ran with the guard against a store that lost the cluster off.
    #[tokio::test]
    async fn an_agent_that_cannot_read_what_its_member_remembers_does_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let node = spec(dir.path());
        node.instance.create_member_dir().unwrap();
        pgha_pg::peers::remember(&node.instance, &["n1".into(), "n2".into()]).unwrap();
        let store = || Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (agent, _report) = Agent::new(node.clone(), store(), Default::default()).unwrap();
        assert_eq!(agent.peers_kept.len(), 2);
        let peers = node.instance.member_dir.join("peers");
        std::fs::remove_file(&peers).unwrap();
        std::fs::create_dir(&peers).unwrap();
        let Err(refused) = Agent::spawn(node, store(), Default::default()) else {
            panic!("an agent started without what its member remembers");
        };
        assert!(refused.to_string().contains("peers"), "{refused}");
    }
}
