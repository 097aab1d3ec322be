//! Cluster-wide dynamic settings (stored in the store's `config` key) and their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How commits wait for standbys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous streaming.
    #[default]
    Off,
    /// Synchronous while a healthy standby exists; degrades to asynchronous otherwise.
    On,
    /// Never degrades: with no synchronous standby, commits wait.
    Strict,
}

/// How `synchronous_standby_names` counts acknowledgements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMethod {
    /// `FIRST n (a, b)`: the first n connected names in priority order.
    #[default]
    Priority,
    /// `ANY n (a, b, c)`: any n of the listed names (quorum commit).
    Quorum,
}

/// Dynamic settings every member reads from the store; defaults suit a local cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Leader lease time-to-live.
    pub ttl_ms: u64,
    /// How long before the lease could expire for others the leader demotes itself (I1); at
    /// least a fifth of `ttl_ms` is used whatever is set (see [`ClusterConfig::margin_ms`]).
    pub safety_margin_ms: u64,
    /// Default interval between two decisions.
    pub loop_wait_ms: u64,
    /// A standby further behind the last known primary position than this is never promoted.
    pub maximum_lag_on_failover: u64,
    /// How long the leader tries to restart its crashed PostgreSQL before giving up the lease.
    pub primary_start_timeout_ms: u64,
    /// How long a planned switchover may take before members elect normally again.
    pub switchover_timeout_ms: u64,
    /// How long a standby may fail to stream from the leader (which it can reach) before it
    /// rewinds.
    pub stream_timeout_ms: u64,
    /// How long the leader keeps the replication slot of a member whose key has expired
    /// (agent stopped, host down), so it can resume streaming when it returns.
    pub member_slots_ttl_ms: u64,
    pub synchronous_mode: SyncMode,
    pub synchronous_count: u32,
    pub synchronous_method: SyncMethod,
    /// Allow re-cloning a member whose rewind failed or did not finish (its old data directory
    /// is moved aside).
    pub allow_reclone: bool,
    /// Maintenance mode: no automatic action at all (switchover/failover requests still work).
    pub paused: bool,
    /// PostgreSQL's `synchronous_commit` on every member: how far a commit waits.
    pub synchronous_commit: CommitLevel,
    /// PostgreSQL parameters every member runs with, over those of its config file
    /// (`pgha config set postgresql.work_mem=64MB`): applied by a reload, or shown as
    /// pending restart for those that need one. pgha's own parameters are refused.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub postgresql: BTreeMap<String, String>,
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Strict => "strict",
        })
    }
}

impl std::fmt::Display for SyncMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMethod::Priority => "priority",
            SyncMethod::Quorum => "quorum",
        })
    }
}

/// PostgreSQL's `synchronous_commit` levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitLevel {
    Off,
    Local,
    RemoteWrite,
    /// Flushed on the synchronous standbys (PostgreSQL's default).
    #[default]
    On,
    /// Replayed on the synchronous standbys: visible there once acknowledged.
    RemoteApply,
}

impl std::fmt::Display for CommitLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CommitLevel::Off => "off",
            CommitLevel::Local => "local",
            CommitLevel::RemoteWrite => "remote_write",
            CommitLevel::On => "on",
            CommitLevel::RemoteApply => "remote_apply",
        })
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            ttl_ms: 10_000,
            safety_margin_ms: 2_500,
            loop_wait_ms: 1_000,
            maximum_lag_on_failover: 1 << 20,
            primary_start_timeout_ms: 5_000,
            switchover_timeout_ms: 10_000,
            stream_timeout_ms: 30_000,
            member_slots_ttl_ms: 1_800_000,
            synchronous_mode: SyncMode::Off,
            synchronous_count: 1,
            synchronous_method: SyncMethod::Priority,
            allow_reclone: true,
            paused: false,
            synchronous_commit: CommitLevel::On,
            postgresql: BTreeMap::new(),
        }
    }
}

/// The smallest safety margin: the agent demotes at `ttl - margin`, the supervisor fences at
/// `ttl - margin / 2` at the latest (it looks every 100 ms), leaving it `margin / 2` to kill.
pub const MIN_SAFETY_MARGIN_MS: u64 = 500;

/// The bounds of one store call of an agent's step: half the safety margin, within these.
pub const STORE_CALL_BOUND_MS: (u64, u64) = (250, 2_000);

/// Why a configuration is rejected; names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {key}: {why}")]
pub struct ConfigError {
    pub key: &'static str,
    pub why: String,
}

/// The margin is at least the ttl divided by this (see [`ClusterConfig::margin_ms`]).
pub const CLOCK_RATE_TTL_PARTS: u64 = 5;

/// The longest lease pgha accepts: an hour (etcd grants far longer ones, but a leader lost
/// for longer than its ttl is not replaced for that long).
pub const MAX_TTL_MS: u64 = 3_600_000;

impl ClusterConfig {
    /// How long one store call of a step may take (ms): half the safety margin (so a hung
    /// call cannot carry the loop past the leader's demotion by more than that), within
    /// [`STORE_CALL_BOUND_MS`].
    pub fn store_call_bound_ms(&self) -> u64 {
        let (least, most) = STORE_CALL_BOUND_MS;
        (self.safety_margin_ms / 2).clamp(least, most)
    }

    /// The margin the lease arithmetic goes by: `safety_margin_ms`, but never less than a
    /// fifth of the ttl. A host's clocks may run slow against the store's: an NTP daemon
    /// slews them after a step, chrony by up to 8.3 % for hours, and the supervisor's kill at
    /// `ttl - margin / 2` on the leader's clock must still come before the store's expiry
    /// with that clock up to a tenth slow: `margin >= ttl / 5` (the simulation's clock-rate
    /// runs show a smaller one fail, two writers, and this one hold).
    pub fn margin_ms(&self) -> u64 {
        self.margin_for(self.ttl_ms)
    }

    /// [`ClusterConfig::margin_ms`] for a lease of `ttl_ms` (the store's, which a live change
    /// of `ttl_ms` leaves longer until the next renewal, or a failsafe promise's length): the
    /// time a slow clock loses grows with the time it counts (found by the simulation: a
    /// lease granted for 10 s judged with the margin of a new 6 s ttl, 1.5 s, and the
    /// leader's clock 8.3 % slow: its kill came 91 ms after the store's expiry).
    pub fn margin_for(&self, ttl_ms: u64) -> u64 {
        self.safety_margin_ms.max(ttl_ms / CLOCK_RATE_TTL_PARTS)
    }

    /// The lease TTL the configuration asks for (`ttl_ms`).
    pub fn ttl(&self) -> crate::types::Ttl {
        crate::types::Ttl::from_millis(self.ttl_ms)
    }

    /// How long a member whose `pre_promote` callback vetoed its promotion stays out of
    /// failovers, unless another member leads first: three ttls, time for the next
    /// candidates to run; then it may run again (and its callback is asked again).
    pub fn veto_hold_ms(&self) -> u64 {
        self.ttl_ms.saturating_mul(3)
    }

    /// The `wal_sender_timeout` and `wal_receiver_timeout` pgha renders unless the user sets
    /// them: a ttl, 5 s at least. A replication link that stops carrying one way is then
    /// ended in about a ttl, and the synchronous commits waiting on it move to another
    /// standby, instead of waiting PostgreSQL's 60 s (or, acknowledgements still arriving,
    /// until TCP gives up).
    pub fn replication_timeout(&self) -> std::time::Duration {
        self.ttl()
            .as_duration()
            .max(std::time::Duration::from_secs(5))
    }

    /// How long a standby may stand still (its flushed position, its replayed one under
    /// `remote_apply`, unchanged) while the primary has flushed beyond it before another
    /// standby takes its synchronous role: three loops, 3 s at least. Standbys report every
    /// second (pgha renders `wal_receiver_status_interval`), and a healthy one confirms what the
    /// primary flushed within milliseconds; one cut off or whose disk stalls would otherwise
    /// hold every commit until the replication timeout (see `sync::StandbyStalls`).
    pub fn stalled_standby_ms(&self) -> u64 {
        self.loop_wait_ms.saturating_mul(3).max(3_000)
    }

    /// Checks the relations the invariants rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, why: String| Err(ConfigError { key, why });
        if self.ttl_ms < 1_000 {
            return err("ttl_ms", format!("{} is below 1000", self.ttl_ms));
        }
        if self.ttl_ms > MAX_TTL_MS {
            return err(
                "ttl_ms",
                format!(
                    "{} is above {MAX_TTL_MS} (an hour): a leader lost that long is not \
                     failed over for that long",
                    self.ttl_ms
                ),
            );
        }
        if self.safety_margin_ms < MIN_SAFETY_MARGIN_MS || self.safety_margin_ms >= self.ttl_ms {
            return err(
                "safety_margin_ms",
                format!(
                    "must be at least {MIN_SAFETY_MARGIN_MS} (the supervisor fences half a margin \
                     after the deadline and needs the other half) and below ttl_ms ({})",
                    self.ttl_ms
                ),
            );
        }
        if self.loop_wait_ms == 0
            || self.loop_wait_ms.saturating_mul(2) > self.ttl_ms - self.safety_margin_ms
        {
            return err(
                "loop_wait_ms",
                "must be above 0 and at most half of ttl_ms - safety_margin_ms".into(),
            );
        }
        if self.synchronous_count == 0 {
            return err("synchronous_count", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_links_time_out_after_a_ttl_and_5_s_at_least() {
        let with_ttl = |ttl_ms| ClusterConfig {
            ttl_ms,
            ..ClusterConfig::default()
        };
        let secs = |s| std::time::Duration::from_secs(s);
        assert_eq!(ClusterConfig::default().replication_timeout(), secs(10));
        assert_eq!(with_ttl(30_000).replication_timeout(), secs(30));
        assert_eq!(with_ttl(3_000).replication_timeout(), secs(5));
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        assert_eq!(ClusterConfig::default().validate(), Ok(()));
        let bad = ClusterConfig {
            safety_margin_ms: 20_000,
            ..ClusterConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "safety_margin_ms");
        let thin = ClusterConfig {
            safety_margin_ms: 200,
            ..ClusterConfig::default()
        };
        assert_eq!(thin.validate().unwrap_err().key, "safety_margin_ms");
    }

    /// Values large enough to overflow the checks' arithmetic are refused, not wrapped
    /// (in a release build `loop_wait_ms * 2` wrapped to a small number and passed).
    #[test]
    fn huge_values_are_refused_not_wrapped() {
        let huge_wait = ClusterConfig {
            loop_wait_ms: u64::MAX / 2 + 1,
            ..ClusterConfig::default()
        };
        assert_eq!(huge_wait.validate().unwrap_err().key, "loop_wait_ms");
        let huge_ttl = ClusterConfig {
            ttl_ms: u64::MAX,
            safety_margin_ms: 2_500,
            ..ClusterConfig::default()
        };
        assert_eq!(huge_ttl.validate().unwrap_err().key, "ttl_ms");
        let hour = ClusterConfig {
            ttl_ms: MAX_TTL_MS,
            ..ClusterConfig::default()
        };
        assert_eq!(hour.validate(), Ok(()));
    }
}
