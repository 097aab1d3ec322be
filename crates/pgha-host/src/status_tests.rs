//! The synchronous warning of `pgha status`, from the store's view and the members probed.

use super::*;

use pgha_core::{ClusterView, MemberName, SyncMode, SyncSet};

/// A view of mode `mode` whose published set is [n2, n3], led by n1.
fn view(mode: SyncMode) -> ClusterView {
    let mut view = ClusterView::default();
    view.config.synchronous_mode = mode;
    view.sync = SyncSet {
        leader: Some(MemberName::new("n1")),
        members: [MemberName::new("n2"), MemberName::new("n3")].into(),
        count: 1,
        ..SyncSet::default()
    };
    view
}

/// n1 primary counting `counted`, n2 and n3 standbys with the sync state `state`.
fn members(counted: &str, state: Option<&str>) -> Vec<MemberStatus> {
    let mut primary = MemberStatus::new("n1", "h", 5432, Role::Primary, State::Running);
    primary.synchronous_standby_names = Some(counted.to_string());
    let standby = |name: &str| {
        let mut s = MemberStatus::new(name, "h", 5432, Role::Standby, State::Recovering);
        s.sync_state = state.map(str::to_string);
        s
    };
    vec![primary, standby("n2"), standby("n3")]
}

#[test]
fn mode_on_says_commits_wait_while_the_primary_counts_a_standby_and_degraded_once_it_counts_none() {
    let on = view(SyncMode::On);
    let waiting = sync_status(&on, &members("FIRST 1 (\"n3\")", None)).warning;
    assert_eq!(
        waiting.as_deref(),
        Some("commits wait: no synchronous standby is streaming (waiting for n3)")
    );
    let degraded = sync_status(&on, &members("", None)).warning.unwrap();
    assert!(
        degraded.starts_with("degraded to asynchronous") && degraded.contains("n2 or n3"),
        "{degraded}"
    );
    assert_eq!(
        sync_status(&on, &members("FIRST 1 (\"n3\")", Some("sync"))).warning,
        None
    );
    // strict's placeholder, still in force after a switch to `on`: commits wait for any.
    let placeholder = format!("FIRST 1 (\"{}\")", pgha_core::sync::NO_STANDBY);
    assert_eq!(
        sync_status(&on, &members(&placeholder, None))
            .warning
            .as_deref(),
        Some("commits wait: no synchronous standby is streaming (waiting for any standby)")
    );
    let strict = sync_status(&view(SyncMode::Strict), &members("", None)).warning;
    assert_eq!(
        strict.as_deref(),
        Some("commits wait: no synchronous standby is streaming (waiting for n2 or n3)")
    );
}

/// Found by review: with `ANY 2`, one standby confirming (`quorum`) hid the wait for the
/// second, and a wait for both was said as "n2 or n3". The status now counts what each commit
/// needs against what streams.
#[test]
fn a_wait_for_more_than_one_standby_names_how_many_and_whom() {
    let on = view(SyncMode::On);
    let any_two = "ANY 2 (\"n2\", \"n3\")";
    let mut one_streams = members(any_two, None);
    one_streams[1].sync_state = Some("quorum".into());
    assert_eq!(
        sync_status(&on, &one_streams).warning.as_deref(),
        Some(
            "commits wait: each needs 2 synchronous standbys and only n2 streams (waiting for n3)"
        )
    );
    assert_eq!(
        sync_status(&on, &members(any_two, None)).warning.as_deref(),
        Some("commits wait: each needs 2 synchronous standbys and none streams (waiting for n2 and n3)")
    );
    assert_eq!(
        sync_status(&on, &members(any_two, Some("quorum"))).warning,
        None
    );
    // FIRST 1 of two: either one will do.
    assert_eq!(
        sync_status(&on, &members("FIRST 1 (\"n2\", \"n3\")", None))
            .warning
            .as_deref(),
        Some("commits wait: no synchronous standby is streaming (waiting for n2 or n3)")
    );
    // FIRST 2 of two, n3 streaming (`sync`), n2 not.
    let mut first_two = members("FIRST 2 (\"n2\", \"n3\")", None);
    first_two[2].sync_state = Some("sync".into());
    assert_eq!(
        sync_status(&on, &first_two).warning.as_deref(),
        Some(
            "commits wait: each needs 2 synchronous standbys and only n3 streams (waiting for n2)"
        )
    );
    // ANY 2 of three, one streaming: one more of the other two.
    let mut three = members("ANY 2 (\"n2\", \"n3\", \"n4\")", None);
    three.push(MemberStatus::new(
        "n4",
        "h",
        5432,
        Role::Standby,
        State::Recovering,
    ));
    three[1].sync_state = Some("quorum".into());
    assert_eq!(
        sync_status(&view(SyncMode::Strict), &three).warning.as_deref(),
        Some("commits wait: each needs 2 synchronous standbys and only n2 streams (waiting for n3 or n4)")
    );
}
