//! Rendering the configuration pgha owns: `pgha.conf` (included by postgresql.conf) and pg_hba.conf.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::controldata::HotStandbySettings;

pub use crate::hba::{check_hba_address, render_hba, HbaAddressRefused};

/// File name of pgha's own settings inside the data directory, included from postgresql.conf.
pub const PGHA_CONF: &str = "pgha.conf";

/// Settings pgha owns; a user setting one of them is a configuration error.
pub const OWNED_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
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
    "sync_replication_slots",
    "synchronized_standby_slots",
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

/// Parameters that end a standby's recovery at a chosen point: a standby of the cluster would
/// stop replaying there (pausing, shutting down or promoting itself) while its WAL receiver
/// still confirms commits, and a promotion would end its history at that point, dropping them.
/// Refused for the cluster's members: point-in-time recovery is done on a copy, not on them.
pub const RECOVERY_TARGET_PARAMETERS: &[&str] = &[
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_inclusive",
    "recovery_target_action",
    "promote_trigger_file",
];

/// Every parameter a user may not set ([`OWNED_PARAMETERS`], [`RECOVERY_TARGET_PARAMETERS`]):
/// what the agent undoes when `ALTER SYSTEM` sets it.
pub fn refused_parameters() -> impl Iterator<Item = &'static str> {
    OWNED_PARAMETERS
        .iter()
        .chain(RECOVERY_TARGET_PARAMETERS)
        .copied()
}

/// Why a user's PostgreSQL parameter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterRefused {
    #[error("`{0}` is not a valid PostgreSQL parameter name")]
    BadName(String),
    #[error("`{0}` is managed by pgha (it keeps replication working); remove it")]
    Owned(String),
    #[error(
        "`{0}` would stop the members' recovery at a chosen point: a standby would stop \
         replaying there while still confirming commits, and a promotion would drop what \
         follows (a standby with promote_trigger_file promotes itself, without the lease); \
         recover to a point in time on a copy of a backup, not on a member of the cluster"
    )]
    RecoveryTarget(String),
    #[error("the value contains the control character {0:?}; PostgreSQL settings are one line")]
    ControlCharacter(char),
    #[error(
        "wal_level = {0:?}: pgha runs `replica` (the default) or `logical` (logical decoding)"
    )]
    WalLevel(String),
}

/// Checks a user's parameter and its value together: [`check_user_parameter`],
/// [`check_user_value`], and the values pgha can run with where it has a say (`wal_level`:
/// `replica` or `logical`).
pub fn check_user_setting(name: &str, value: &str) -> Result<(), ParameterRefused> {
    check_user_parameter(name)?;
    check_user_value(value)?;
    if name.eq_ignore_ascii_case("wal_level") && !matches!(value, "replica" | "logical") {
        return Err(ParameterRefused::WalLevel(value.to_string()));
    }
    Ok(())
}

/// Why a user parameter is refused, if it is.
pub fn check_user_parameter(name: &str) -> Result<(), ParameterRefused> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !valid {
        return Err(ParameterRefused::BadName(name.to_string()));
    }
    let lower = name.to_ascii_lowercase();
    if OWNED_PARAMETERS.contains(&lower.as_str()) {
        return Err(ParameterRefused::Owned(name.to_string()));
    }
    if RECOVERY_TARGET_PARAMETERS.contains(&lower.as_str()) {
        return Err(ParameterRefused::RecoveryTarget(name.to_string()));
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
    /// `wal_sender_timeout` and `wal_receiver_timeout` unless `parameters` set them (`None`:
    /// PostgreSQL's).
    pub replication_timeout: Option<std::time::Duration>,
    /// TLS: this member serves its certificate, and streams only from an upstream that
    /// proves its name with one from the cluster CA (`None`: no TLS).
    pub tls: Option<crate::tls::TlsFiles>,
    /// For a standby: the primary's settings its `pg_control` records, which it runs with at
    /// least, whatever is configured (lower ones would keep it from starting, or pause its
    /// replay). All 0: none known.
    pub primary_settings: HotStandbySettings,
}

/// `synchronous_standby_names` on the standbys of an asynchronous cluster: a standby name no
/// member has (no member name holds a space or a colon), so that commits on a standby
/// promoted by anything but pgha wait until pgha demotes it (or a DBA who meant it resets the
/// setting); PostgreSQL ignores the setting while in recovery.
pub const NOT_PROMOTED_BY_PGHA: &str = "\"pgha: promoted outside pgha, commits wait\"";

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
pub fn check_user_value(value: &str) -> Result<(), ParameterRefused> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(ParameterRefused::ControlCharacter(c)),
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
        // PostgreSQL 17+ synchronizes failover logical slots over this connection, which
        // needs a database to connect to.
        let dbname = if self.major >= 17 {
            " dbname=postgres"
        } else {
            ""
        };
        Some(format!(
            "{}{dbname} user={} passfile={} application_name={} connect_timeout=3 keepalives_idle=5 keepalives_interval=2 keepalives_count=3",
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
        let mut wal_senders = senders;
        if self.standby {
            wal_senders = wal_senders.max(self.primary_settings.max_wal_senders as usize);
        }
        let mut owned: Vec<(&str, String)> = vec![
            ("listen_addresses", self.listen_host.clone()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", String::new()),
            ("cluster_name", self.name.clone()),
            ("password_encryption", "scram-sha-256".into()),
            // `logical` when the user asks for it (check_user_setting allows only these two).
            ("wal_level", self.wal_level().into()),
            ("hot_standby", "on".into()),
            ("hot_standby_feedback", "on".into()),
            ("wal_log_hints", "on".into()),
            ("max_wal_senders", wal_senders.to_string()),
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
        // A link that stops carrying one way ends within this, and synchronous commits move
        // to another standby (the user's own value, rendered after, wins).
        if let Some(timeout) = self.replication_timeout {
            let ms = format!("{}ms", timeout.as_millis());
            owned.push(("wal_sender_timeout", ms.clone()));
            owned.push(("wal_receiver_timeout", ms));
        }
        // Rendered on standbys too (inert there), so a promotion never starts asynchronous.
        // An asynchronous cluster's standbys wait for a standby that never connects: one
        // promoted behind pgha's back (`pg_promote()` by hand) acknowledges no commit before
        // its agent demotes it; pgha's own promotion writes the primary's file at once.
        if !self.synchronous_standby_names.is_empty() {
            owned.push((
                "synchronous_standby_names",
                self.synchronous_standby_names.clone(),
            ));
        } else if self.standby {
            owned.push(("synchronous_standby_names", NOT_PROMOTED_BY_PGHA.into()));
        }
        // Rendered on a primary too (inert there): it needs a restart to change, so a promoted
        // standby whose file lost it would show it as pending restart ever after.
        owned.push(("recovery_target_timeline", "latest".into()));
        if self.standby {
            // Reconnect to a new or restarted upstream within half a second, not five.
            owned.push(("wal_retrieve_retry_interval", "500ms".into()));
            // Report positions every second, so a commit waiting for a new synchronous
            // standby is released promptly.
            owned.push(("wal_receiver_status_interval", "1s".into()));
            if self.major >= 17 {
                // Logical slots created with `failover = true` on the primary are kept in sync
                // here, so that they survive a failover to this member.
                owned.push(("sync_replication_slots", "on".into()));
            }
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
        let yours: Vec<_> = self
            .parameters
            .iter()
            .filter(|(key, _)| !key.eq_ignore_ascii_case("wal_level"))
            .collect();
        if !yours.is_empty() {
            out.push_str("\n# Your parameters\n");
            for (key, value) in yours {
                let _ = writeln!(out, "{key} = {}", quote_conf(value));
            }
        }
        let raised = self.raised_to_primary();
        if !raised.is_empty() {
            out.push_str(
                "\n# The primary's values, which a hot standby needs at least (from pg_control)\n",
            );
            for (key, value) in raised {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        out
    }

    /// On a standby: the settings the user's parameters leave below the primary's (or, not
    /// set, at a default below it), with the primary's values; rendered last so they win.
    /// `max_wal_senders` is pgha's own and raised where it is rendered. Nothing else: a
    /// setting a promotion then drops from the file would read as pending restart.
    fn raised_to_primary(&self) -> Vec<(&'static str, u32)> {
        if !self.standby {
            return Vec::new();
        }
        let defaults = HotStandbySettings::POSTGRES_DEFAULTS.by_name();
        self.primary_settings
            .by_name()
            .into_iter()
            .zip(defaults)
            .filter(|((name, _), _)| *name != "max_wal_senders")
            .filter(|((name, primary), (_, default))| {
                let configured = self
                    .parameters
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.trim().parse::<u32>());
                match configured {
                    None => primary > default,
                    Some(Ok(value)) => value < *primary,
                    // Not a number: PostgreSQL names it; pgha does not guess.
                    Some(Err(_)) => false,
                }
            })
            .map(|(setting, _)| setting)
            .collect()
    }

    /// `logical` when the user's parameters ask for it, else `replica`.
    fn wal_level(&self) -> &'static str {
        let asked = self
            .parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("wal_level"));
        match asked {
            Some((_, value)) if value == "logical" => "logical",
            _ => "replica",
        }
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

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
