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
    /// Whether `standby.signal` is there could not be looked at (an I/O error).
    pub signal_unknown: bool,
    /// A rewind began on it and did not finish (`rewind-incomplete`): its files mix two
    /// histories, so it is nobody's primary data.
    pub rewind_incomplete: bool,
    /// The member remembers the cluster it belonged to (`cluster-id`), data or not (or that
    /// file could not be read: as remembered).
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
    /// Whether these members hold a primary's data could not be looked at: giving the key to
    /// another could pick an older history than theirs.
    Unreadable(Vec<MemberName>),
    /// No member has data, but these belonged to a cluster: its data is gone or not mounted,
    /// and a member given the key would initialise a new, empty one in its place.
    DataGone(Vec<MemberName>),
    /// The one member with a primary's data is not the last leader the store knows of (its
    /// `position` key): it was stopped as the primary and another led after it, whose WAL
    /// (on a newer timeline, with writes clients were told were committed) its data lacks.
    NotTheLastLeader {
        primary_data: MemberName,
        last_leader: MemberName,
    },
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
            SeedRefusal::Unreadable(names) => write!(
                f,
                "whether {} hold a primary's data could not be looked at (standby.signal could \
                 not be read): they start as standbys and elect the one with the newest data",
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
            SeedRefusal::NotTheLastLeader {
                primary_data,
                last_leader,
            } => write!(
                f,
                "{primary_data} holds a primary's data directory, but {last_leader} led after it \
                 (the store's position key): the members elect the one with the newest data"
            ),
        }
    }
}

/// The member a local cluster whose store has no leader gives the leader key to before its
/// agents start, so that a restart keeps the same primary and timeline instead of holding an
/// election among members that all start as standbys: the one member with a primary's data,
/// or the first member of a brand-new cluster (it bootstraps). `Ok(None)`: a leader exists.
///
/// `last_leader` is the leader the store's `position` key names, if any: a member with a
/// primary's data is seeded only if it led last, for a leader stopped with `pgha stop` keeps a
/// primary's data while another leads on after it.
///
/// Only a host that sees every member's data directory can take this decision (`pgha up`);
/// agents that each see their own data hold an election.
pub fn seed_leader(
    leader_exists: bool,
    last_leader: Option<&MemberName>,
    disks: &[DataOnDisk],
) -> Result<Option<MemberName>, SeedRefusal> {
    if leader_exists {
        return Ok(None);
    }
    let initialised: Vec<&DataOnDisk> = disks.iter().filter(|d| d.initialised).collect();
    if initialised.is_empty() {
        let knew = names_of(disks.iter(), |d| d.knows_cluster);
        if !knew.is_empty() {
            return Err(SeedRefusal::DataGone(knew));
        }
        return Ok(disks.first().map(|d| d.member.clone()));
    }
    let unknown = names_of(initialised.iter().copied(), |d| d.signal_unknown);
    if !unknown.is_empty() {
        return Err(SeedRefusal::Unreadable(unknown));
    }
    let primaries = names_of(initialised.iter().copied(), |d| {
        !d.standby_signal && !d.rewind_incomplete
    });
    match primaries.as_slice() {
        [one] => match last_leader {
            Some(last) if last != one => Err(SeedRefusal::NotTheLastLeader {
                primary_data: one.clone(),
                last_leader: last.clone(),
            }),
            _ => Ok(Some(one.clone())),
        },
        [] => Err(SeedRefusal::NoPrimaryData),
        _ => Err(SeedRefusal::SeveralPrimaries(primaries)),
    }
}

/// The members of `disks` for which `holds` is true.
fn names_of<'a>(
    disks: impl Iterator<Item = &'a DataOnDisk>,
    holds: impl Fn(&DataOnDisk) -> bool,
) -> Vec<MemberName> {
    disks
        .filter(|d| holds(d))
        .map(|d| d.member.clone())
        .collect()
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
            signal_unknown: false,
            rewind_incomplete: false,
            knows_cluster: initialised,
        }
    }

    /// Found by review: a directory whose standby.signal could not be looked at was counted as
    /// a standby's, and the one other member with a primary's data was seeded, where that
    /// directory may hold a newer primary's: nobody is seeded then, the members elect.
    #[test]
    fn no_seed_while_a_members_data_cannot_be_looked_at() {
        let unknown = DataOnDisk {
            signal_unknown: true,
            ..disk("n2", true, true)
        };
        let disks = [disk("n1", true, false), unknown, disk("n3", true, true)];
        assert_eq!(
            seed_leader(false, None, &disks),
            Err(SeedRefusal::Unreadable(vec![MemberName::new("n2")]))
        );
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
        assert_eq!(
            seed_leader(false, None, &disks),
            Ok(Some(MemberName::new("n2")))
        );
        assert_eq!(
            seed_leader(false, None, &[half, disk("n2", true, true)]),
            Err(SeedRefusal::NoPrimaryData)
        );
        let gone = DataOnDisk {
            knows_cluster: true,
            ..disk("n2", false, false)
        };
        let refused = seed_leader(false, None, &[disk("n1", false, false), gone]);
        assert_eq!(
            refused,
            Err(SeedRefusal::DataGone(vec![MemberName::new("n2")]))
        );
        assert!(refused.unwrap_err().to_string().contains("not mounted"));
    }

    #[test]
    fn a_new_cluster_gives_the_key_to_its_first_member() {
        let disks = [disk("n1", false, false), disk("n2", false, false)];
        assert_eq!(
            seed_leader(false, None, &disks),
            Ok(Some(MemberName::new("n1")))
        );
        assert_eq!(seed_leader(true, None, &disks), Ok(None));
    }

    #[test]
    fn a_restart_keeps_the_member_with_the_primarys_data() {
        let disks = [
            disk("n1", true, true),
            disk("n2", true, false),
            disk("n3", false, false),
        ];
        assert_eq!(
            seed_leader(false, None, &disks),
            Ok(Some(MemberName::new("n2")))
        );
    }

    /// Found by review: n1 was stopped as the primary (`pgha stop`: its data stays a
    /// primary's), n2 led on a newer timeline, demoted for a switchover to n3, and `pgha up`
    /// died before n3 took the key. n1, the one member without `standby.signal`, was given the
    /// key and started as the primary on its old timeline: n2 and n3 rewound to it, and every
    /// write n2 acknowledged was thrown away. The store's position key names n2: an election.
    #[test]
    fn a_primary_stopped_before_another_led_is_not_seeded() {
        let disks = [
            disk("n1", true, false),
            disk("n2", true, true),
            disk("n3", true, true),
        ];
        let n2 = MemberName::new("n2");
        let refused = seed_leader(false, Some(&n2), &disks);
        assert_eq!(
            refused,
            Err(SeedRefusal::NotTheLastLeader {
                primary_data: MemberName::new("n1"),
                last_leader: n2,
            })
        );
        assert!(refused.unwrap_err().to_string().contains("n2 led after it"));
        let n1 = MemberName::new("n1");
        assert_eq!(seed_leader(false, Some(&n1), &disks), Ok(Some(n1)));
    }

    #[test]
    fn no_primary_or_two_primaries_are_refused() {
        let standbys = [disk("n1", true, true), disk("n2", true, true)];
        assert_eq!(
            seed_leader(false, None, &standbys),
            Err(SeedRefusal::NoPrimaryData)
        );
        let two = [disk("n1", true, false), disk("n2", true, false)];
        assert_eq!(
            seed_leader(false, None, &two),
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
