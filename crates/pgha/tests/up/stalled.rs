//! Commands given while `pgha up` runs but does not answer (stalled).

use super::*;

/// Found by review: `pgha config set` while `pgha up` was stalled (SIGSTOP: its API takes
/// connections and never answers) took the cluster for stopped, wrote the change to
/// `store.json` and said it would apply at the next start; `pgha up`, going on, wrote its own
/// store over it. The directory's lock says it runs: refused, nothing changed. Meanwhile
/// `pgha status` showed the stopped cluster its files describe, and `pgha reload` said the
/// cluster was not running (seen when a reload outlasted the CLI's request timeout: it said
/// so of a cluster that ran): both name the `pgha up` that runs now.
#[test]
fn a_setting_changed_while_pgha_up_is_stalled_is_refused_not_lost() {
    let tmp = test_dir();
    let dir = tmp.path().join("stalled");
    let d = dir.to_str().unwrap().to_string();
    let up = UpProcess::start(&dir, 2);
    let pid = up.pid().expect("pgha up runs");
    assert!(pgha_testkit::signal(pid, Signal::SIGSTOP));
    // each waits for the request's timeout: at once
    let (out, status, reload) = std::thread::scope(|s| {
        let set = s.spawn(|| pgha(&["config", "set", "--dir", &d, "postgresql.work_mem=7MB"]));
        let status = s.spawn(|| pgha(&["status", "--dir", &d]));
        let reload = s.spawn(|| pgha(&["reload", "--dir", &d, "n1"]));
        (set.join(), status.join(), reload.join())
    });
    let (out, status, reload) = (out.unwrap(), status.unwrap(), reload.unwrap());
    assert!(pgha_testkit::signal(pid, Signal::SIGCONT));
    let why = refused("a change while pgha up is stalled", &out);
    assert!(
        why.contains("nothing answers") && why.contains("nothing was changed"),
        "{why}"
    );
    let runs = format!("`pgha up` runs on {d} (pid {pid}) but did not answer");
    let why = refused("pgha status while pgha up is stalled", &status);
    assert!(why.contains(&runs), "{why}");
    refused("pgha reload while pgha up is stalled", &reload);
    let said = String::from_utf8_lossy(&reload.stdout);
    assert!(
        said.contains(&format!("n1: not reloaded: {runs}")),
        "{said}"
    );
    let shown = pgha(&["config", "show", "--dir", &d]);
    let shown = succeeded("pgha config show", &shown);
    assert!(!shown.contains("7MB"), "{shown}");
}
