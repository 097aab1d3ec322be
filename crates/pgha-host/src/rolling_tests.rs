//! The plan of a rolling restart, and where it stops when another member leads than planned.

use super::*;
use crate::status::{MemberStatus, ProxyStatus};

fn member(name: &str, role: Role, state: State, pending: &[&str]) -> MemberStatus {
    MemberStatus {
        timeline: Some(1),
        pending_restart: pending.iter().map(|p| p.to_string()).collect(),
        ..MemberStatus::new(name, "127.0.0.1", 1, role, state)
    }
}

fn cluster(members: Vec<MemberStatus>) -> ClusterStatus {
    ClusterStatus {
        cluster: "c".into(),
        switchover: None,
        leader: Some("n2".into()),
        managed: true,
        paused: false,
        members,
        proxy: ProxyStatus {
            rw: String::new(),
            ro: String::new(),
            listeners: None,
        },
        synchronous: None,
    }
}

fn healthy() -> Vec<MemberStatus> {
    vec![
        member("n1", Role::Standby, State::Streaming, &["shared_buffers"]),
        member("n2", Role::Primary, State::Running, &["shared_buffers"]),
        member("n3", Role::Standby, State::Streaming, &[]),
    ]
}

#[test]
fn standbys_go_first_and_the_leader_last() {
    let plan = plan(&cluster(healthy()), &[], false, None).unwrap();
    assert_eq!(plan.standbys, ["n1", "n3"]);
    assert_eq!(plan.primary.as_deref(), Some("n2"));
    let pending = super::plan(&cluster(healthy()), &[], true, None).unwrap();
    assert_eq!(pending.standbys, ["n1"]);
    assert_eq!(pending.primary.as_deref(), Some("n2"));
    let named = super::plan(&cluster(healthy()), &["n3".into()], false, None).unwrap();
    assert_eq!(
        (named.standbys, named.primary),
        (vec!["n3".to_string()], None)
    );
}

#[test]
fn a_role_chooses_the_leader_or_every_other_member() {
    let primary = plan(&cluster(healthy()), &[], false, Some(RoleFilter::Primary)).unwrap();
    assert_eq!(
        (primary.standbys, primary.primary),
        (Vec::<String>::new(), Some("n2".to_string()))
    );
    let standbys = plan(&cluster(healthy()), &[], false, Some(RoleFilter::Standby)).unwrap();
    assert_eq!(
        (standbys.standbys, standbys.primary),
        (vec!["n1".to_string(), "n3".to_string()], None)
    );
    // With --pending: the standbys that wait for a restart only.
    let pending = plan(&cluster(healthy()), &[], true, Some(RoleFilter::Standby)).unwrap();
    assert_eq!(
        (pending.standbys, pending.primary),
        (vec!["n1".to_string()], None)
    );
    // The role is the leader's, not what a member was before (n1 led once, n2 leads).
    let mut members = healthy();
    members[0].role = Role::Standby;
    let primary = plan(&cluster(members), &[], true, Some(RoleFilter::Primary)).unwrap();
    assert_eq!(primary.primary.as_deref(), Some("n2"));
}

#[test]
fn a_member_down_or_unknown_refuses_the_restart() {
    let mut members = healthy();
    members[2].state = State::Stopped;
    assert!(matches!(
        plan(&cluster(members), &[], false, None),
        Err(RestartRefused::NotHealthy { member, .. }) if member == "n3"
    ));
    assert_eq!(
        plan(&cluster(healthy()), &["n9".into()], false, None),
        Err(RestartRefused::UnknownMember("n9".into()))
    );
    let mut leaderless = cluster(healthy());
    leaderless.leader = None;
    assert_eq!(
        plan(&leaderless, &[], false, None),
        Err(RestartRefused::NoLeader)
    );
    // Found by review (2026-12-07): paused, each member stopped stayed down (no start of
    // PostgreSQL in maintenance mode) and the restart gave up after 180 s.
    let mut paused = cluster(healthy());
    paused.paused = true;
    assert_eq!(plan(&paused, &[], false, None), Err(RestartRefused::Paused));
}

/// Found by review (2026-12-07): a rolling restart went by the plan it made at its start.
/// With the leader changed meanwhile (a failover, another operator's switchover), it
/// stopped the member planned as a standby that led now (a failover nobody asked for), and
/// handed over from whoever led. It stops where the leader is not the one it planned with.
#[tokio::test]
async fn a_restart_stops_where_another_member_leads_than_planned() {
    let plan = plan(&cluster(healthy()), &[], false, None).unwrap();
    assert_eq!(plan.leader, "n2");
    let mut now = cluster(healthy());
    now.leader = Some("n1".into());
    let handle = ClusterHandle::over(crate::stub_api::serving("/status", now).await);
    let mut steps = Vec::new();
    let stopped = handle.restart(&plan, |s| steps.push(s)).await.unwrap_err();
    assert!(
        stopped.to_string().contains("n2 when it began, n1 now"),
        "{stopped:#}"
    );
    assert!(steps.is_empty(), "{steps:?}");
}
