//! The synchronous set and settings the leader publishes, and when a change takes effect.

use super::*;

/// A standby streaming from the primary, having flushed (and replayed) up to `flush`.
fn streaming(n: &str, flush: u64) -> ReplicaState {
    ReplicaState {
        name: name(n),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    }
}

/// I4 across a live change of the synchronous set (found by modelling acknowledgements in the
/// simulation): n2 is tagged `nosync` and PostgreSQL now counts only n3, which lags far
/// behind. Commits acknowledged through n2 before the change are on n2 alone; were n2 taken
/// out of the published set now, a failover would promote n3 and lose them. n2 leaves the set
/// only once n3 has flushed what the primary had written by then.
#[test]
fn a_standby_leaves_the_synchronous_set_only_after_a_remaining_one_caught_up() {
    let mut n1 = member("n1");
    let mut leaving = record(&standby(1, 5000, Some("n1")), None);
    leaving.tags.nosync = true;
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", leaving)
        .with("n3", record(&standby(1, 1000, Some("n1")), None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Priority,
        mode: None,
    };
    let counting = |names: &[&str]| SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: names.iter().map(|n| name(n)).collect(),
    };
    let at = |lsn: u64, n3_flush: u64, counted: &[&str]| LocalPg {
        replicas: vec![streaming("n2", lsn), streaming("n3", n3_flush)],
        sync_applied: counting(counted),
        ..primary(1, lsn)
    };
    let pg = |n3_flush: u64| at(5000, n3_flush, &["n3"]);
    let drops_n2 = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if !set.members.contains(&name("n2"))),
        )
    };
    let d = n1.step(&obs(0, pg(1000), &view, vec![acquired(0, 7)]));
    assert!(!drops_n2(&d), "n2 left the set while n3 lags: {d:?}");
    for t in [1000, 2000, 5000] {
        // n3 lags but streams: its position moves (one standing still would be stalled)
        let d = n1.step(&obs(t, pg(4990 + t / 1000), &view, vec![]));
        assert!(!drops_n2(&d), "n2 left the set while n3 lags: {d:?}");
    }
    let d = n1.step(&obs(6000, pg(5000), &view, vec![]));
    assert!(drops_n2(&d), "n3 caught up: n2 may leave the set: {d:?}");

    // Found by the long simulation campaign (seed 16733): a removal abandoned half-way (here
    // PostgreSQL counts n2 again) left its mark behind, and the next removal, much later,
    // trusted that old position: n2 left at once although n3 lagged.
    let mut n1 = member("n1");
    n1.step(&obs(0, pg(1000), &view, vec![acquired(0, 7)]));
    n1.step(&obs(1000, pg(1000), &view, vec![]));
    n1.step(&obs(2000, at(6000, 1000, &["n2", "n3"]), &view, vec![]));
    for t in [3000, 4000, 5000] {
        let d = n1.step(&obs(t, at(9000, 5000, &["n3"]), &view, vec![]));
        assert!(!drops_n2(&d), "n2 left the set on a stale mark: {d:?}");
    }
    let d = n1.step(&obs(6000, at(9000, 9000, &["n3"]), &view, vec![]));
    assert!(drops_n2(&d), "{d:?}");
}

/// `pgha config set synchronous_mode=on` waits for what the leader publishes as in force
/// (`sync_in_force`): only once PostgreSQL counts the standbys the settings call for, the
/// store publishes the same set and `synchronous_commit` was reloaded; never in between, and
/// never while the commit level the settings ask for is not the one applied. Then back to
/// `off`, in both methods: in force once PostgreSQL is asynchronous and the set is empty (found
/// by review: in quorum mode the empty setting, read back with the default method, never
/// matched the `ANY 0 ()` asked for; the leader applied it at every step and never got there).
#[test]
fn the_leader_publishes_the_synchronous_settings_in_force_only_once_they_are() {
    let cases = [Some(CommitLevel::On), Some(CommitLevel::Local), None]
        .into_iter()
        .flat_map(|c| [(c, SyncMethod::Priority), (c, SyncMethod::Quorum)]);
    for (commit_applied, method) in cases {
        let mut n1 = member("n1");
        let mut view = View::new()
            .leader("n1", 7)
            .with("n1", record(&primary(1, 5000), None))
            .with("n2", record(&standby(1, 5000, Some("n1")), None))
            .with("n3", record(&standby(1, 5000, Some("n1")), None))
            .config(|c| {
                c.synchronous_mode = SyncMode::On;
                c.synchronous_method = method;
            });
        let replica = |n: &str| ReplicaState {
            name: name(n),
            streaming: true,
            flush_lsn: Lsn(5000),
            replay_lsn: Lsn(5000),
        };
        let mut local = LocalPg {
            replicas: vec![replica("n2"), replica("n3")],
            ..primary(1, 5000)
        };
        let mut in_force = Vec::new();
        let wanted = pgha_core::sync::SyncInForce::of(&view.0.config);
        for step in 0..12u64 {
            let outcomes = match step {
                0 => vec![acquired(0, 7)],
                _ => vec![renewed((step - 1) * 1000)],
            };
            if step == 6 {
                view.0.config.synchronous_mode = SyncMode::Off;
            }
            let mut o = obs(step * 1000, local.clone(), &view, outcomes);
            o.commit_level_applied = commit_applied;
            let d = n1.step(&o);
            let changing = has(&d, |a| {
                matches!(a, Action::PublishSync { .. } | Action::SetSync(_))
            });
            // What the agent does with the actions: the store and PostgreSQL learn them.
            for a in &d.actions {
                match a {
                    Action::PublishSync { set, .. } => view.0.sync = set.clone(),
                    Action::SetSync(applied) => {
                        // As the agent reads it back from PostgreSQL's text.
                        local.sync_applied = SyncApplied::parse(&applied.to_string()).unwrap();
                    }
                    Action::PublishMember(r) => {
                        view.0.members.insert(name("n1"), r.clone());
                    }
                    _ => {}
                }
            }
            let published = view.0.members[&name("n1")].sync_in_force;
            if changing {
                assert_eq!(published, None, "in force while changing: {d:?}");
            }
            in_force.push(published);
        }
        let on = in_force[5];
        let off = in_force.last().copied().flatten();
        match commit_applied {
            Some(CommitLevel::On) => {
                assert_eq!(on, Some(wanted), "{method:?}: {in_force:?}");
                let wanted_off = pgha_core::sync::SyncInForce::of(&view.0.config);
                assert_eq!(off, Some(wanted_off), "{method:?}: {in_force:?}");
                assert!(local.sync_applied.is_async(), "{local:?}");
                assert!(view.0.sync.members.is_empty(), "{:?}", view.0.sync);
            }
            _ => assert_eq!(on, None, "commit level not applied: {in_force:?}"),
        }
        assert!(
            in_force.first().copied().flatten().is_none(),
            "{in_force:?}"
        );
    }
}

/// Asynchronous replication has no synchronous set to publish, not even an empty one naming
/// its leader (it once recorded "synchronous set now []" in every cluster's history).
#[test]
fn an_asynchronous_leader_publishes_no_synchronous_set() {
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    for (t, outcomes) in [(0, vec![acquired(0, 7)]), (1000, vec![]), (2000, vec![])] {
        let d = n1.step(&obs(t, primary(1, 1000 + t), &view, outcomes));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::PublishSync { .. } | Action::SetSync(_)
            )),
            "{d:?}"
        );
    }
}

/// Found by review (2026-12-03): the sole synchronous standby stopped (`pgha stop`, a rolling
/// restart) while the only other standby is tagged `nosync` and lags. In `on` mode the leader
/// goes asynchronous, and it used to publish the empty set at once; with an empty set every
/// standby is eligible and the most advanced running one wins, so a leader crash next
/// promoted n3, which lacked the commits n2 alone had confirmed. The empty set now waits,
/// like any removal, until a standby that streams holds the primary's position; with none
/// streaming the old set stays (only n2, once back, may then take over).
#[test]
fn the_set_empties_only_once_a_streaming_standby_holds_what_the_stopped_one_confirmed() {
    let mut n1 = member("n1");
    let mut lagging = record(&standby(1, 1000, Some("n1")), None);
    lagging.tags.nosync = true;
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&stopped(standby(1, 5000, Some("n1"))), None))
        .with("n3", lagging)
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2")].into(),
        count: 1,
        method: SyncMethod::Priority,
        mode: None,
    };
    let pg = |replicas: Vec<ReplicaState>| LocalPg {
        replicas,
        sync_applied: SyncApplied {
            method: SyncMethod::Priority,
            ..SyncApplied::default()
        },
        ..primary(1, 5000)
    };
    let n3_at = |flush: u64| ReplicaState {
        name: name("n3"),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    };
    let empties = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if set.members.is_empty()),
        )
    };
    let d = n1.step(&obs(0, pg(vec![]), &view, vec![acquired(0, 7)]));
    assert!(!empties(&d), "no standby holds n2's commits: {d:?}");
    for t in [1000, 2000, 3000] {
        let d = n1.step(&obs(t, pg(vec![]), &view, vec![]));
        assert!(!empties(&d), "no standby streams, the set emptied: {d:?}");
    }
    for t in [4000, 5000, 6000] {
        let d = n1.step(&obs(t, pg(vec![n3_at(4999)]), &view, vec![]));
        assert!(
            !empties(&d),
            "n3 lags behind n2's commits, the set emptied: {d:?}"
        );
    }
    // A WAL stream that is no member's (a clone in progress, pg_receivewal) holds commits for
    // no failover.
    let clone = ReplicaState {
        name: name("pgha_clone_n4"),
        ..n3_at(5000)
    };
    let d = n1.step(&obs(6500, pg(vec![n3_at(4999), clone]), &view, vec![]));
    assert!(!empties(&d), "a clone's stream counted as a holder: {d:?}");
    let d = n1.step(&obs(7000, pg(vec![n3_at(5000)]), &view, vec![]));
    assert!(
        empties(&d),
        "n3 holds every commit: the set may empty: {d:?}"
    );
}

/// Found by review (2026-12-03): `synchronous_count` raised from 1 to 2 over {n2, n3} was
/// published at once. With count 2 an election needs one member's record only, but the commits
/// acknowledged under count 1 may be on n3 or n2 alone: n2's record alone (n3 cut from the
/// store as the leader crashed) let n2 run without the commits only n3 had. A higher count is
/// published, like a removal, only once `count` members that stay hold the primary's position.
#[test]
fn a_raised_synchronous_count_is_published_once_that_many_members_caught_up() {
    let mut n1 = member("n1");
    let mut view = quorum_leader_view(4000, 2);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Quorum,
        mode: None,
    };
    let pg = |n3_flush: u64| LocalPg {
        replicas: vec![streaming("n2", 5000), streaming("n3", n3_flush)],
        sync_applied: SyncApplied {
            method: SyncMethod::Quorum,
            count: 2,
            names: vec![name("n2"), name("n3")],
        },
        ..primary(1, 5000)
    };
    let raises = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if set.count == 2),
        )
    };
    let d = n1.step(&obs(0, pg(4000), &view, vec![acquired(0, 7)]));
    assert!(!raises(&d), "count 2 published while n3 lags: {d:?}");
    for t in [1000, 2000, 3000] {
        let d = n1.step(&obs(t, pg(4999), &view, vec![]));
        assert!(!raises(&d), "count 2 published while n3 lags: {d:?}");
    }
    let d = n1.step(&obs(4000, pg(5000), &view, vec![]));
    assert!(raises(&d), "both hold every commit: {d:?}");
}

/// Found by the simulation (seed 141133) and, for `strict`, by review (2026-12-04): the set
/// was emptied once n3, tagged `nosync`, held every commit it confirmed (every standby then
/// eligible in `on`); the mode is switched live to `strict`, and n1, far behind, streams.
/// The set {n1} alone would leave n3 ineligible: a leader crash next would promote n1 without
/// those commits. The first members come with every standby that may hold them; n3 leaves
/// only once n1 holds the primary's position.
#[test]
fn the_first_members_of_an_emptied_set_come_with_the_standbys_that_may_hold_its_commits() {
    for mode in [SyncMode::On, SyncMode::Strict] {
        let mut n2 = member("n2");
        let mut holder = record(&standby(1, 5000, Some("n2")), None);
        holder.tags.nosync = true;
        let mut view = View::new()
            .leader("n2", 7)
            .with("n2", record(&primary(1, 5000), None))
            .with("n3", holder)
            .with("n1", record(&standby(1, 1000, Some("n2")), None))
            .config(|c| c.synchronous_mode = mode);
        view.0.sync = SyncSet {
            leader: Some(name("n2")),
            members: Default::default(),
            count: 0,
            method: SyncMethod::Priority,
            mode: None,
        };
        let pg = LocalPg {
            replicas: vec![streaming("n3", 5000), streaming("n1", 1000)],
            ..primary(1, 5000)
        };
        let d = n2.step(&obs(0, pg, &view, vec![acquired(0, 7)]));
        let published = d.actions.iter().find_map(|a| match a {
            Action::PublishSync { set, .. } => Some(set.clone()),
            _ => None,
        });
        let published = published.unwrap_or_else(|| panic!("{mode:?}: no set published: {d:?}"));
        assert!(
            published.members.contains(&name("n1")) && published.members.contains(&name("n3")),
            "{mode:?}: n1 joined without n3: {published:?}"
        );
    }
}

/// The set deleted by hand (or lost with etcd's data) while n1 leads, settled, in mode `on`:
/// its agent goes on with the set it last read ({n2, n3}, marked as one from memory), which
/// matches what PostgreSQL counts, so nothing asked to publish it. A member whose agent
/// started since finds no set and takes it for empty: every member eligible, no position
/// compared (found end to end: n3, behind, was promoted when n1 and n2 crashed). The leader
/// puts it back, guarded by the key's absence, and says so in history.
#[test]
fn a_leader_puts_back_a_synchronous_set_the_store_lost() {
    let mut n1 = member("n1");
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&standby(1, 5000, Some("n1")), None))
        .with("n3", record(&standby(1, 5000, Some("n1")), None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    let set = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Priority,
        mode: None,
    };
    view.0.sync = set.clone();
    view.0.sync_revision = 12;
    let pg = LocalPg {
        replicas: vec![streaming("n2", 5000), streaming("n3", 5000)],
        sync_applied: SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec![name("n2"), name("n3")],
        },
        ..primary(1, 5000)
    };
    let publishes = |d: &Decision| {
        d.actions.iter().find_map(|a| match a {
            Action::PublishSync {
                set, key_revision, ..
            } => Some((set.clone(), *key_revision)),
            _ => None,
        })
    };
    let d = n1.step(&obs(0, pg.clone(), &view, vec![acquired(0, 7)]));
    assert_eq!(publishes(&d), None, "settled, yet published: {d:?}");
    // the key gone; the agent fills in the set it last read
    view.0.sync_revision = 0;
    view.0.sync_from_memory = true;
    let d = n1.step(&obs(1000, pg, &view, vec![]));
    let put_back = SyncSet {
        mode: Some(view.0.config.synchronous_mode),
        ..set
    };
    assert_eq!(
        publishes(&d),
        Some((put_back, 0)),
        "the lost set was not put back, guarded by the key's absence: {d:?}"
    );
    assert!(
        has(&d, |a| matches!(a, Action::RecordHistory(e)
            if e.reason.contains("the store had no synchronous set"))),
        "history does not say why: {d:?}"
    );
}

/// The set says which mode it was published in (an empty one means "only its leader holds
/// what was acknowledged" in `strict` alone): a leader in `off` whose store holds a set of
/// another mode publishes its own once, with its mode and no history entry (an
/// empty set stays empty), then nothing more; switched to `strict`, it publishes the mode
/// again once PostgreSQL waits on its placeholder.
#[test]
fn a_leader_publishes_the_mode_its_set_is_in_force_under_once() {
    let mut n1 = member("n1");
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None));
    // left by n3 in `on` with no standby, the mode switched to `off` since
    view.0.sync = SyncSet {
        leader: Some(name("n3")),
        mode: Some(SyncMode::On),
        ..SyncSet::default()
    };
    let mut published = Vec::new();
    let mut local = primary(1, 5000);
    for step in 0..6u64 {
        let outcomes = match step {
            0 => vec![acquired(0, 7)],
            _ => vec![renewed((step - 1) * 1000)],
        };
        if step == 3 {
            view.0.config.synchronous_mode = SyncMode::Strict;
        }
        let d = n1.step(&obs(step * 1000, local.clone(), &view, outcomes));
        for a in &d.actions {
            match a {
                Action::PublishSync { set, .. } => {
                    published.push((step, set.clone()));
                    view.0.sync = set.clone();
                }
                Action::SetSync(applied) => {
                    local.sync_applied = SyncApplied::parse(&applied.to_string()).unwrap();
                }
                _ => {}
            }
        }
        assert!(
            recorded(&d).is_none_or(|e| e.kind != EventKind::SyncChanged),
            "step {step}: {d:?}"
        );
    }
    let modes: Vec<(u64, Option<SyncMode>, Option<MemberName>)> = published
        .iter()
        .map(|(step, s)| (*step, s.mode, s.leader.clone()))
        .collect();
    assert_eq!(
        modes,
        [
            (0, Some(SyncMode::Off), Some(name("n1"))),
            // once PostgreSQL applied strict's placeholder
            (4, Some(SyncMode::Strict), Some(name("n1")))
        ],
        "{published:?}"
    );
}
