//! Decisions taken before any agent runs: whose data a restarted local cluster keeps as its
//! primary, and whether a data directory belongs to the cluster in the store at all.

use std::fmt;

use crate::types::{MemberName, SystemId};

/// What one member's data directory holds, as read from disk before its agent starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOnDisk {
    pub member: MemberName,
    /// `PGDATA` has been initialised.
    pub initialised: bool,
    /// `standby.signal` is present: the data is a standby's.
    pub standby_signal: bool,
    /// A rewind began on it and did not finish (`rewind-incomplete`): its files mix two
    /// histories, so it is nobody's primary data.
    pub rewind_incomplete: bool,
    /// The member remembers the cluster it belonged to (`cluster-id`), data or not.
    pub knows_cluster: bool,
}

/// Why no member is given the leader key of a restarting local cluster: its members then hold
/// an election (they all start as standbys, the best by timeline and position wins, the rest
/// follow or rewind), exactly as agents that each see only their own data do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedRefusal {
    /// Every initialised member is a standby: nobody holds a primary's data.
    NoPrimaryData,
    /// Several members hold a primary's data: giving the key to one would pick a history.
    SeveralPrimaries(Vec<MemberName>),
    /// No member has data, but these belonged to a cluster: its data is gone or not mounted,
    /// and a member given the key would initialise a new, empty one in its place.
    DataGone(Vec<MemberName>),
}

impl fmt::Display for SeedRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedRefusal::NoPrimaryData => write!(
                f,
                "no member holds a primary's data directory (every initialised member has \
                 standby.signal): the members elect a leader"
            ),
            SeedRefusal::SeveralPrimaries(names) => write!(
                f,
                "members {} all hold primary data directories (a failover the cluster stopped \
                 during): they start as standbys and elect the one with the newest data",
                names
                    .iter()
                    .map(MemberName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SeedRefusal::DataGone(names) => write!(
                f,
                "no member has a data directory, but {} belonged to a cluster (cluster-id \
                 beside the member directory): its data is gone or not mounted, and pgha does \
                 not initialise a new cluster in its place; mount the data again, or remove \
                 the member directories to start an empty cluster",
                names
                    .iter()
                    .map(MemberName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The member a local cluster whose store has no leader gives the leader key to before its
/// agents start, so that a restart keeps the same primary and timeline instead of holding an
/// election among members that all start as standbys: the one member with a primary's data,
/// or the first member of a brand-new cluster (it bootstraps). `Ok(None)`: a leader exists.
///
/// Only a host that sees every member's data directory can take this decision (`pgha up`);
/// agents that each see their own data hold an election.
pub fn seed_leader(
    leader_exists: bool,
    disks: &[DataOnDisk],
) -> Result<Option<MemberName>, SeedRefusal> {
    if leader_exists {
        return Ok(None);
    }
    let initialised: Vec<&DataOnDisk> = disks.iter().filter(|d| d.initialised).collect();
    if initialised.is_empty() {
        let knew: Vec<MemberName> = disks
            .iter()
            .filter(|d| d.knows_cluster)
            .map(|d| d.member.clone())
            .collect();
        if !knew.is_empty() {
            return Err(SeedRefusal::DataGone(knew));
        }
        return Ok(disks.first().map(|d| d.member.clone()));
    }
    let primaries: Vec<MemberName> = initialised
        .iter()
        .filter(|d| !d.standby_signal && !d.rewind_incomplete)
        .map(|d| d.member.clone())
        .collect();
    match primaries.as_slice() {
        [one] => Ok(Some(one.clone())),
        [] => Err(SeedRefusal::NoPrimaryData),
        _ => Err(SeedRefusal::SeveralPrimaries(primaries)),
    }
}

/// A data directory made by another cluster than the one in the store: nothing may touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignData {
    pub store: SystemId,
    pub local: SystemId,
}

/// Whether local data with system identifier `local` may be used by a member of the cluster
/// the store initialised with `store` (either unknown: yes).
pub fn check_belongs(store: Option<SystemId>, local: Option<SystemId>) -> Result<(), ForeignData> {
    match (store, local) {
        (Some(store), Some(local)) if store != local => Err(ForeignData { store, local }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, initialised: bool, standby_signal: bool) -> DataOnDisk {
        DataOnDisk {
            member: MemberName::new(name),
            initialised,
            standby_signal,
            rewind_incomplete: false,
            knows_cluster: initialised,
        }
    }

    /// A half-rewound directory (no standby.signal: pg_rewind writes none) is nobody's
    /// primary data; and members that belonged to a cluster whose data is all gone get no
    /// new, empty cluster (before: the first member was seeded and initialised one).
    #[test]
    fn half_rewound_or_vanished_data_is_never_seeded() {
        let half = DataOnDisk {
            rewind_incomplete: true,
            ..disk("n1", true, false)
        };
        let disks = [half.clone(), disk("n2", true, false)];
        assert_eq!(seed_leader(false, &disks), Ok(Some(MemberName::new("n2"))));
        assert_eq!(
            seed_leader(false, &[half, disk("n2", true, true)]),
            Err(SeedRefusal::NoPrimaryData)
        );
        let gone = DataOnDisk {
            knows_cluster: true,
            ..disk("n2", false, false)
        };
        let refused = seed_leader(false, &[disk("n1", false, false), gone]);
        assert_eq!(
            refused,
            Err(SeedRefusal::DataGone(vec![MemberName::new("n2")]))
        );
        assert!(refused.unwrap_err().to_string().contains("not mounted"));
    }

    #[test]
    fn a_new_cluster_gives_the_key_to_its_first_member() {
        let disks = [disk("n1", false, false), disk("n2", false, false)];
        assert_eq!(seed_leader(false, &disks), Ok(Some(MemberName::new("n1"))));
        assert_eq!(seed_leader(true, &disks), Ok(None));
    }

    #[test]
    fn a_restart_keeps_the_member_with_the_primarys_data() {
        let disks = [
            disk("n1", true, true),
            disk("n2", true, false),
            disk("n3", false, false),
        ];
        assert_eq!(seed_leader(false, &disks), Ok(Some(MemberName::new("n2"))));
    }

    #[test]
    fn no_primary_or_two_primaries_are_refused() {
        let standbys = [disk("n1", true, true), disk("n2", true, true)];
        assert_eq!(
            seed_leader(false, &standbys),
            Err(SeedRefusal::NoPrimaryData)
        );
        let two = [disk("n1", true, false), disk("n2", true, false)];
        assert_eq!(
            seed_leader(false, &two),
            Err(SeedRefusal::SeveralPrimaries(vec![
                MemberName::new("n1"),
                MemberName::new("n2")
            ]))
        );
    }

    #[test]
    fn data_of_another_cluster_does_not_belong() {
        assert!(check_belongs(None, Some(SystemId(1))).is_ok());
        assert!(check_belongs(Some(SystemId(1)), None).is_ok());
        assert!(check_belongs(Some(SystemId(1)), Some(SystemId(1))).is_ok());
        assert_eq!(
            check_belongs(Some(SystemId(1)), Some(SystemId(2))),
            Err(ForeignData {
                store: SystemId(1),
                local: SystemId(2)
            })
        );
    }
}
