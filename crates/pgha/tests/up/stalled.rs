//! Commands given while `pgha up` runs but does not answer (stalled).

use super::*;

/// Found by review: `pgha config set` while `pgha up` was stalled (SIGSTOP: its API takes
/// connections and never answers) took the cluster for stopped, wrote the change to
/// `store.json` and said it would apply at the next start; `pgha up`, going on, wrote its own
/// store over it. The directory's lock says it runs: refused, nothing changed.
#[test]
fn a_setting_changed_while_pgha_up_is_stalled_is_refused_not_lost() {
    let tmp = test_dir();
    let dir = tmp.path().join("stalled");
    let d = dir.to_str().unwrap().to_string();
    let up = UpProcess::start(&dir, 2);
    let pid = up.pid().expect("pgha up runs");
    assert!(pgha_testkit::signal(pid, Signal::SIGSTOP));
    let out = pgha(&["config", "set", "--dir", &d, "postgresql.work_mem=7MB"]);
    assert!(pgha_testkit::signal(pid, Signal::SIGCONT));
    let why = refused("a change while pgha up is stalled", &out);
    assert!(
        why.contains("nothing answers") && why.contains("nothing was changed"),
        "{why}"
    );
    let shown = pgha(&["config", "show", "--dir", &d]);
    let shown = succeeded("pgha config show", &shown);
    assert!(!shown.contains("7MB"), "{shown}");
}
