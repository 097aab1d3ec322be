//! Health checks a load balancer understands (`/health`, `/primary`, `/replica`), answered
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

use super::{Failure, FailureKind};
use crate::host::Host;

/// The member a check is about: `?member=NAME`, or the host's only member.
fn member(host: &Host, q: &HashMap<String, String>) -> Result<MemberName, Failure> {
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
    q: &HashMap<String, String>,
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
pub async fn health(
    State(host): State<Arc<Host>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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
pub async fn primary(
    State(host): State<Arc<Host>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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

/// 200 on a streaming standby; `?lag=SIZE` (bytes, or with a unit: 16MB, 512kB, 1GB) also
/// bounds its replay lag behind the leader's last published position. A bound that does not
/// parse is refused (400), never read as "no bound".
pub async fn replica(
    State(host): State<Arc<Host>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let bound = match q.get("lag").map(|text| parse_size(text)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Failure::new(FailureKind::BadRequest, e).into_response(),
    };
    answer(&host, &q, |me, o| {
        let Some(o) = o else {
            return (false, json!({ "member": me, "running": false }));
        };
        let streaming = o.local.running && o.local.in_recovery && o.local.streaming;
        let lag = o
            .leader_lsn
            .map(|l| l.0.saturating_sub(o.local.replay_lsn.0));
        let within = bound.is_none_or(|b| lag.is_some_and(|l| l <= b));
        let body = json!({
            "member": me,
            "streaming": streaming,
            "lag_bytes": lag,
            "observed_ms_ago": age_ms(Some(o)),
        });
        (streaming && within, body)
    })
}

/// Why a `?lag=` bound was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("lag={0:?}: expected a size such as 16MB or 16777216")]
    NotANumber(String),
    #[error("lag={text:?}: unknown unit {unit:?} (use B, kB, MB, GB or TB)")]
    UnknownUnit { text: String, unit: String },
    #[error("lag={0:?}: too large")]
    TooLarge(String),
}

/// A size in bytes: a number with an optional unit (B, kB, MB, GB, TB; powers of 1024, as
/// PostgreSQL reads memory units), e.g. `16MB` or `16777216`.
fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::NotANumber(text.to_string()))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        other => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            })
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn lag_bounds_read_units_and_refuse_what_they_cannot_read() {
        assert_eq!(parse_size("16777216"), Ok(16 << 20));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("512kB"), Ok(512 << 10));
        assert_eq!(parse_size("1 GB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "MB",
            "16 furlongs",
            "-1",
            "99999999999999999999",
            "16777216TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
