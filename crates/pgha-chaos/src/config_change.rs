//! The change-config fault: live changes of the cluster's dynamic settings (the lease timings,
//! the synchronous method, count and commit level, a PostgreSQL parameter), each undone by the
//! next one, and the settings the campaign found put back at its end.

use pgha_core::{ClusterConfig, CommitLevel, SyncMethod, SyncMode};
use pgha_host::dynamic::{set_keys, PARAMETER_PREFIX};
use rand::seq::SliceRandom;
use rand::Rng;

/// The lowest lease ttl a change lowers it to: shorter leases on a loaded machine turn a slow
/// loop into a failover, which is not the fault this one injects.
const LOWEST_TTL_MS: u64 = 2_000;

/// The PostgreSQL parameter the fault sets and removes: applied by a reload on every member.
const PARAMETER: &str = "work_mem";

/// One setting the fault may change, away from the value the campaign found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// `ttl_ms` half as long again.
    TtlRaised,
    /// `ttl_ms` by a third shorter (the margin and the loop brought along when they no longer
    /// fit, as `pgha config set ttl_ms=...` does).
    TtlLowered,
    /// `synchronous_method`: priority to quorum, or back.
    Method,
    /// `synchronous_count` one more (or one less) standby, in mode `on`.
    Count,
    /// `synchronous_commit`: `on` to `remote_apply`, or back (both wait for the standbys).
    Commit,
    /// `postgresql.work_mem` set (or changed).
    Parameter,
}

const SETTINGS: [Setting; 6] = [
    Setting::TtlRaised,
    Setting::TtlLowered,
    Setting::Method,
    Setting::Count,
    Setting::Commit,
    Setting::Parameter,
];

/// What the campaign changed: the settings it found, and those in force now.
#[derive(Debug, Clone)]
pub struct ConfigChanges {
    original: ClusterConfig,
    in_force: ClusterConfig,
}

impl ConfigChanges {
    pub fn new(original: ClusterConfig) -> Self {
        ConfigChanges {
            in_force: original.clone(),
            original,
        }
    }

    /// The settings in force, as the cluster last answered a change.
    pub fn in_force(&self) -> &ClusterConfig {
        &self.in_force
    }

    /// The assignments of the next change (`pgha config set` arguments): the undoing of the
    /// one in force, else one drawn among the changes that fit a cluster of `standbys`
    /// standbys and keep what pgha promises in its mode (the mode itself never changes);
    /// `None` when none fits.
    pub fn next(&self, rng: &mut impl Rng, standbys: usize) -> Option<Vec<String>> {
        if let Some(undo) = self.restore() {
            return Some(undo);
        }
        let fitting: Vec<Vec<String>> = SETTINGS
            .iter()
            .filter_map(|s| self.change(*s, standbys))
            .collect();
        fitting.choose(rng).cloned()
    }

    /// Records the settings the cluster answered a change with.
    pub fn applied(&mut self, config: ClusterConfig) {
        self.in_force = config;
    }

    /// The assignments that put back every setting the campaign changed; `None` when none
    /// differs.
    pub fn restore(&self) -> Option<Vec<String>> {
        let undo = assignments_from(&self.in_force, &self.original);
        (!undo.is_empty()).then_some(undo)
    }

    /// The assignments that move `setting` away from the original, when that fits.
    fn change(&self, setting: Setting, standbys: usize) -> Option<Vec<String>> {
        let c = &self.original;
        let synchronous = c.synchronous_mode != SyncMode::Off;
        let pairs: Vec<(String, String)> = match setting {
            Setting::TtlRaised => vec![("ttl_ms".into(), (c.ttl_ms * 3 / 2).to_string())],
            Setting::TtlLowered if c.ttl_ms * 2 / 3 >= LOWEST_TTL_MS => {
                vec![("ttl_ms".into(), (c.ttl_ms * 2 / 3).to_string())]
            }
            Setting::Method if synchronous => {
                let other = match c.synchronous_method {
                    SyncMethod::Priority => SyncMethod::Quorum,
                    SyncMethod::Quorum => SyncMethod::Priority,
                };
                vec![("synchronous_method".into(), other.to_string())]
            }
            // In `strict` one count more than the standbys left by a fault would stop commits.
            Setting::Count if c.synchronous_mode == SyncMode::On && standbys >= 2 => {
                let count = c.synchronous_count as usize;
                let other = if count < standbys {
                    count + 1
                } else {
                    count - 1
                };
                vec![("synchronous_count".into(), other.to_string())]
            }
            Setting::Commit if synchronous => {
                let other = match c.synchronous_commit {
                    CommitLevel::On => CommitLevel::RemoteApply,
                    CommitLevel::RemoteApply => CommitLevel::On,
                    _ => return None,
                };
                vec![("synchronous_commit".into(), other.to_string())]
            }
            Setting::Parameter => {
                let other = match c.postgresql.get(PARAMETER).map(String::as_str) {
                    Some("8MB") => "16MB",
                    _ => "8MB",
                };
                vec![(format!("{PARAMETER_PREFIX}{PARAMETER}"), other.to_string())]
            }
            _ => return None,
        };
        let changed = set_keys(c, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).ok()?;
        let assignments = assignments_from(c, &changed);
        (!assignments.is_empty()).then_some(assignments)
    }
}

/// The `KEY=VALUE` assignments that turn the settings `from` into `to`, for the keys this
/// fault changes (a PostgreSQL parameter `to` lacks is removed: `postgresql.NAME=`).
fn assignments_from(from: &ClusterConfig, to: &ClusterConfig) -> Vec<String> {
    type Read = fn(&ClusterConfig) -> String;
    let settings: [(&str, Read); 6] = [
        ("ttl_ms", |c| c.ttl_ms.to_string()),
        ("safety_margin_ms", |c| c.safety_margin_ms.to_string()),
        ("loop_wait_ms", |c| c.loop_wait_ms.to_string()),
        ("synchronous_method", |c| c.synchronous_method.to_string()),
        ("synchronous_count", |c| c.synchronous_count.to_string()),
        ("synchronous_commit", |c| c.synchronous_commit.to_string()),
    ];
    let mut out: Vec<String> = settings
        .iter()
        .filter(|(_, read)| read(from) != read(to))
        .map(|(key, read)| format!("{key}={}", read(to)))
        .collect();
    let names: std::collections::BTreeSet<&String> =
        from.postgresql.keys().chain(to.postgresql.keys()).collect();
    for name in names {
        let (was, now) = (from.postgresql.get(name), to.postgresql.get(name));
        if was != now {
            let value = now.map_or("", String::as_str);
            out.push(format!("{PARAMETER_PREFIX}{name}={value}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn apply(c: &ClusterConfig, assignments: &[String]) -> ClusterConfig {
        let pairs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|a| a.split_once('=').expect("KEY=VALUE"))
            .collect();
        set_keys(c, pairs).expect("a change the cluster accepts")
    }

    fn synchronous(mode: SyncMode) -> ClusterConfig {
        ClusterConfig {
            synchronous_mode: mode,
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn every_change_is_valid_keeps_the_mode_and_is_undone_by_the_next() {
        for original in [
            ClusterConfig::default(),
            synchronous(SyncMode::On),
            synchronous(SyncMode::Strict),
            ClusterConfig {
                ttl_ms: 3_000,
                safety_margin_ms: 1_000,
                loop_wait_ms: 500,
                synchronous_method: SyncMethod::Quorum,
                synchronous_commit: CommitLevel::RemoteApply,
                ..synchronous(SyncMode::On)
            },
        ] {
            let mut rng = StdRng::seed_from_u64(1);
            let mut changes = ConfigChanges::new(original.clone());
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..60 {
                let change = changes.next(&mut rng, 2).expect("a change fits");
                let after = apply(changes.in_force(), &change);
                assert_eq!(after.synchronous_mode, original.synchronous_mode);
                assert!(
                    !matches!(
                        after.synchronous_commit,
                        CommitLevel::Off | CommitLevel::Local
                    ),
                    "{change:?}"
                );
                after.validate().unwrap();
                let was_original = changes.in_force() == &original;
                changes.applied(after.clone());
                if was_original {
                    assert_ne!(after, original, "{change:?} changed nothing");
                    seen.insert(change[0].split('=').next().unwrap().to_string());
                    assert!(changes.restore().is_some());
                } else {
                    assert_eq!(after, original, "{change:?} did not undo the last change");
                    assert!(changes.restore().is_none());
                }
            }
            let expected: &[&str] = match original.synchronous_mode {
                SyncMode::Off => &["ttl_ms", "postgresql.work_mem"],
                SyncMode::On => &[
                    "ttl_ms",
                    "synchronous_method",
                    "synchronous_count",
                    "synchronous_commit",
                    "postgresql.work_mem",
                ],
                SyncMode::Strict => &[
                    "ttl_ms",
                    "synchronous_method",
                    "synchronous_commit",
                    "postgresql.work_mem",
                ],
            };
            let expected: std::collections::BTreeSet<String> =
                expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(seen, expected, "{original:?}");
        }
    }

    #[test]
    fn a_lowered_ttl_brings_its_margin_along_and_the_undo_puts_all_three_back() {
        let original = ClusterConfig {
            ttl_ms: 3_000,
            safety_margin_ms: 1_000,
            loop_wait_ms: 500,
            ..ClusterConfig::default()
        };
        let changes = ConfigChanges::new(original.clone());
        let lowered = changes.change(Setting::TtlLowered, 2).unwrap();
        assert_eq!(lowered, vec!["ttl_ms=2000".to_string()]);
        let after = apply(&original, &lowered);
        let mut changes = changes;
        changes.applied(after);
        let undo = changes.restore().unwrap();
        assert_eq!(apply(changes.in_force(), &undo), original, "{undo:?}");
        // Never below two seconds.
        let short = ConfigChanges::new(ClusterConfig {
            ttl_ms: 2_500,
            safety_margin_ms: 1_000,
            loop_wait_ms: 500,
            ..ClusterConfig::default()
        });
        assert_eq!(short.change(Setting::TtlLowered, 2), None);
    }

    #[test]
    fn a_parameter_the_campaign_set_is_removed_and_one_it_changed_is_put_back() {
        let mut original = ClusterConfig::default();
        let changes = ConfigChanges::new(original.clone());
        let set = changes.change(Setting::Parameter, 2).unwrap();
        assert_eq!(set, vec!["postgresql.work_mem=8MB".to_string()]);
        let mut changes = changes;
        changes.applied(apply(&original, &set));
        assert_eq!(
            changes.restore(),
            Some(vec!["postgresql.work_mem=".to_string()])
        );
        original.postgresql.insert(PARAMETER.into(), "8MB".into());
        let changes = ConfigChanges::new(original);
        assert_eq!(
            changes.change(Setting::Parameter, 2),
            Some(vec!["postgresql.work_mem=16MB".to_string()])
        );
    }

    #[test]
    fn the_count_changes_only_in_mode_on_with_two_standbys_or_more() {
        let on = ConfigChanges::new(synchronous(SyncMode::On));
        assert_eq!(
            on.change(Setting::Count, 2),
            Some(vec!["synchronous_count=2".to_string()])
        );
        assert_eq!(on.change(Setting::Count, 1), None);
        let strict = ConfigChanges::new(synchronous(SyncMode::Strict));
        assert_eq!(strict.change(Setting::Count, 3), None);
        let at_most = ConfigChanges::new(ClusterConfig {
            synchronous_count: 2,
            ..synchronous(SyncMode::On)
        });
        assert_eq!(
            at_most.change(Setting::Count, 2),
            Some(vec!["synchronous_count=1".to_string()])
        );
    }
}
