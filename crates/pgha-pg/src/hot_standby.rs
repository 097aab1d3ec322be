//! The settings a hot standby must hold at least at its primary's values, and those a
//! running server has.

use tokio_postgres::Client;

use crate::error::{PgError, Result};

/// The settings PostgreSQL requires a hot standby to hold at least at the primary's values
/// (`CheckRequiredParameterValues`): `max_connections`, `max_worker_processes`,
/// `max_wal_senders`, `max_prepared_transactions`, `max_locks_per_transaction`. A value 0 is
/// one not known (no requirement).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotStandbySettings {
    pub max_connections: u32,
    pub max_worker_processes: u32,
    pub max_wal_senders: u32,
    pub max_prepared_transactions: u32,
    pub max_locks_per_transaction: u32,
}

impl HotStandbySettings {
    /// PostgreSQL's own defaults (the same in every supported version).
    pub const POSTGRES_DEFAULTS: HotStandbySettings = HotStandbySettings {
        max_connections: 100,
        max_worker_processes: 8,
        max_wal_senders: 10,
        max_prepared_transactions: 0,
        max_locks_per_transaction: 64,
    };

    /// Each setting by its PostgreSQL parameter name, with its value.
    pub fn by_name(&self) -> [(&'static str, u32); 5] {
        [
            ("max_connections", self.max_connections),
            ("max_worker_processes", self.max_worker_processes),
            ("max_wal_senders", self.max_wal_senders),
            ("max_prepared_transactions", self.max_prepared_transactions),
            ("max_locks_per_transaction", self.max_locks_per_transaction),
        ]
    }

    /// The names of the settings for which `self` (the primary's) asks more than `running`
    /// (what a standby runs with): the reasons its replay pauses.
    pub fn above(&self, running: &HotStandbySettings) -> Vec<&'static str> {
        self.by_name()
            .into_iter()
            .zip(running.by_name())
            .filter(|((_, primary), (_, standby))| primary > standby)
            .map(|((name, _), _)| name)
            .collect()
    }

    /// The field for a name as pg_controldata spells it (before " setting").
    pub(crate) fn controldata_slot(&mut self, controldata_name: &str) -> Option<&mut u32> {
        match controldata_name {
            "max_connections" => Some(&mut self.max_connections),
            "max_worker_processes" => Some(&mut self.max_worker_processes),
            "max_wal_senders" => Some(&mut self.max_wal_senders),
            "max_prepared_xacts" => Some(&mut self.max_prepared_transactions),
            "max_locks_per_xact" => Some(&mut self.max_locks_per_transaction),
            _ => None,
        }
    }
}

/// The settings the running server runs with (asked of a standby whose replay is paused:
/// [`crate::probe::PgState::replay_paused`]).
pub async fn running_settings(client: &Client, member: &str) -> Result<HotStandbySettings> {
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int, \
                    current_setting('max_worker_processes')::int, \
                    current_setting('max_wal_senders')::int, \
                    current_setting('max_prepared_transactions')::int, \
                    current_setting('max_locks_per_transaction')::int",
            &[],
        )
        .await
        .map_err(PgError::sql(member))?;
    let setting = |i: usize| row.get::<_, i32>(i).max(0) as u32;
    Ok(HotStandbySettings {
        max_connections: setting(0),
        max_worker_processes: setting(1),
        max_wal_senders: setting(2),
        max_prepared_transactions: setting(3),
        max_locks_per_transaction: setting(4),
    })
}
