//! Value types shared by every module: WAL positions, timelines, member names, tags, monotonic time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A PostgreSQL WAL position (`pg_lsn`), written `"16/B374D848"` (two hex halves).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `self` forward to `ahead`; zero when `ahead` is not ahead.
    pub fn bytes_until(self, ahead: Lsn) -> u64 {
        ahead.0.saturating_sub(self.0)
    }
}

/// Why a text is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal halves like \"0/3000060\"")]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseLsnError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let valid = |h: &str| !h.is_empty() && h.len() <= 8;
        if !valid(hi) || !valid(lo) {
            return Err(bad());
        }
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A PostgreSQL timeline id (1 after initdb, +1 at each promotion).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timeline(pub u32);

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The unique name of a cluster member (`n1`, `db-east-2`, ...).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberName(String);

impl MemberName {
    pub fn new(name: impl Into<String>) -> Self {
        MemberName(name.into())
    }
    /// Whether `name` is one pgha accepts for a member: 1 to 63 letters, digits, '_', '-' or
    /// '.' (it is quoted into `synchronous_standby_names` and `application_name`, and used
    /// in store keys and file names).
    pub fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberName {
    fn from(s: &str) -> Self {
        MemberName::new(s)
    }
}

/// PostgreSQL's system identifier (from `pg_controldata`): which cluster a data directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SystemId(pub u64);

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A reading of the agent's monotonic clock, in milliseconds from an arbitrary origin.
///
/// The core never reads a clock: every instant comes in through the observation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// This instant plus `ms` milliseconds.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
    /// Milliseconds elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// How long a key bound to a lease (the leader key, a member key) lives in the store without
/// a renewal: the configured `ttl_ms` on its way to the store, and the TTL the store reports
/// a lease runs with on its way back, never a bare number of milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ttl(u64);

impl Ttl {
    pub const fn from_millis(ms: u64) -> Ttl {
        Ttl(ms)
    }
    pub const fn from_secs(s: u64) -> Ttl {
        Ttl(s.saturating_mul(1000))
    }
    pub const fn millis(self) -> u64 {
        self.0
    }
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Per-member tags set in the member's own configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tags {
    /// Never promote this member automatically.
    pub nofailover: bool,
    /// Never pick this member as a synchronous standby.
    pub nosync: bool,
    /// Higher wins among equally advanced candidates (and for synchronous standby order).
    pub priority: u32,
    /// Never route read-only sessions here (the read-only entry point and `/replica` leave
    /// this member out): a standby kept for backups, reports or failover only.
    pub noloadbalance: bool,
    /// Clone new members (and re-clones) from this standby rather than from the primary,
    /// while it streams from the leader: pg_basebackup's read load stays off the primary.
    pub clonefrom: bool,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            nofailover: false,
            nosync: false,
            priority: 1,
            noloadbalance: false,
            clonefrom: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_parses_and_formats() {
        let lsn: Lsn = "0/3000060".parse().unwrap();
        assert_eq!(lsn, Lsn(0x3000060));
        assert_eq!(lsn.to_string(), "0/3000060");
        assert_eq!(
            "16/B374D848".parse::<Lsn>().unwrap().to_string(),
            "16/B374D848"
        );
        for bad in ["", "0", "/1", "1/", "x/1", "123456789/0", "0/3/4"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lsn_serde_is_text() {
        let json = serde_json::to_string(&Lsn(0x1_0000_0010)).unwrap();
        assert_eq!(json, "\"1/10\"");
        assert_eq!(
            serde_json::from_str::<Lsn>(&json).unwrap(),
            Lsn(0x1_0000_0010)
        );
    }

    proptest::proptest! {
        #[test]
        fn lsn_round_trips(raw: u64) {
            let lsn = Lsn(raw);
            proptest::prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }
    }
}
