//! What `pg_controldata` says about a data directory: its identity, state, last checkpoint, and
//! the primary's settings a hot standby must match or exceed.

pub use crate::hot_standby::HotStandbySettings;
use crate::instance::parse_lsn;

/// The fields of pg_controldata that pgha uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: String,
    pub cluster_state: String,
    pub checkpoint_timeline: u32,
    /// "Latest checkpoint location": the end of WAL of a cleanly shut down cluster.
    pub checkpoint_lsn: u64,
    /// "Min recovery ending loc's timeline": the timeline of the WAL a standby (or a data
    /// directory being recovered) must replay before it is consistent; 0 when none is owed.
    pub min_recovery_timeline: u32,
    /// The settings of the primary whose WAL this data directory last replayed (or its own,
    /// on a primary): a standby with lower ones does not start, and pauses replay when it
    /// meets a primary's change to higher ones.
    pub primary_settings: HotStandbySettings,
}

impl ControlData {
    pub fn parse(text: &str) -> Self {
        let mut out = ControlData::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "Database system identifier" => out.system_identifier = value.to_string(),
                "Database cluster state" => out.cluster_state = value.to_string(),
                "Latest checkpoint's TimeLineID" => {
                    out.checkpoint_timeline = value.parse().unwrap_or(0)
                }
                "Latest checkpoint location" => out.checkpoint_lsn = parse_lsn(value).unwrap_or(0),
                "Min recovery ending loc's timeline" => {
                    out.min_recovery_timeline = value.parse().unwrap_or(0)
                }
                key => {
                    if let Some(slot) = key
                        .strip_suffix(" setting")
                        .and_then(|name| out.primary_settings.controldata_slot(name))
                    {
                        *slot = value.parse().unwrap_or(0);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As PostgreSQL 15's pg_controldata prints it (abridged).
    const TEXT: &str = "pg_control version number:            1300
Database system identifier:           7312345678901234567
Database cluster state:               in archive recovery
Latest checkpoint location:           0/3000060
Latest checkpoint's TimeLineID:       3
Minimum recovery ending location:     0/3000F28
Min recovery ending loc's timeline:   4
wal_level setting:                    replica
max_connections setting:              200
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
";

    #[test]
    fn parses_identity_state_checkpoint_and_the_primarys_settings() {
        let cd = ControlData::parse(TEXT);
        assert_eq!(cd.system_identifier, "7312345678901234567");
        assert_eq!(cd.cluster_state, "in archive recovery");
        assert_eq!(cd.checkpoint_timeline, 3);
        assert_eq!(cd.checkpoint_lsn, 0x3000060);
        assert_eq!(cd.min_recovery_timeline, 4);
        assert_eq!(
            cd.primary_settings,
            HotStandbySettings {
                max_connections: 200,
                max_worker_processes: 8,
                max_wal_senders: 10,
                max_prepared_transactions: 0,
                max_locks_per_transaction: 64,
            }
        );
    }

    #[test]
    fn names_the_settings_a_standby_runs_below_the_primarys() {
        let primary = ControlData::parse(TEXT).primary_settings;
        let mut standby = primary;
        assert!(primary.above(&standby).is_empty());
        standby.max_connections = 100;
        standby.max_locks_per_transaction = 128;
        assert_eq!(primary.above(&standby), ["max_connections"]);
        standby.max_wal_senders = 4;
        assert_eq!(
            primary.above(&standby),
            ["max_connections", "max_wal_senders"]
        );
    }
}
