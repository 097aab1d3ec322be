//! Several real etcd members forming one cluster on loopback, each killed (by pid) on drop.

use crate::etcd::EtcdNode;
use crate::etcd_server::EtcdServer;
use crate::port::free_ports;

/// The members, in the order they were named (`m0`, `m1`, ...).
pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each answers `/health` (which needs a leader). A
    /// free port can be taken by someone else before etcd binds it: three tries.
    pub fn start(size: usize) -> EtcdCluster {
        let mut last_error = String::new();
        for attempt in 0..3 {
            match Self::try_start(size, attempt) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start an etcd cluster of {size}: {last_error}");
    }

    fn try_start(size: usize, attempt: usize) -> Result<EtcdCluster, String> {
        let ports = free_ports(2 * size);
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let initial_cluster = (0..size)
            .map(|i| format!("m{i}=http://{}", addr(size + i)))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("pgha-test-{}-{attempt}", std::process::id());
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let node = EtcdNode {
                name: format!("m{i}"),
                client: addr(i),
                peer: addr(size + i),
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                tls: None,
                extra_args: Vec::new(),
            };
            let mut member = EtcdServer::new_temporary(node);
            member.spawn()?;
            members.push(member);
        }
        for member in &mut members {
            member.wait_healthy()?;
        }
        Ok(EtcdCluster { members })
    }
}
