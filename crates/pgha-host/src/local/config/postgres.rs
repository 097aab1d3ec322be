//! pgha.toml's `[postgresql]` section: users, pg_hba lines, parameters, their defaults and checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Directory of the PostgreSQL server programs; found automatically when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// OS user that runs PostgreSQL when pgha runs as root.
    #[serde(default = "default_os_user")]
    pub os_user: String,
    #[serde(default = "default_superuser")]
    pub superuser: String,
    #[serde(default = "default_replication_user")]
    pub replication_user: String,
    /// Extra pg_hba.conf lines, placed before pgha's catch-all lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_hba: Vec<String>,
    /// Your PostgreSQL parameters, passed through to every member.
    #[serde(default)]
    pub parameters: BTreeMap<String, toml::Value>,
}

impl PostgresSection {
    /// Checks the section, adding each problem to `bad` with its key (under `postgresql.`).
    pub fn check(&self, bad: &mut super::Problems<'_>) {
        let p = self;
        for (key, value) in [
            ("postgresql.superuser", &p.superuser),
            ("postgresql.replication_user", &p.replication_user),
            ("postgresql.os_user", &p.os_user),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                bad.add(
                    key,
                    format!("{value:?} must be non-empty letters, digits, '-' or '_'"),
                );
            }
        }
        if p.superuser == p.replication_user {
            bad.add(
                "postgresql.replication_user",
                "must differ from postgresql.superuser",
            );
        }
        for (name, value) in &p.parameters {
            let key = format!("postgresql.parameters.{name}");
            let checked = pgha_pg::conf::check_user_parameter(name)
                .map_err(BadParameter::from)
                .and_then(|()| parameter_text(value))
                .and_then(|text| Ok(pgha_pg::conf::check_user_setting(name, &text)?));
            bad.check(key, checked);
        }
    }

    /// The user's parameters as PostgreSQL setting strings.
    pub fn parameters(&self) -> BTreeMap<String, String> {
        self.parameters
            .iter()
            .filter_map(|(k, v)| parameter_text(v).ok().map(|t| (k.clone(), t)))
            .collect()
    }
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection {
            bin_dir: None,
            os_user: default_os_user(),
            superuser: default_superuser(),
            replication_user: default_replication_user(),
            pg_hba: Vec::new(),
            parameters: BTreeMap::new(),
        }
    }
}

fn default_os_user() -> String {
    "postgres".into()
}
fn default_superuser() -> String {
    "postgres".into()
}
fn default_replication_user() -> String {
    "replicator".into()
}

/// A parameter value as postgresql.conf text: strings, integers, floats and booleans only.
fn parameter_text(value: &toml::Value) -> Result<String, BadParameter> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(if *b { "on".into() } else { "off".into() }),
        other => Err(BadParameter::NotASettingValue(other.type_str())),
    }
}

/// Why a `[postgresql.parameters]` entry is refused.
#[derive(Debug, thiserror::Error)]
enum BadParameter {
    /// A name or value pgha does not pass on (see `pgha_pg::conf`).
    #[error(transparent)]
    Refused(#[from] pgha_pg::conf::ParameterRefused),
    /// A TOML value of a kind PostgreSQL settings do not take (an array, a table, a date).
    #[error("a TOML {0} is not a PostgreSQL setting value; use a string, number or boolean")]
    NotASettingValue(&'static str),
}
