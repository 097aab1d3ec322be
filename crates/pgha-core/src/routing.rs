//! Pure routing choice for the proxy (I2): read-write to the confirmed lease holder only,
//! read-only to the least-loaded streaming standby within a lag bound.

use crate::types::MemberName;
use std::fmt;

/// What the proxy knows about one backend at the moment it routes a new session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: MemberName,
    /// The latest probe answered (None: no answer yet or it failed).
    pub in_recovery: Option<bool>,
    /// Streaming from the primary (for standbys).
    pub streaming: bool,
    /// Replication lag in bytes, when known.
    pub lag_bytes: Option<u64>,
    /// Sessions the proxy currently has open to it.
    pub connections: u32,
}

/// Where a new read-write session goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RwRoute {
    To(MemberName),
    /// Hold the session (bounded by the proxy) until a primary is known.
    Wait(NoPrimary),
}

/// Why no read-write target exists right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoPrimary {
    NoLeaseHolder,
    HolderUnknownToProxy(MemberName),
    HolderInRecovery(MemberName),
    HolderUnreachable(MemberName),
}

impl fmt::Display for NoPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoPrimary::NoLeaseHolder => write!(f, "nobody holds the leader lease"),
            NoPrimary::HolderUnknownToProxy(n) => write!(f, "leader {n} is not a known backend"),
            NoPrimary::HolderInRecovery(n) => write!(f, "leader {n} is still in recovery"),
            NoPrimary::HolderUnreachable(n) => write!(f, "leader {n} does not answer probes"),
        }
    }
}

/// The read-write target: the lease holder, and only once it answers `pg_is_in_recovery() =
/// false`. Sessions open to any other backend must be closed by the proxy on a change.
pub fn route_rw(lease_holder: Option<&MemberName>, backends: &[Backend]) -> RwRoute {
    let Some(holder) = lease_holder else {
        return RwRoute::Wait(NoPrimary::NoLeaseHolder);
    };
    let Some(backend) = backends.iter().find(|b| &b.name == holder) else {
        return RwRoute::Wait(NoPrimary::HolderUnknownToProxy(holder.clone()));
    };
    match backend.in_recovery {
        Some(false) => RwRoute::To(holder.clone()),
        Some(true) => RwRoute::Wait(NoPrimary::HolderInRecovery(holder.clone())),
        None => RwRoute::Wait(NoPrimary::HolderUnreachable(holder.clone())),
    }
}

/// The read-only target: a streaming standby within `max_lag_bytes` with the fewest sessions
/// (ties by name); `None` when no standby qualifies (the proxy may then use the primary).
pub fn route_ro(backends: &[Backend], max_lag_bytes: u64) -> Option<MemberName> {
    backends
        .iter()
        .filter(|b| b.in_recovery == Some(true) && b.streaming)
        .filter(|b| b.lag_bytes.is_some_and(|lag| lag <= max_lag_bytes))
        .min_by(|a, b| (a.connections, &a.name).cmp(&(b.connections, &b.name)))
        .map(|b| b.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, in_recovery: Option<bool>, lag: u64, connections: u32) -> Backend {
        Backend {
            name: name.into(),
            in_recovery,
            streaming: in_recovery == Some(true),
            lag_bytes: Some(lag),
            connections,
        }
    }

    #[test]
    fn rw_needs_the_holder_confirmed_out_of_recovery() {
        let n1: MemberName = "n1".into();
        let mut backends = vec![
            backend("n1", Some(true), 0, 0),
            backend("n2", Some(false), 0, 0),
        ];
        assert_eq!(
            route_rw(Some(&n1), &backends),
            RwRoute::Wait(NoPrimary::HolderInRecovery(n1.clone()))
        );
        backends[0].in_recovery = Some(false);
        assert_eq!(route_rw(Some(&n1), &backends), RwRoute::To(n1.clone()));
        assert_eq!(
            route_rw(None, &backends),
            RwRoute::Wait(NoPrimary::NoLeaseHolder)
        );
    }

    #[test]
    fn ro_prefers_fewest_sessions_within_lag() {
        let backends = vec![
            backend("n1", Some(false), 0, 0),
            backend("n2", Some(true), 10, 5),
            backend("n3", Some(true), 10, 2),
            backend("n4", Some(true), 10_000, 0),
        ];
        assert_eq!(route_ro(&backends, 100), Some("n3".into()));
        assert_eq!(route_ro(&backends[..1], 100), None);
    }
}
