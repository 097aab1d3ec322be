//! What the API reports: member metrics, health checks, the failover-time histogram.

use super::*;

/// The value of `family{member="NAME"}` in a Prometheus text.
fn sample(text: &str, family: &str, member: &str) -> Option<String> {
    let prefix = format!("{family}{{member=\"{member}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Item 5: /metrics has each member's server version, pending restarts, failsafe and last
/// contact with the store, at parity with Patroni's.
pub(super) fn metrics(c: &dyn Day2) {
    let (api, names) = c.api();
    dist::wait_until("member metrics", Duration::from_secs(20), || {
        let (code, text) = dist::http("GET", &api, "/metrics", None, None)?;
        assert_eq!(code, 200, "{text}");
        names
            .iter()
            .all(|n| {
                let version: u64 = sample(&text, "pgha_member_server_version", n)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                version >= 140000
                    && sample(&text, "pgha_member_pending_restart", n).as_deref() == Some("0")
                    && sample(&text, "pgha_member_pending_restart_parameters", n).as_deref()
                        == Some("0")
                    && sample(&text, "pgha_member_failsafe_active", n).as_deref() == Some("0")
                    && sample(&text, "pgha_member_store_last_contact_seconds", n).as_deref()
                        == Some("0")
            })
            .then_some(())
    });
}

/// The health checks HAProxy and Kubernetes send, on every member of the host asked
/// (`?member=` names it; `pgha up` runs them all): OPTIONS and HEAD answer as GET does;
/// /read-only and /readiness take the primary and streaming standbys; /liveness needs only
/// the agent stepping; asynchronous standbys are /async, none /sync.
pub(super) fn health_checks(c: &dyn Day2) {
    let (api, names) = c.api();
    let leader = status(c)["leader"].as_str().unwrap().to_string();
    for name in &names {
        let leads = *name == leader;
        let code = |method: &str, path: &str| {
            let path = format!("{path}?member={name}");
            dist::http(method, &api, &path, None, None).unwrap().0
        };
        let role = |ok: bool| if ok { 200 } else { 503 };
        assert_eq!(code("OPTIONS", "/primary"), role(leads), "{name}");
        assert_eq!(code("HEAD", "/primary"), role(leads), "{name}");
        assert_eq!(code("OPTIONS", "/replica"), role(!leads), "{name}");
        for path in ["/read-only", "/readiness", "/liveness"] {
            assert_eq!(code("GET", path), 200, "{name} {path}");
        }
        assert_eq!(code("GET", "/async"), role(!leads), "{name}");
        assert_eq!(code("GET", "/sync"), 503, "{name}");
    }
}

/// `pgha_failover_seconds`: a switchover to a member of the host whose API is asked shows
/// in its histogram, labelled `switchover`, within a bound a switchover keeps.
pub(super) fn failover_histogram(c: &dyn Day2) {
    let (api, names) = c.api();
    let switch_to = |to: &str| {
        succeeded("switchover", &c.cli(&["switchover", "--to", to]));
        dist::wait_until(&format!("{to} leading"), Duration::from_secs(60), || {
            let s = status(c);
            // from the new leader: a standby still naming the old one is refused as the
            // next switchover's target (the whole suite once asked too early: "node1 is not
            // streaming from the leader")
            let streaming = s["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["state"] == "streaming" && m["upstream"] == to)
                .count();
            (s["leader"] == to && streaming + 1 == s["members"].as_array().unwrap().len())
                .then_some(())
        });
    };
    let leader = status(c)["leader"].as_str().unwrap().to_string();
    let target = match names.iter().find(|n| **n != leader) {
        Some(n) => n.clone(),
        None => {
            // This host runs only the leader: move it away first, then back.
            switch_to(&a_standby(c));
            names[0].clone()
        }
    };
    switch_to(&target);
    let labels = format!("member=\"{target}\",kind=\"switchover\"");
    let (count, sum) = dist::wait_until(
        "the switchover in the histogram",
        Duration::from_secs(10),
        || {
            let (_, text) = dist::http("GET", &api, "/metrics", None, None)?;
            let value = |series: &str| -> Option<f64> {
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!("pgha_failover_seconds_{series}{{{labels}}} "))
                    })?
                    .parse()
                    .ok()
            };
            Some((value("count")?, value("sum")?))
        },
    );
    assert!(count >= 1.0, "{count}");
    assert!(
        sum > 0.0 && sum < 30.0 * count,
        "switchovers took {sum} s in all ({count})"
    );
}
