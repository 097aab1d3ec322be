//! Waits, after a fault, until the cluster has recovered: the member it hit back in service,
//! every member streaming from one writable leader, and a write sent after the fault
//! acknowledged; starts a stopped member again once another takes writes.

use std::time::Duration;

use pgha_host::api::read::ClusterRecord;
use pgha_host::status::{ClusterStatus, Role, State};

use crate::clock::{Clock, Micros};
use crate::faults::{self, Injected};
use crate::health;
use crate::target::Target;
use crate::workload::Record;

/// How a fault ended.
#[derive(Debug, Default)]
pub struct Recovery {
    pub recovered: Option<Micros>,
    pub rejoined: Option<Micros>,
    pub leader_after: Option<String>,
    /// Why it did not recover, as last seen, or what else happened.
    pub note: Option<String>,
    /// Nobody took over from a stopped primary: the campaign started it again.
    pub no_takeover: bool,
}

/// Polls every 250 ms until recovered, or until `bound` has passed since the fault ended (now:
/// a partition, a lossy link or a paused agent lasts its own length first, twice a ttl that a
/// change-config may have raised past the bound). Times are counted from `at`, when it began.
pub async fn wait(
    target: &Target,
    fault: &Injected,
    at: Micros,
    clock: Clock,
    record: &Record,
    bound: Duration,
) -> Recovery {
    let names: Vec<String> = target.members.iter().map(|m| m.name.clone()).collect();
    let deadline = clock.now() + bound.as_micros() as Micros;
    let mut pending_start = fault.start_later.clone();
    let mut out = Recovery::default();
    let mut last_why = String::from("no answer from the cluster's API");
    while clock.now() < deadline {
        let status = target.client.get::<ClusterStatus>("/status").await;
        let cluster = target.client.get::<ClusterRecord>("/cluster").await;
        let now = clock.now();
        let (status, cluster) = match (status, cluster) {
            (Ok(s), Ok(c)) => (s, c),
            (Err(e), _) | (_, Err(e)) => {
                last_why = format!("the API: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        // A stopped primary starts again once another member takes writes (or halfway to
        // the bound, when none does: then its return is what recovery needs).
        if let Some(member) = pending_start.clone() {
            let taken_over =
                cluster.leader.as_ref().is_some_and(|l| *l != member) && record.acked_since(at);
            if taken_over || now - at > (deadline - at) / 2 {
                match faults::start(target, &member).await {
                    Ok(_) if !taken_over => {
                        pending_start = None;
                        out.no_takeover = true;
                        out.note = Some(format!(
                            "nobody took over within {:.0} s: {member} was started again",
                            (now - at) as f64 / 1e6
                        ));
                    }
                    Ok(_) => pending_start = None,
                    Err(e) => tracing::warn!("starting {member} again: {e}"),
                }
            }
        }
        // Back in service since when: a member that drops out again (a standby whose stream
        // breaks right after it started) has not rejoined yet.
        match (
            pending_start.is_none() && in_service(&status, fault),
            out.rejoined,
        ) {
            (true, None) => out.rejoined = Some(now),
            (false, Some(_)) => out.rejoined = None,
            _ => {}
        }
        match health::assess(&status, &cluster, &names) {
            Ok(h) if out.rejoined.is_some() && record.acked_since(at) => {
                out.recovered = Some(now);
                out.leader_after = Some(h.leader);
                return out;
            }
            Ok(_) if out.rejoined.is_none() => {
                last_why = format!("{} is not back in service", fault.victim)
            }
            Ok(_) => last_why = "no write sent after the fault was acknowledged".into(),
            Err(why) => last_why = why.join("; "),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let started_again = out
        .note
        .take()
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    out.note = Some(format!("not recovered: {last_why}{started_again}"));
    if let Some(member) = pending_start {
        // Leave no member stopped, whatever happened.
        let _ = faults::start(target, &member).await;
    }
    out
}

/// Whether the member the fault hit serves again: a standby streaming from the leader, or,
/// after a fault that need not move the leader, the writable leader itself.
fn in_service(status: &ClusterStatus, fault: &Injected) -> bool {
    let Some((role, state)) = health::member_state(status, &fault.victim) else {
        return false;
    };
    let leads = status.leader.as_deref() == Some(fault.victim.as_str());
    match (role, state) {
        (Role::Standby, State::Streaming) => !leads,
        (Role::Primary, State::Running) => leads && !fault.expect_standby,
        _ => false,
    }
}
