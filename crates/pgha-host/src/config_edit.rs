//! `pgha config edit`: the dynamic config as the text a DBA edits (`KEY = VALUE` lines, as
//! `pgha config show` prints them), and what an edit of it asks to change.

use std::collections::BTreeMap;

use pgha_core::ClusterConfig;

use crate::dynamic::PARAMETER_PREFIX;

/// An edit that cannot be applied; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("line {line}: {text:?} is not KEY = VALUE")]
    NotAnAssignment { line: usize, text: String },
    #[error("line {line}: {key} is set twice")]
    Twice { line: usize, key: String },
    #[error("{key} was removed: pgha's own settings stay (write its default value to restore it); only postgresql.NAME lines may be removed")]
    Removed { key: String },
}

/// Every setting as `(key, value)`, pgha's own first (as the store names them), then each
/// PostgreSQL parameter as `postgresql.NAME`.
pub fn rows(config: &ClusterConfig) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(k, _)| k != "postgresql")
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => Vec::new(),
    };
    rows.extend(
        config
            .postgresql
            .iter()
            .map(|(name, value)| (format!("{PARAMETER_PREFIX}{name}"), value.clone())),
    );
    rows
}

/// The config as aligned `KEY = VALUE` lines.
pub fn render(config: &ClusterConfig) -> String {
    let rows = rows(config);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$} = {v}\n"))
        .collect()
}

/// The file `pgha config edit` opens: a header saying how, then [`render`]'s lines.
pub fn editable(config: &ClusterConfig) -> String {
    format!(
        "# pgha config edit: one KEY = VALUE per line, applied together when you save and quit\n\
         # (validated first: nothing is stored if one is wrong). Add postgresql.NAME = VALUE for\n\
         # a PostgreSQL parameter; delete its line to remove it. Lines starting with # are ignored.\n\
         {}",
        render(config)
    )
}

/// The assignments (`KEY=VALUE`, as `pgha config set` takes them) that turn `config` into
/// what `edited` says: changed and added keys, and `postgresql.NAME=` for each parameter
/// whose line was deleted. Empty when nothing changed.
pub fn assignments(config: &ClusterConfig, edited: &str) -> Result<Vec<String>, EditError> {
    let before: BTreeMap<String, String> = rows(config).into_iter().collect();
    let mut after: BTreeMap<String, String> = BTreeMap::new();
    for (index, raw) in edited.lines().enumerate() {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let line = index + 1;
        let (key, value) = text
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| EditError::NotAnAssignment {
                line,
                text: text.to_string(),
            })?;
        if after.insert(key.to_string(), value.to_string()).is_some() {
            return Err(EditError::Twice {
                line,
                key: key.to_string(),
            });
        }
    }
    let mut out = Vec::new();
    for (key, old) in &before {
        match after.get(key) {
            Some(new) if new != old => out.push(format!("{key}={new}")),
            Some(_) => {}
            None if key.starts_with(PARAMETER_PREFIX) => out.push(format!("{key}=")),
            None => return Err(EditError::Removed { key: key.clone() }),
        }
    }
    out.extend(
        after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(k, v)| format!("{k}={v}")),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        let mut c = ClusterConfig::default();
        c.postgresql.insert("work_mem".into(), "4MB".into());
        c
    }

    #[test]
    fn an_unchanged_file_asks_for_nothing() {
        let c = config();
        assert_eq!(assignments(&c, &editable(&c)), Ok(vec![]));
    }

    #[test]
    fn changed_added_and_deleted_lines_become_assignments() {
        let c = config();
        let text = editable(&c)
            .lines()
            .filter(|l| !l.starts_with("postgresql.work_mem"))
            .map(|l| {
                if l.starts_with("loop_wait_ms") {
                    "loop_wait_ms = 700".to_string()
                } else {
                    l.to_string()
                }
            })
            .chain(["postgresql.max_connections = 200".to_string()])
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            assignments(&c, &text).unwrap(),
            vec![
                "loop_wait_ms=700".to_string(),
                "postgresql.work_mem=".to_string(),
                "postgresql.max_connections=200".to_string(),
            ]
        );
    }

    #[test]
    fn a_broken_line_a_repeated_key_or_a_removed_setting_is_refused() {
        let c = config();
        let broken = format!("{}work_mem 64MB\n", editable(&c));
        assert!(matches!(
            assignments(&c, &broken),
            Err(EditError::NotAnAssignment { .. })
        ));
        let twice = format!("{}ttl_ms = 20000\n", editable(&c));
        assert!(matches!(
            assignments(&c, &twice),
            Err(EditError::Twice { key, .. }) if key == "ttl_ms"
        ));
        let removed: String = editable(&c)
            .lines()
            .filter(|l| !l.starts_with("ttl_ms"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            assignments(&c, &removed),
            Err(EditError::Removed {
                key: "ttl_ms".into()
            })
        );
    }
}
