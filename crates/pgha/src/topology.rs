//! `pgha status --topology`: who streams from whom, drawn as a tree under the leader.

use pgha_host::status::{ClusterStatus, MemberStatus};

/// Who streams from whom, as a tree under the leader:
/// ```text
/// n1 (primary, running)
/// ├── n2 (standby, streaming, sync)
/// └── n3 (standby, streaming, async)
/// ```
pub fn render_topology(status: &ClusterStatus) -> String {
    let label = |m: &MemberStatus| {
        let mut parts = vec![m.role.to_string(), m.state.to_string()];
        parts.extend(m.sync_state.clone());
        format!("{} ({})", m.name, parts.join(", "))
    };
    let mut out = String::new();
    let mut placed = std::collections::BTreeSet::new();
    fn children<'a>(status: &'a ClusterStatus, parent: &str) -> Vec<&'a MemberStatus> {
        status
            .members
            .iter()
            .filter(|m| m.upstream.as_deref() == Some(parent) && m.name != parent)
            .collect()
    }
    fn walk(
        status: &ClusterStatus,
        parent: &str,
        prefix: &str,
        label: &dyn Fn(&MemberStatus) -> String,
        placed: &mut std::collections::BTreeSet<String>,
        out: &mut String,
    ) {
        let kids = children(status, parent);
        for (i, kid) in kids.iter().enumerate() {
            if !placed.insert(kid.name.clone()) {
                continue;
            }
            let last = i + 1 == kids.len();
            out.push_str(&format!(
                "{prefix}{}{}\n",
                if last { "└── " } else { "├── " },
                label(kid)
            ));
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(status, &kid.name, &deeper, label, placed, out);
        }
    }
    if let Some(leader) = status
        .leader
        .as_ref()
        .and_then(|l| status.members.iter().find(|m| &m.name == l))
    {
        placed.insert(leader.name.clone());
        out.push_str(&format!("{}\n", label(leader)));
        walk(status, &leader.name, "", &label, &mut placed, &mut out);
    }
    for m in status.members.iter().filter(|m| !placed.contains(&m.name)) {
        out.push_str(&format!("{} — not streaming from the leader\n", label(m)));
    }
    out
}
