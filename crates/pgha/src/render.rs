//! What the CLI prints: the status and history tables, and `pgha up`'s summary once it runs.

use pgha_host::status::ClusterStatus;
use pgha_store::HistoryEntry;

mod config;

pub use config::{local_config_summary, node_config_summary, render_config, render_sync_progress};

/// Renders the status as an aligned table.
pub fn render_table(status: &ClusterStatus) -> String {
    let header = [
        "MEMBER", "ROLE", "STATE", "ADDRESS", "TL", "LSN", "RECEIVED", "REPLAYED", "LAG",
        "LAG TIME", "SYNC",
    ];
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.role.to_string(),
                m.state.to_string(),
                format!("{}:{}", m.host, m.port),
                m.timeline.map(|t| t.to_string()).unwrap_or_else(dash),
                m.lsn.clone().unwrap_or_else(dash),
                m.received_lsn.clone().unwrap_or_else(dash),
                m.replayed_lsn.clone().unwrap_or_else(dash),
                m.lag_bytes.map(human_bytes).unwrap_or_else(dash),
                m.lag_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(dash),
                m.sync_state.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mode = match (status.managed, status.paused) {
        (false, _) => " (not running: no automatic failover)",
        (true, true) => " (PAUSED: no automatic action)",
        (true, false) => "",
    };
    let mut out = format!(
        "Cluster {} — leader: {}{mode}{}\n",
        status.cluster,
        status.leader.as_deref().unwrap_or("none"),
        describe_servers(status)
    );
    out.push_str(&aligned(&header, rows));
    if let Some(r) = &status.switchover {
        let to =
            r.to.as_ref()
                .map_or("the best candidate".to_string(), |t| t.to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match r.at {
            Some(at) if at > now => out.push_str(&format!(
                "Switchover to {to} scheduled for {} (`pgha switchover --cancel` withdraws it)\n",
                utc(at)
            )),
            Some(at) => out.push_str(&format!(
                "Switchover to {to} (due {}) in progress (`pgha switchover --cancel` withdraws \
                 it)\n",
                utc(at)
            )),
            None => out.push_str(&format!("Promotion of {to} requested, in progress\n")),
        }
    }
    if let Some(sync) = status
        .synchronous
        .as_ref()
        .filter(|s| s.mode != pgha_core::SyncMode::Off)
    {
        out.push_str(&format!(
            "Synchronous: {} ({} {}, synchronous_commit={}), set [{}]\n",
            sync.mode,
            sync.method,
            sync.count,
            sync.commit,
            sync.set.join(", ")
        ));
        if let Some(w) = &sync.warning {
            out.push_str(&format!("WARNING: {w}\n"));
        }
    }
    out.push_str(&format!(
        "Clients: read-write {}, read-only {}",
        status.proxy.rw, status.proxy.ro
    ));
    if let Some(listeners) = status.proxy.listeners.as_ref().and_then(|l| l.as_array()) {
        let counts: Vec<String> = listeners
            .iter()
            .map(|l| {
                format!(
                    "{} {} active/{} total",
                    l["listener"].as_str().unwrap_or("?"),
                    l["active"],
                    l["total"]
                )
            })
            .collect();
        out.push_str(&format!(" ({})", counts.join(", ")));
    }
    out.push('\n');
    for m in &status.members {
        if let Some(e) = &m.error {
            out.push_str(&format!("{}: {}\n", m.name, e));
        }
        if let Some(d) = &m.decision {
            out.push_str(&format!("  {}: {}\n", m.name, d));
        }
    }
    let tagged: Vec<String> = status
        .members
        .iter()
        .filter_map(|m| Some((m, describe_tags(m.tags.as_ref()?)?)))
        .map(|(m, tags)| format!("{} {tags}", m.name))
        .collect();
    if !tagged.is_empty() {
        out.push_str(&format!("Tags: {}\n", tagged.join("; ")));
    }
    if let Some(line) = describe_agent_versions(status) {
        out.push_str(&line);
    }
    for m in status
        .members
        .iter()
        .filter(|m| !m.pending_restart.is_empty())
    {
        out.push_str(&format!(
            "Pending restart on {}: {} (a restart of {} applies them)\n",
            m.name,
            m.pending_restart.join(", "),
            m.name
        ));
    }
    for m in status
        .members
        .iter()
        .filter(|m| !m.logical_slots.is_empty())
    {
        let slots: Vec<String> = m.logical_slots.iter().map(describe_slot).collect();
        out.push_str(&format!(
            "Logical slots on {}: {}\n",
            m.name,
            slots.join(", ")
        ));
    }
    out
}

/// " — PostgreSQL 15.14, system 7312…" when the members that answer agree; a warning line
/// naming each member's otherwise (two clusters' data, or versions mid-upgrade).
fn describe_servers(status: &ClusterStatus) -> String {
    let distinct = |f: fn(&pgha_host::status::MemberStatus) -> Option<&String>| {
        let mut values: Vec<&String> = status.members.iter().filter_map(f).collect();
        values.sort();
        values.dedup();
        values
    };
    let versions = distinct(|m| m.server_version.as_ref());
    let systems = distinct(|m| m.system_identifier.as_ref());
    match (versions.as_slice(), systems.as_slice()) {
        ([], _) => String::new(),
        ([version], [system]) => format!(" — PostgreSQL {version}, system {system}"),
        _ => {
            let each: Vec<String> = status
                .members
                .iter()
                .filter(|m| m.server_version.is_some())
                .map(|m| {
                    format!(
                        "{} {} ({})",
                        m.name,
                        m.server_version.as_deref().unwrap_or("?"),
                        m.system_identifier.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            format!(
                "\nWARNING: the members differ in version or system identifier: {}",
                each.join(", ")
            )
        }
    }
}

/// A line naming each agent's pgha version when the members that publish a record (`tags`
/// set) run different ones, as mid rolling upgrade; `None` when they agree.
fn describe_agent_versions(status: &ClusterStatus) -> Option<String> {
    let published: Vec<(&str, &str)> = status
        .members
        .iter()
        .filter(|m| m.tags.is_some())
        .map(|m| {
            let version = m
                .pgha_version
                .as_deref()
                .unwrap_or("older (no version published)");
            (m.name.as_str(), version)
        })
        .collect();
    let first = published.first()?.1;
    if published.iter().all(|(_, v)| *v == first) {
        return None;
    }
    let each: Vec<String> = published
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    Some(format!(
        "pgha agents differ (a rolling upgrade?): {}\n",
        each.join(", ")
    ))
}

/// One logical slot for the table: whether it follows a failover, and on a standby whether
/// its copy is usable yet.
fn describe_slot(slot: &pgha_pg::logical_slots::LogicalSlot) -> String {
    let state = match (slot.synced, slot.failover, slot.ready) {
        (true, _, true) => "synchronized, ready",
        (true, _, false) => "synchronized, not usable yet",
        (false, true, _) => "failover",
        (false, false, _) => "lost at a failover",
    };
    format!("{} ({state})", slot.name)
}

/// Bytes in a short human form: 0 B, 12 kB, 3.4 MB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The history as a table.
pub fn render_history(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "no events yet\n".into();
    }
    let name =
        |m: &Option<pgha_core::MemberName>| m.as_ref().map_or("-".to_string(), |m| m.to_string());
    let rows = entries
        .iter()
        .map(|e| {
            let ev = &e.event;
            let kind = serde_json::to_value(ev.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            vec![
                e.at.clone(),
                kind,
                name(&ev.from),
                name(&ev.to),
                ev.timeline.to_string(),
                ev.lsn.to_string(),
                ev.reason.clone(),
            ]
        })
        .collect();
    aligned(&["WHEN", "EVENT", "FROM", "TO", "TL", "LSN", "WHY"], rows)
}

/// `header` and `rows` as lines whose columns line up whatever the cells hold (two spaces
/// between columns, no trailing spaces).
fn aligned(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// What `pgha up` prints once every member runs: the members, and how to connect, look and stop.
pub fn up_summary(
    cluster: &pgha_host::LocalCluster,
    primary: &str,
    dir_arg: &std::path::Path,
) -> String {
    use std::fmt::Write as _;
    let base = cluster.config.cluster.base_port;
    let dir = dir_arg.display();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nCluster {} is up: PostgreSQL {}, {} members, data in {}",
        cluster.config.cluster.name,
        cluster.bins.version,
        cluster.members.len(),
        cluster.dir.display()
    );
    for m in &cluster.members {
        let role = if m.name == primary {
            "primary".to_string()
        } else {
            format!("standby, streaming from {primary}")
        };
        let _ = writeln!(out, "  {:<4} {}:{:<6} {}", m.name, m.host, m.port, role);
    }
    let _ = writeln!(
        out,
        "  control API on {}:{} (changes need the token in secrets.toml)",
        cluster.config.cluster.api_host(),
        base + 2
    );
    let _ = writeln!(
        out,
        "\n  Connect:  psql \"$(pgha url --dir {dir})\"   (one member: --member NAME)"
    );
    let _ = writeln!(out, "  Status:   pgha status --dir {dir}");
    let _ = writeln!(
        out,
        "  Stop:     Ctrl-C here; `pgha up --dir {dir}` starts the same cluster again\n"
    );
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;

/// `secs` since the Unix epoch as RFC 3339, UTC.
pub fn utc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Why a `--at` instant was not read.
#[derive(Debug, thiserror::Error)]
#[error("--at {0:?}: expected an instant such as 2026-12-01T03:00:00Z, or a delay such as +30m")]
pub struct BadWhen(String);

/// A `--at` instant as Unix seconds: RFC 3339, or `+DELAY` from now (humantime: 30m, 2h).
pub fn parse_when(text: &str) -> Result<u64, BadWhen> {
    let bad = || BadWhen(text.to_string());
    let at = match text.strip_prefix('+') {
        Some(delay) => {
            std::time::SystemTime::now() + humantime::parse_duration(delay).map_err(|_| bad())?
        }
        None => humantime::parse_rfc3339_weak(text).map_err(|_| bad())?,
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| bad())
}

/// A member's tags that differ from the defaults, e.g. "nofailover, noloadbalance, priority 2".
fn describe_tags(tags: &pgha_core::Tags) -> Option<String> {
    let default = pgha_core::Tags::default();
    let mut words = Vec::new();
    for (set, word) in [
        (tags.nofailover, "nofailover"),
        (tags.nosync, "nosync"),
        (tags.noloadbalance, "noloadbalance"),
        (tags.clonefrom, "clonefrom"),
    ] {
        if set {
            words.push(word.to_string());
        }
    }
    if tags.priority != default.priority {
        words.push(format!("priority {}", tags.priority));
    }
    (!words.is_empty()).then(|| words.join(", "))
}
