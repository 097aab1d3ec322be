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
    /// `ttl_ms`, `safety_margin_ms` and `loop_wait_ms` do not fit together; says which values
    /// would.
    #[error("{source}; with ttl_ms = {ttl_ms}, {fits}")]
    Timing {
        source: ConfigError,
        ttl_ms: u64,
        fits: String,
    },
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
    set_keys(config, [(key, value)])
}

/// Applies several `(key, value)` settings, then validates the result once (settings that
/// depend on each other, like ttl_ms and loop_wait_ms, may change together).
///
/// A `ttl_ms` given without `safety_margin_ms` or `loop_wait_ms` brings the ones not given
/// along when they no longer fit it (see [`fit_timing`]): `[dynamic] ttl_ms = 3000` alone is a
/// valid configuration.
pub fn set_keys<'a>(
    config: &ClusterConfig,
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ClusterConfig, SettingError> {
    let mut updated = config.clone();
    let mut given = Vec::new();
    for (key, value) in settings {
        updated = set_key_unchecked(&updated, key, value)?;
        given.push(key);
    }
    if given.contains(&"ttl_ms") {
        updated = fit_timing(
            updated,
            !given.contains(&"safety_margin_ms"),
            !given.contains(&"loop_wait_ms"),
        );
    }
    match updated.validate() {
        Ok(()) => Ok(updated),
        Err(source) if TIMING_KEYS.contains(&source.key) && updated.ttl_ms >= 1_000 => {
            Err(SettingError::Timing {
                fits: timing_that_fits(&updated),
                ttl_ms: updated.ttl_ms,
                source,
            })
        }
        Err(source) => Err(source.into()),
    }
}

/// The settings whose values depend on each other.
const TIMING_KEYS: [&str; 3] = ["ttl_ms", "safety_margin_ms", "loop_wait_ms"];

/// Derives the safety margin and the loop interval (those `free` to change) from `ttl_ms`
/// when the three do not fit together, in the defaults' proportions: the margin a quarter of
/// the ttl (at least [`pgha_core::config::MIN_SAFETY_MARGIN_MS`]), the interval kept unless it
/// exceeds half of what remains. Values that fit are kept.
pub fn fit_timing(
    mut config: ClusterConfig,
    free_margin: bool,
    free_loop_wait: bool,
) -> ClusterConfig {
    let fits = |c: &ClusterConfig| {
        c.validate()
            .map_or_else(|e| !TIMING_KEYS.contains(&e.key), |()| true)
    };
    let ttl = config.ttl_ms;
    let min_margin = pgha_core::config::MIN_SAFETY_MARGIN_MS;
    if fits(&config) || ttl <= min_margin {
        return config; // nothing to do, or no margin fits: validation names ttl_ms
    }
    if free_margin {
        config.safety_margin_ms = (ttl / 4).max(min_margin);
    }
    if !fits(&config) && free_loop_wait && config.safety_margin_ms < ttl {
        let room = (ttl - config.safety_margin_ms) / 2;
        config.loop_wait_ms = config.loop_wait_ms.min(room).max(1);
    }
    if !fits(&config) && free_margin {
        // The interval was given: a smaller margin may leave it room.
        let room = ttl.saturating_sub(config.loop_wait_ms.saturating_mul(2));
        if room >= min_margin {
            config.safety_margin_ms = room;
        }
    }
    config
}

/// Which safety margin and loop interval fit `config.ttl_ms`, as a sentence.
fn timing_that_fits(config: &ClusterConfig) -> String {
    let ttl = config.ttl_ms;
    let min_margin = pgha_core::config::MIN_SAFETY_MARGIN_MS;
    let suggested = fit_timing(
        ClusterConfig {
            ttl_ms: ttl,
            ..ClusterConfig::default()
        },
        true,
        true,
    );
    let margin = config.safety_margin_ms;
    let loop_room = if margin >= min_margin && margin < ttl {
        format!(
            "with safety_margin_ms = {margin}, loop_wait_ms from 1 to {}",
            (ttl - margin) / 2
        )
    } else {
        "loop_wait_ms at most (ttl_ms - safety_margin_ms) / 2".to_string()
    };
    format!(
        "safety_margin_ms fits from {min_margin} to {} and {loop_room}; e.g. safety_margin_ms = \
         {}, loop_wait_ms = {} (or give only ttl_ms: the other two follow from it)",
        ttl - 1,
        suggested.safety_margin_ms,
        suggested.loop_wait_ms
    )
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
        assert!(matches!(
            set_key(&c, "postgresql.recovery_target", "immediate"),
            Err(SettingError::Parameter {
                source: pgha_pg::conf::ParameterRefused::RecoveryTarget(_),
                ..
            })
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
    }

    /// `[dynamic] ttl_ms = 3000` alone: the default margin (2500) and interval (1000) no longer
    /// fit, and used to make the agent refuse to start; they now follow from ttl_ms.
    #[test]
    fn ttl_alone_brings_the_dependent_settings_along() {
        let base = ClusterConfig::default();
        let c = set_keys(&base, [("ttl_ms", "3000")]).unwrap();
        assert_eq!(
            (c.ttl_ms, c.safety_margin_ms, c.loop_wait_ms),
            (3000, 750, 1000)
        );
        let c = set_key(&base, "ttl_ms", "1000").unwrap();
        assert_eq!((c.safety_margin_ms, c.loop_wait_ms), (500, 250));
        // Values that fit are kept: a longer ttl changes nothing else.
        let c = set_key(&base, "ttl_ms", "30000").unwrap();
        assert_eq!((c.safety_margin_ms, c.loop_wait_ms), (2500, 1000));
        // A given interval keeps its value, the margin makes room for it.
        let c = set_keys(&base, [("ttl_ms", "3000"), ("loop_wait_ms", "1200")]).unwrap();
        assert_eq!((c.safety_margin_ms, c.loop_wait_ms), (600, 1200));
        // Given values that cannot fit: the error says which would.
        let err = set_keys(
            &base,
            [
                ("ttl_ms", "3000"),
                ("safety_margin_ms", "2900"),
                ("loop_wait_ms", "1000"),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(err, SettingError::Timing { ttl_ms: 3000, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("loop_wait_ms")
                && text.contains("from 1 to 50")
                && text.contains("safety_margin_ms = 750, loop_wait_ms = 1000"),
            "{text}"
        );
        let err = set_key(&base, "safety_margin_ms", "9000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 500 to 9999"), "{err}");
    }
}
