//! Rendering the configuration pgha owns: `pgha.conf` (included by postgresql.conf) and pg_hba.conf.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// File name of pgha's own settings inside the data directory, included from postgresql.conf.
pub const PGHA_CONF: &str = "pgha.conf";

/// Settings pgha owns; a user setting one of them is a configuration error.
pub const OWNED_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "wal_level",
    "hot_standby",
    "hot_standby_feedback",
    "wal_log_hints",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "wal_keep_segments",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
    "wal_retrieve_retry_interval",
    "wal_receiver_status_interval",
    "synchronous_standby_names",
    "synchronous_commit",
    "cluster_name",
    "password_encryption",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    // Directives, not parameters: they would read other files after pgha's settings.
    "include",
    "include_dir",
    "include_if_exists",
];

/// Why a user parameter is refused, if it is.
pub fn check_user_parameter(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !valid {
        return Err(format!("`{name}` is not a valid PostgreSQL parameter name"));
    }
    if OWNED_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "`{name}` is managed by pgha (it keeps replication working); remove it"
        ));
    }
    Ok(())
}

/// Where a standby streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The member's name: what its TLS certificate must name.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// Everything needed to render one member's `pgha.conf`.
#[derive(Debug, Clone)]
pub struct MemberConf {
    pub name: String,
    pub listen_host: String,
    pub port: u16,
    pub major: u32,
    /// Runs as a standby (standby.signal present).
    pub standby: bool,
    /// For a standby: the member it streams from (none: a standby waiting for a leader).
    pub upstream: Option<Upstream>,
    pub replication_user: String,
    /// The 0600 libpq password file the walreceiver reads (never a password inline).
    pub passfile: PathBuf,
    /// How many members the cluster has, to size WAL senders and slots.
    pub cluster_size: usize,
    /// `synchronous_standby_names` on a primary (empty: asynchronous).
    pub synchronous_standby_names: String,
    /// `synchronous_commit` (empty: PostgreSQL's default).
    pub synchronous_commit: String,
    /// The user's pass-through parameters, already validated.
    pub parameters: BTreeMap<String, String>,
    /// TLS: this member serves its certificate, and streams only from an upstream that
    /// proves its name with one from the cluster CA (`None`: no TLS).
    pub tls: Option<crate::tls::TlsFiles>,
}

/// Quotes a value for postgresql.conf. Control characters (a newline would end the line and
/// start a setting of the value's choosing) are refused by [`check_user_value`] before any
/// value gets here; should one arrive anyway it is escaped, never written raw.
pub fn quote_conf(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Why a user parameter's value is refused, if it is: no control characters (a newline in
/// postgresql.conf ends the setting and starts another).
pub fn check_user_value(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "the value contains the control character {c:?}; PostgreSQL settings are one line"
        )),
        None => Ok(()),
    }
}

/// Quotes a value for a libpq connection string.
pub fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl MemberConf {
    /// The `primary_conninfo` a standby uses: application_name is the member name, the password
    /// comes from the passfile.
    pub fn primary_conninfo(&self) -> Option<String> {
        let up = self.upstream.as_ref()?;
        let ca = self.tls.as_ref().map(|t| t.ca_cert.as_path());
        Some(format!(
            "{} user={} passfile={} application_name={} connect_timeout=3 keepalives_idle=5 keepalives_interval=2 keepalives_count=3",
            crate::tls::conninfo_target(&up.name, &up.host, up.port, ca),
            quote_conninfo(&self.replication_user),
            quote_conninfo(&self.passfile.to_string_lossy()),
            quote_conninfo(&self.name),
        ))
    }

    /// The slot this member streams through, named after it.
    pub fn slot_name(&self) -> String {
        slot_name(&self.name)
    }

    /// Renders `pgha.conf`.
    pub fn render(&self) -> String {
        let senders = (self.cluster_size * 2 + 4).max(10);
        let mut owned: Vec<(&str, String)> = vec![
            ("listen_addresses", self.listen_host.clone()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", String::new()),
            ("cluster_name", self.name.clone()),
            ("password_encryption", "scram-sha-256".into()),
            ("wal_level", "replica".into()),
            ("hot_standby", "on".into()),
            ("hot_standby_feedback", "on".into()),
            ("wal_log_hints", "on".into()),
            ("max_wal_senders", senders.to_string()),
            ("max_replication_slots", senders.to_string()),
        ];
        if let Some(tls) = &self.tls {
            owned.extend(tls.server_settings());
        }
        if self.major >= 13 {
            owned.push(("wal_keep_size", "128MB".into()));
        } else {
            owned.push(("wal_keep_segments", "8".into()));
        }
        if !self.synchronous_commit.is_empty() {
            owned.push(("synchronous_commit", self.synchronous_commit.clone()));
        }
        // Rendered on standbys too (inert there), so a promotion never starts asynchronous.
        if !self.synchronous_standby_names.is_empty() {
            owned.push((
                "synchronous_standby_names",
                self.synchronous_standby_names.clone(),
            ));
        }
        if self.standby {
            owned.push(("recovery_target_timeline", "latest".into()));
            // Reconnect to a new or restarted upstream within half a second, not five.
            owned.push(("wal_retrieve_retry_interval", "500ms".into()));
            // Report positions every second, so a commit waiting for a new synchronous
            // standby is released promptly.
            owned.push(("wal_receiver_status_interval", "1s".into()));
        }
        if let Some(conninfo) = self.primary_conninfo().filter(|_| self.standby) {
            owned.push(("primary_conninfo", conninfo));
            owned.push(("primary_slot_name", self.slot_name()));
        }
        let mut out = String::new();
        out.push_str("# Written by pgha; rewritten on every role change. Do not edit:\n");
        out.push_str(
            "# set your own parameters in the cluster config ([postgresql.parameters]).\n\n",
        );
        out.push_str("# Replication settings pgha owns\n");
        for (key, value) in &owned {
            let _ = writeln!(out, "{key} = {}", quote_conf(value));
        }
        if !self.parameters.is_empty() {
            out.push_str("\n# Your parameters\n");
            for (key, value) in &self.parameters {
                let _ = writeln!(out, "{key} = {}", quote_conf(value));
            }
        }
        out
    }
}

/// The replication slot name for a member (slot names allow [a-z0-9_] only).
pub fn slot_name(member: &str) -> String {
    member
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders pg_hba.conf: replication only for the replication role and only from the members'
/// hosts; scram-sha-256 for every network connection; nothing else is accepted.
pub fn render_hba(
    replication_user: &str,
    member_hosts: &[String],
    extra_lines: &[String],
    tls: bool,
) -> String {
    // With TLS, replication (the replication password, the WAL) never travels in clear text.
    let replication_type = if tls { "hostssl" } else { "host   " };
    let mut hosts: Vec<String> = member_hosts.iter().map(|h| host_cidr(h)).collect();
    hosts.sort();
    hosts.dedup();
    let mut out = String::new();
    out.push_str("# Written by pgha. Do not edit: add lines through the cluster config (postgresql.pg_hba).\n");
    out.push_str("# TYPE  DATABASE     USER          ADDRESS             METHOD\n");
    for cidr in &hosts {
        let _ = writeln!(
            out,
            "{replication_type} replication  {replication_user:<13} {cidr:<19} scram-sha-256"
        );
    }
    for line in extra_lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "host    all          all           {:<19} scram-sha-256",
        "127.0.0.1/32"
    );
    let _ = writeln!(
        out,
        "host    all          all           {:<19} scram-sha-256",
        "::1/128"
    );
    for cidr in &hosts {
        if cidr != "127.0.0.1/32" && cidr != "::1/128" {
            let _ = writeln!(
                out,
                "host    all          all           {cidr:<19} scram-sha-256"
            );
        }
    }
    out
}

fn host_cidr(host: &str) -> String {
    if host.contains('/') {
        host.to_string()
    } else if host.contains(':') {
        format!("{host}/128")
    } else {
        format!("{host}/32")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(upstream: Option<Upstream>) -> MemberConf {
        MemberConf {
            standby: upstream.is_some(),
            name: "n2".into(),
            listen_host: "127.0.0.1".into(),
            port: 5433,
            major: 15,
            upstream,
            replication_user: "replicator".into(),
            passfile: "/data/it's/pgpass".into(),
            cluster_size: 3,
            synchronous_standby_names: String::new(),
            synchronous_commit: String::new(),
            parameters: [("shared_buffers".to_string(), "16MB".to_string())].into(),
            tls: None,
        }
    }

    #[test]
    fn primary_has_no_conninfo() {
        let text = conf(None).render();
        assert!(text.contains("wal_level = 'replica'"));
        assert!(text.contains("port = '5433'"));
        assert!(text.contains("shared_buffers = '16MB'"));
        assert!(!text.contains("primary_conninfo"));
    }

    #[test]
    fn standby_conninfo_names_the_member_and_uses_the_passfile() {
        let c = conf(Some(Upstream {
            name: "n1".into(),
            host: "127.0.0.1".into(),
            port: 5432,
        }));
        let info = c.primary_conninfo().unwrap();
        assert!(info.starts_with("host='127.0.0.1' port=5432 "), "{info}");
        assert!(info.contains("application_name='n2'"));
        assert!(info.contains(r"passfile='/data/it\'s/pgpass'"));
        assert!(!info.contains("password"));
        let text = c.render();
        assert!(text.contains("primary_slot_name = 'n2'"));
        // the conninfo's quotes are doubled inside the conf value
        assert!(text.contains(r"passfile=''/data/it\\''s/pgpass''"));
    }

    /// Issue 11: with TLS the member serves its certificate, streams only from an upstream
    /// that proves its name, and accepts replication over TLS only.
    #[test]
    fn with_tls_replication_verifies_the_upstream_and_needs_tls() {
        let mut c = conf(Some(Upstream {
            name: "n1".into(),
            host: "127.0.0.1".into(),
            port: 5432,
        }));
        c.tls = Some(crate::tls::TlsFiles {
            ca_cert: "/c/tls/ca.crt".into(),
            server_cert: "/c/n2/server.crt".into(),
            server_key: "/c/n2/server.key".into(),
        });
        let info = c.primary_conninfo().unwrap();
        assert!(
            info.starts_with(
                "host='n1' hostaddr='127.0.0.1' port=5432 sslmode=verify-full sslrootcert='/c/tls/ca.crt' "
            ),
            "{info}"
        );
        let text = c.render();
        for line in [
            "ssl = 'on'",
            "ssl_cert_file = '/c/n2/server.crt'",
            "ssl_key_file = '/c/n2/server.key'",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let hba = render_hba("replicator", &["127.0.0.1".into()], &[], true);
        let repl: Vec<&str> = hba.lines().filter(|l| l.contains("replication")).collect();
        assert!(
            !repl.is_empty() && repl.iter().all(|l| l.starts_with("hostssl ")),
            "{hba}"
        );
    }

    #[test]
    fn owned_parameters_are_refused() {
        assert!(check_user_parameter("wal_level").is_err());
        assert!(check_user_parameter("Port").is_err());
        assert!(check_user_parameter("shared_buffers").is_ok());
        assert!(check_user_parameter("bad name").is_err());
    }

    #[test]
    fn hba_allows_replication_only_for_the_role() {
        let hba = render_hba(
            "replicator",
            &["127.0.0.1".into(), "10.0.0.2".into()],
            &[],
            false,
        );
        let repl: Vec<&str> = hba.lines().filter(|l| l.contains("replication")).collect();
        assert_eq!(repl.len(), 2);
        assert!(repl
            .iter()
            .all(|l| l.contains("replicator") && l.contains("scram-sha-256")));
        assert!(!hba
            .lines()
            .any(|l| l.contains("trust") || l.contains(" md5")));
    }

    /// Issue 11: a value cannot end its line in postgresql.conf and start a setting of its
    /// own, and `include` directives are not parameters a user may pass through.
    #[test]
    fn values_stay_on_their_line_and_includes_are_refused() {
        assert_eq!(quote_conf("a'b\\c"), "'a''b\\\\c'");
        let injected = quote_conf("x'\nshared_preload_libraries = 'evil");
        assert!(!injected.contains('\n'), "{injected}");
        assert!(check_user_value("8MB").is_ok());
        assert!(check_user_value("x\nssl = off").is_err());
        for directive in ["include", "include_dir", "INCLUDE_IF_EXISTS"] {
            assert!(check_user_parameter(directive).is_err(), "{directive}");
        }
    }
}
