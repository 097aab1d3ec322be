//! Health checks a load balancer understands (`/health`, `/primary`, `/replica`, `/read-only`,
//! `/sync`, `/async`, `/liveness`, `/readiness`; GET, HEAD or OPTIONS), answered
//! from what the member's agent last observed: they never open a PostgreSQL connection, so a
//! flood of checks costs PostgreSQL nothing. On a host of several members (`pgha up`) the
//! member is named with `?member=NAME`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgha_agent::Observed;
use pgha_core::MemberName;
use serde_json::json;

use super::size::parse_size;
use super::{Failure, FailureKind};
use crate::host::Host;

/// A check's query string (`?member=NAME`, `?lag=SIZE`).
type Params = HashMap<String, String>;

/// The member a check is about: `?member=NAME`, or the host's only member.
fn member(host: &Host, q: &Params) -> Result<MemberName, Failure> {
    match q.get("member") {
        Some(name) => Ok(host.spec(name)?.name.clone()),
        None => host.only_member().map(|s| s.name.clone()).ok_or_else(|| {
            let names: Vec<String> = host.specs().map(|s| s.name.to_string()).collect();
            Failure::new(
                FailureKind::NotHere,
                format!(
                    "this host runs {}: name one with ?member=NAME",
                    names.join(", ")
                ),
            )
        }),
    }
}

/// What the agent's last step saw, if recent enough to answer for now. The read endpoints
/// answer from it and never open a PostgreSQL connection of their own: a flood of health
/// checks costs PostgreSQL nothing.
fn observed(host: &Host, me: &MemberName) -> Option<Observed> {
    host.report(me)?.observed.filter(Observed::fresh)
}

/// Answers a check about the member `?member=` names (or the host's only one): `check` sees
/// what its agent last observed and says whether it passes (200, else 503) and the body.
fn answer(
    host: &Host,
    q: &Params,
    check: impl FnOnce(&MemberName, Option<&Observed>) -> (bool, serde_json::Value),
) -> Response {
    match member(host, q) {
        Err(failure) => failure.into_response(),
        Ok(me) => {
            let o = observed(host, &me);
            let (ok, body) = check(&me, o.as_ref());
            reply(ok, body)
        }
    }
}

fn age_ms(o: Option<&Observed>) -> Option<u64> {
    o.map(|o| o.at.elapsed().as_millis() as u64)
}

fn reply(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// 200 while PostgreSQL answers (as of the agent's last step, at most a few loops ago).
pub async fn health(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    answer(&host, &q, |me, o| {
        let running = o.is_some_and(|o| o.local.running && !o.local.unresponsive);
        let reason = host
            .report(me)
            .and_then(|r| r.reason)
            .map(|r| r.to_string());
        let body = json!({
            "member": me,
            "running": running,
            "decision": reason,
            "observed_ms_ago": age_ms(o),
        });
        (running, body)
    })
}

/// 200 only on the lease holder running as a writable primary, while it trusts its lease.
pub async fn primary(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    answer(&host, &q, |me, o| {
        let body = json!({
            "member": me,
            "leader": o.and_then(|o| o.leader.clone()),
            "writable": o.is_some_and(|o| o.local.running && !o.local.in_recovery),
            "observed_ms_ago": age_ms(o),
        });
        (o.is_some_and(|o| o.leads(me)), body)
    })
}

/// The `?lag=SIZE` bound of a check (bytes, or with a unit: 16MB, 512kB, 1GB). A bound that
/// does not parse is refused (400), never read as "no bound".
fn lag_bound(q: &Params) -> Result<Option<u64>, Failure> {
    match q.get("lag").map(|text| parse_size(text)) {
        None => Ok(None),
        Some(Ok(bytes)) => Ok(Some(bytes)),
        Some(Err(e)) => Err(Failure::new(FailureKind::BadRequest, e)),
    }
}

/// A standby check: 200 on a streaming standby that `role` accepts, within `?lag=` of the
/// leader's last published position.
fn standby_check(host: &Host, q: &Params, role: impl FnOnce(&Observed) -> bool) -> Response {
    let bound = match lag_bound(q) {
        Ok(bound) => bound,
        Err(refused) => return refused.into_response(),
    };
    answer(host, q, |me, o| {
        let Some(o) = o else {
            return (false, json!({ "member": me, "running": false }));
        };
        let lag = o
            .leader_lsn
            .map(|l| l.0.saturating_sub(o.local.replay_lsn.0));
        let within = bound.is_none_or(|b| lag.is_some_and(|l| l <= b));
        let body = json!({
            "member": me,
            "streaming": o.streams(),
            "synchronous": o.synchronous,
            "lag_bytes": lag,
            "observed_ms_ago": age_ms(Some(o)),
        });
        (o.streams() && within && role(o), body)
    })
}

/// Whether member `me` of this host takes read-only sessions (not tagged `noloadbalance`).
fn balances(host: &Host, q: &Params) -> bool {
    member(host, q)
        .ok()
        .and_then(|m| host.spec(m.as_str()).ok().map(|s| !s.tags.noloadbalance))
        .unwrap_or(true)
}

/// 200 on a streaming standby that takes read-only sessions (not tagged `noloadbalance`);
/// `?lag=SIZE` also bounds its replay lag.
pub async fn replica(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    let balances = balances(&host, &q);
    standby_check(&host, &q, |_| balances)
}

/// 200 on a streaming standby in the synchronous set the leader published: commits wait for
/// acknowledgements from that set (`FIRST n (...)` or `ANY n (...)`), so with priority a
/// potential standby of the set answers 200 too (it takes over as soon as one ahead of it
/// cannot acknowledge).
pub async fn sync(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    standby_check(&host, &q, |o| o.synchronous)
}

/// 200 on a streaming standby outside the synchronous set.
pub async fn asynchronous(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    standby_check(&host, &q, |o| !o.synchronous)
}

/// 200 on what can serve reads: the leading primary, or a streaming standby within `?lag=`.
pub async fn read_only(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    if let Err(refused) = lag_bound(&q) {
        return refused.into_response();
    }
    let leads = member(&host, &q)
        .ok()
        .and_then(|m| observed(&host, &m).map(|o| o.leads(&m)))
        .unwrap_or(false);
    if !leads {
        let balances = balances(&host, &q);
        return standby_check(&host, &q, |_| balances);
    }
    answer(&host, &q, |me, o| {
        let body = json!({ "member": me, "role": "primary", "observed_ms_ago": age_ms(o) });
        (true, body)
    })
}

/// 200 while this member's agent steps (its last observation is recent), whatever
/// PostgreSQL does: a check that the agent itself is alive.
pub async fn liveness(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    answer(&host, &q, |me, o| {
        let body = json!({ "member": me, "observed_ms_ago": age_ms(o) });
        (o.is_some(), body)
    })
}

/// 200 when the member can take traffic in its role: the leading primary, or a streaming
/// standby.
pub async fn readiness(State(host): State<Arc<Host>>, Query(q): Query<Params>) -> Response {
    answer(&host, &q, |me, o| {
        let ready = o.is_some_and(|o| o.leads(me) || o.streams());
        let body = json!({ "member": me, "ready": ready, "observed_ms_ago": age_ms(o) });
        (ready, body)
    })
}
