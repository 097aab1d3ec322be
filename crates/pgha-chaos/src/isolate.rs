//! Cutting this host off from the cluster's other hosts (a network partition, both ways), or
//! making its links to them lose a share of their packets: iptables rules in a chain of this
//! process's own, removed when the guard is dropped.

use std::net::IpAddr;
use std::process::Command;

/// Why this host could not be cut off, or not restored.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    #[error("isolate-host cuts this host off from other hosts, but {0} is this machine (loopback): run the members and etcd on hosts (or network namespaces) of their own")]
    Loopback(IpAddr),
    #[error("isolate-host needs IP addresses of the other hosts; {0:?} is not one")]
    NotAnAddress(String),
    #[error("isolate-host: no other host to cut this one off from")]
    NoPeers,
    #[error("`iptables {args}` failed: {why} (isolate-host needs root and iptables)")]
    Iptables { args: String, why: String },
}

/// Which packets between this host and its peers are dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Every one: a partition.
    All,
    /// A random share of them (0..1), each on its own: a lossy link, over which TCP still
    /// gets through, late.
    Share(f64),
}

/// This host cut off from `peers`, or its links to them lossy, until dropped.
#[derive(Debug)]
pub struct Isolated {
    chain: String,
}

impl Isolated {
    /// Drops packets from or to `peers` (IP addresses), in both directions, including those
    /// of connections already open: all of them, or a random share.
    pub fn cut(peers: &[String], loss: Loss) -> Result<Isolated, IsolateError> {
        let addresses = peer_addresses(peers)?;
        let chain = format!("PGHA_CHAOS_{}", std::process::id());
        let guard = Isolated { chain };
        let chain = guard.chain.as_str();
        let share = match loss {
            Loss::All => None,
            Loss::Share(p) => Some(format!("{p}")),
        };
        let mut matching: Vec<&str> = Vec::new();
        if let Some(p) = &share {
            matching.extend(["-m", "statistic", "--mode", "random", "--probability", p]);
        }
        iptables(&["-N", chain])?;
        for address in &addresses {
            let a = address.to_string();
            for way in ["-s", "-d"] {
                let mut rule = vec!["-A", chain, way, a.as_str()];
                rule.extend(&matching);
                rule.extend(["-j", "DROP"]);
                iptables(&rule)?;
            }
        }
        iptables(&["-I", "INPUT", "1", "-j", chain])?;
        iptables(&["-I", "OUTPUT", "1", "-j", chain])?;
        Ok(guard)
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let chain = self.chain.as_str();
        for args in [
            &["-D", "INPUT", "-j", chain][..],
            &["-D", "OUTPUT", "-j", chain],
            &["-F", chain],
            &["-X", chain],
        ] {
            if let Err(e) = iptables(args) {
                tracing::warn!("restoring the network after isolate-host: {e}");
            }
        }
    }
}

/// The distinct addresses of `peers`, refusing names and this machine's loopback.
fn peer_addresses(peers: &[String]) -> Result<Vec<IpAddr>, IsolateError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for peer in peers {
        let address: IpAddr = peer
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| IsolateError::NotAnAddress(peer.clone()))?;
        if address.is_loopback() || address.is_unspecified() {
            return Err(IsolateError::Loopback(address));
        }
        if !out.contains(&address) {
            out.push(address);
        }
    }
    if out.is_empty() {
        return Err(IsolateError::NoPeers);
    }
    Ok(out)
}

fn iptables(args: &[&str]) -> Result<(), IsolateError> {
    let program = if args.iter().any(|a| a.contains(':')) {
        "ip6tables"
    } else {
        "iptables"
    };
    let failed = |why: String| IsolateError::Iptables {
        args: args.join(" "),
        why,
    };
    let out = Command::new(program)
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_must_be_addresses_of_other_hosts() {
        let ok = peer_addresses(&["10.0.0.2".into(), "10.0.0.3".into(), "10.0.0.2".into()]);
        assert_eq!(ok.unwrap().len(), 2);
        assert!(matches!(
            peer_addresses(&["127.0.0.1".into()]),
            Err(IsolateError::Loopback(_))
        ));
        assert!(matches!(
            peer_addresses(&["etcd.example".into()]),
            Err(IsolateError::NotAnAddress(_))
        ));
        assert!(matches!(peer_addresses(&[]), Err(IsolateError::NoPeers)));
    }
}
