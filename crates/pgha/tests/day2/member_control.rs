//! `pgha url`, `stop`, `start` and `reload` on the members.

use super::*;

fn member_state(c: &dyn Day2, name: &str) -> Option<String> {
    status(c)["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["state"].as_str().unwrap_or_default().to_string())
}

/// Item 1: `pgha url` reaches the primary with libpq, the password off the command line;
/// `pgha stop` and `pgha start` reach the host that runs the member.
pub(super) fn stop_start_url(c: &dyn Day2) {
    let uri = succeeded("url", &c.cli(&["url"])).trim().to_string();
    assert!(!uri.contains(&c.password()), "password in {uri}");
    assert_eq!(psql(&uri, "SELECT pg_is_in_recovery()"), "f", "{uri}");
    let inline = succeeded("url --password", &c.cli(&["url", "--password"]));
    assert!(inline.contains(&c.password()), "{inline}");

    let standby = a_standby(c);
    let member_uri = succeeded("url --member", &c.cli(&["url", "--member", &standby]));
    assert_eq!(
        psql(member_uri.trim(), "SELECT pg_is_in_recovery()"),
        "t",
        "{member_uri}"
    );
    let out = succeeded("stop", &c.cli(&["stop", &standby]));
    assert!(out.contains(&format!("{standby} stopped")), "{out}");
    dist::wait_until(
        &format!("{standby} stopped"),
        Duration::from_secs(30),
        || {
            member_state(c, &standby)
                .is_none_or(|s| s == "stopped")
                .then_some(())
        },
    );
    let out = succeeded("start", &c.start(&standby));
    assert!(out.contains(&format!("{standby} starting")), "{out}");
    dist::wait_until(
        &format!("{standby} streaming again"),
        Duration::from_secs(60),
        || (member_state(c, &standby).as_deref() == Some("streaming")).then_some(()),
    );
    let why = refused("stop of an unknown member", &c.cli(&["stop", "nosuch"]));
    assert!(why.contains("nosuch"), "{why}");
}

/// `pgha reload` of a member whose agent does not answer (its loop frozen, as a stalled
/// process) says why, as the host does once its own bound has passed: the CLI waits past that
/// bound (it gave up at the same instant before, with no more than a timeout to say).
pub(super) fn reload_unanswered(c: &Local) {
    let standby = a_standby(c);
    // past the host's 30 s bound on the reload, and no longer: the cluster's teardown waits
    // for the agent to go on
    let frozen = Duration::from_secs(34);
    pgha_testkit::small_runtime().block_on(c.0.freeze_agent(&standby, frozen));
    let out = c.cli(&["reload", &standby]);
    refused("reload of a frozen agent", &out);
    // each member's outcome on stdout, the failure's summary on stderr
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "{standby}: not reloaded: {standby}'s agent did not answer the reload within 30 s"
        )),
        "{said}"
    );
}

/// When member `name` last loaded its configuration files.
fn conf_load_time(c: &dyn Day2, name: &str) -> String {
    let uri = succeeded("url --member", &c.cli(&["url", "--member", name]));
    psql(uri.trim(), "SELECT pg_conf_load_time()")
}

/// Item 2: `pgha reload` has every member (or the named ones) read its configuration again.
pub(super) fn reload(c: &dyn Day2) {
    let names = member_names(c);
    let before: Vec<String> = names.iter().map(|n| conf_load_time(c, n)).collect();
    let out = succeeded("reload", &c.cli(&["reload"]));
    for (name, before) in names.iter().zip(&before) {
        assert!(out.contains(&format!("{name}: reloaded")), "{out}");
        assert_ne!(&conf_load_time(c, name), before, "{name} did not reload");
    }
    let before: Vec<String> = names.iter().map(|n| conf_load_time(c, n)).collect();
    let out = succeeded("reload one member", &c.cli(&["reload", &names[1]]));
    assert_eq!(out.trim(), format!("{}: reloaded", names[1]));
    for (i, (name, before)) in names.iter().zip(&before).enumerate() {
        let now = conf_load_time(c, name);
        assert_eq!(&now != before, i == 1, "{name}: {before} then {now}");
    }
    let why = refused("reload of an unknown member", &c.cli(&["reload", "nosuch"]));
    assert!(why.contains("nosuch"), "{why}");
}
