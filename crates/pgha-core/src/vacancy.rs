//! Why the cluster has no leader, in the words the history records.

use crate::observe::ClusterView;
use crate::types::MemberName;

/// Why the cluster has no leader, as the store shows the last one (for the history, in words
/// a DBA reads): gone altogether, down, stepped down (and why, when it said so for `term`, the
/// newest term known), or silent.
pub(crate) fn vacancy_cause(
    view: &ClusterView,
    me: &MemberName,
    last: Option<&MemberName>,
    term: Option<u64>,
) -> String {
    let Some(last) = last else {
        return "no leader, and this member had seen none".to_string();
    };
    if last == me {
        return format!(
            "{me} led last: its own lease ended (not renewed in time, or let go), and it is the \
             best candidate again"
        );
    }
    match view.members.get(last) {
        None => format!(
            "{last} is gone: its lease and its member key were released or expired (stopped \
             by `pgha stop`, its agent shut down, or its host stopped answering)"
        ),
        Some(r) if !r.running => format!(
            "the lease of {last} ended with its PostgreSQL down (it crashed, or was stopped, \
             and did not come back within primary_start_timeout_ms)"
        ),
        Some(r) if r.in_recovery => match r.stepped_down.filter(|s| Some(s.term) == term) {
            Some(stepped) => format!("{last} stepped down: {}", stepped.cause),
            None => format!("{last} stepped down: it runs read-only"),
        },
        Some(_) => format!(
            "the lease of {last} expired while it still said it was writable (its agent or its \
             link to the store went silent; it fences itself)"
        ),
    }
}

/// Why a member promotes on a lease it holds without having decided a promotion in this
/// process: it adopted the key, found under its own name (its agent restarted beside a demoted
/// primary, or an acquisition's answer was lost). A leader it saw before says the rest.
pub(crate) fn promotion_on_held_key(
    view: &ClusterView,
    me: &MemberName,
    last: Option<&MemberName>,
    term: Option<u64>,
) -> String {
    match last {
        Some(last) if last != me => vacancy_cause(view, me, Some(last), term),
        _ => format!(
            "{me} found the leader key under its own name from before (its agent restarted, or \
             an acquisition's answer was lost) with its PostgreSQL read-only: promoted on that \
             lease"
        ),
    }
}
