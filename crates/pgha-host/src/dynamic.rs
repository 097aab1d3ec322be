//! The cluster's dynamic settings (kept in the store): `pgha config show|set` and the
//! `--synchronous-*` flags of `pgha up`; `postgresql.NAME=VALUE` sets a PostgreSQL parameter
//! on every member (`postgresql.NAME=` removes it).

use pgha_core::{ClusterConfig, ConfigError};
use serde_json::Value;

/// Why a `KEY=VALUE` setting was not taken; each names the key and what would be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("{text:?}: expected KEY=VALUE, e.g. synchronous_mode=on")]
    NotAnAssignment { text: String },
    #[error("unknown setting `{key}`; settings are: {known}")]
    Unknown { key: String, known: String },
    #[error("`{key}` = {value:?}: {source}")]
    BadValue {
        key: String,
        value: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("`{key}`: {source}")]
    Parameter {
        key: String,
        source: pgha_pg::conf::ParameterRefused,
    },
}

/// The prefix of a PostgreSQL parameter among the settings: `postgresql.work_mem=64MB`.
pub const PARAMETER_PREFIX: &str = "postgresql.";

/// Sets `key` to `value` (text as typed on the command line), validating the whole config;
/// errors name the key and list the valid ones.
pub fn set_key(
    config: &ClusterConfig,
    key: &str,
    value: &str,
) -> Result<ClusterConfig, SettingError> {
    let updated = set_key_unchecked(config, key, value)?;
    updated.validate()?;
    Ok(updated)
}

/// Applies several `(key, value)` settings, then validates the result once (settings that
/// depend on each other, like ttl_ms and loop_wait_ms, may change together).
pub fn set_keys<'a>(
    config: &ClusterConfig,
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ClusterConfig, SettingError> {
    let mut updated = config.clone();
    for (key, value) in settings {
        updated = set_key_unchecked(&updated, key, value)?;
    }
    updated.validate()?;
    Ok(updated)
}

fn set_key_unchecked(
    config: &ClusterConfig,
    key: &str,
    value: &str,
) -> Result<ClusterConfig, SettingError> {
    if let Some(name) = key.strip_prefix(PARAMETER_PREFIX) {
        let mut updated = config.clone();
        if value.is_empty() {
            updated.postgresql.remove(name);
            return Ok(updated);
        }
        pgha_pg::conf::check_user_setting(name, value).map_err(|source| {
            SettingError::Parameter {
                key: key.to_string(),
                source,
            }
        })?;
        updated
            .postgresql
            .insert(name.to_string(), value.to_string());
        return Ok(updated);
    }
    let Ok(Value::Object(mut map)) = serde_json::to_value(config) else {
        unreachable!("ClusterConfig is a struct of plain fields: it serialises to an object")
    };
    if !map.contains_key(key) || key == "postgresql" {
        let mut keys: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "postgresql")
            .collect();
        keys.push("postgresql.<parameter>");
        return Err(SettingError::Unknown {
            key: key.to_string(),
            known: keys.join(", "),
        });
    }
    let parsed =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()));
    map.insert(key.to_string(), parsed);
    serde_json::from_value(Value::Object(map)).map_err(|source| SettingError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        source,
    })
}

/// Parses `KEY=VALUE`.
pub fn split_assignment(text: &str) -> Result<(&str, &str), SettingError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| SettingError::NotAnAssignment {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_core::{CommitLevel, SyncMode};

    #[test]
    fn sets_and_validates_keys() {
        let base = ClusterConfig::default();
        let c = set_key(&base, "synchronous_mode", "strict").unwrap();
        assert_eq!(c.synchronous_mode, SyncMode::Strict);
        let c = set_key(&c, "synchronous_commit", "remote_apply").unwrap();
        assert_eq!(c.synchronous_commit, CommitLevel::RemoteApply);
        let c = set_key(&c, "synchronous_count", "2").unwrap();
        assert_eq!(c.synchronous_count, 2);
        assert!(matches!(
            set_key(&c, "synchronous_mode", "sometimes"),
            Err(SettingError::BadValue { key, .. }) if key == "synchronous_mode"
        ));
        assert!(matches!(
            set_key(&c, "colour", "1"),
            Err(SettingError::Unknown { known, .. }) if known.contains("ttl_ms")
        ));
        assert!(matches!(
            set_key(&c, "synchronous_count", "0"),
            Err(SettingError::Invalid(ConfigError {
                key: "synchronous_count",
                ..
            }))
        ));
        // PostgreSQL parameters: set, refused when pgha owns them, removed when empty.
        let c = set_key(&c, "postgresql.work_mem", "64MB").unwrap();
        assert_eq!(c.postgresql["work_mem"], "64MB");
        assert!(matches!(
            set_key(&c, "postgresql.wal_level", "minimal"),
            Err(SettingError::Parameter { key, .. }) if key == "postgresql.wal_level"
        ));
        assert!(matches!(
            set_key(&c, "postgresql.primary_conninfo", "host=evil"),
            Err(SettingError::Parameter { .. })
        ));
        assert!(set_key(&c, "postgresql.work_mem", "")
            .unwrap()
            .postgresql
            .is_empty());
        assert!(matches!(
            set_key(&c, "colour", "1"),
            Err(SettingError::Unknown { known, .. }) if known.contains("postgresql.<parameter>")
        ));
        assert!(matches!(
            split_assignment("ttl_ms"),
            Err(SettingError::NotAnAssignment { .. })
        ));
    }

    #[test]
    fn dependent_settings_change_together() {
        // Each alone breaks loop_wait <= (ttl - margin) / 2 against the defaults; together
        // they are valid, and are checked once.
        let base = ClusterConfig::default();
        let c = set_keys(
            &base,
            [
                ("ttl_ms", "3000"),
                ("safety_margin_ms", "1000"),
                ("loop_wait_ms", "500"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.ttl_ms, c.safety_margin_ms, c.loop_wait_ms),
            (3000, 1000, 500)
        );
        assert!(set_keys(&base, [("ttl_ms", "3000")]).is_err());
    }
}
