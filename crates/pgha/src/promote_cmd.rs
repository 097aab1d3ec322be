//! `pgha switchover` and `pgha failover`: a promotion requested and waited for, said as it goes.

use pgha_core::RequestKind;
use pgha_host::promotion_wait::Awaited;
use pgha_host::ClusterHandle;

/// Requests a promotion (`to` optional for a switchover) and waits for it, saying what
/// happens.
pub async fn run(
    handle: &ClusterHandle,
    to: Option<String>,
    kind: RequestKind,
    leader_down: bool,
) -> anyhow::Result<()> {
    let what = match kind {
        RequestKind::Switchover => "switchover",
        RequestKind::Failover { .. } => "failover",
    };
    let done = handle
        .promote(to, kind, leader_down, |awaited, best| match awaited {
            Awaited::Member(target) => outln!("{what} to {target} requested"),
            Awaited::SuccessorOf(leader) => outln!(
                "{what} requested: {leader} hands over to the best standby when it steps down \
                 ({best} is, now)"
            ),
        })
        .await?;
    outln!(
        "{} is the primary (took {:.1} s)",
        done.target,
        done.took.as_secs_f64()
    );
    Ok(())
}
