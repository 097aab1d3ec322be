//! `pgha status --topology`, and `pgha switchover --at` run at its time or withdrawn.

use super::*;

/// `pgha status --topology` draws who streams from whom; `pgha switchover --at` runs at its
/// time (shown in status until then) and a later one can be withdrawn.
pub(super) fn topology_and_scheduled_switchover(c: &dyn Day2) {
    let s = status(c);
    let leader = s["leader"].as_str().unwrap().to_string();
    let tree = succeeded("status --topology", &c.cli(&["status", "--topology"]));
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], format!("{leader} (primary, running)"), "{tree}");
    let standbys = s["members"].as_array().unwrap().len() - 1;
    assert_eq!(lines.len(), 1 + standbys, "{tree}");
    assert!(
        lines[1..].iter().all(|l| l.contains("(standby, streaming")),
        "{tree}"
    );
    assert!(lines.last().unwrap().starts_with("└── "), "{tree}");

    let target = a_standby(c);
    let out = succeeded(
        "switchover --at",
        &c.cli(&["switchover", "--to", &target, "--at", "+8s"]),
    );
    assert!(out.contains("scheduled for"), "{out}");
    let table = succeeded("status", &c.cli(&["status"]));
    assert!(
        table.contains(&format!("Switchover to {target} scheduled for")),
        "{table}"
    );
    assert_eq!(
        status(c)["leader"],
        leader.as_str(),
        "it ran before its time"
    );
    // The lease moves to the target before its promotion is done; the request is withdrawn
    // by the target once it runs writable.
    dist::wait_until(
        &format!("{target} leading, the request withdrawn"),
        Duration::from_secs(60),
        || {
            let s = status(c);
            (s["leader"] == target.as_str() && s["switchover"].is_null()).then_some(())
        },
    );
    let table = succeeded("status", &c.cli(&["status"]));
    assert!(!table.contains("Switchover"), "{table}");
    // Every member streams from the new leader before the next steps (the restarts after
    // this want a settled cluster).
    dist::wait_until("the others streaming", Duration::from_secs(60), || {
        let s = status(c);
        let members = s["members"].as_array().unwrap();
        members
            .iter()
            .all(|m| m["name"] == target.as_str() || m["state"] == "streaming")
            .then_some(())
    });
    let out = succeeded(
        "switchover --at +1h",
        &c.cli(&["switchover", "--to", &leader, "--at", "+1h"]),
    );
    assert!(out.contains("scheduled for"), "{out}");
    let out = succeeded("switchover --cancel", &c.cli(&["switchover", "--cancel"]));
    assert!(
        out.contains(&format!("withdrew the switchover to {leader}")),
        "{out}"
    );
}
