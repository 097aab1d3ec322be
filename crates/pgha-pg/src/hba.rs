//! Rendering pg_hba.conf, and checking the addresses a configuration puts in it.

use std::fmt::Write as _;

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

/// Why an address is refused for `pg_hba.conf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HbaAddressRefused {
    #[error("{0:?} is not an IP address, a network (address/prefix) or a host name")]
    NotAnAddress(String),
    #[error("{0:?}: the prefix length is longer than the address")]
    PrefixTooLong(String),
}

/// Checks one address for a `pg_hba.conf` line: an IP address, a network `address/prefix`,
/// or a host name. Nothing else (no spaces, no keywords like `all`, no second line) reaches
/// the file.
pub fn check_hba_address(text: &str) -> Result<(), HbaAddressRefused> {
    let not = || HbaAddressRefused::NotAnAddress(text.to_string());
    if let Some((ip, prefix)) = text.split_once('/') {
        let ip: std::net::IpAddr = ip.parse().map_err(|_| not())?;
        let prefix: u8 = prefix.parse().map_err(|_| not())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return if prefix <= max {
            Ok(())
        } else {
            Err(HbaAddressRefused::PrefixTooLong(text.to_string()))
        };
    }
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host_name = !text.is_empty()
        && text.len() <= 253
        && !text.starts_with(['-', '.'])
        && text.contains('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if host_name {
        Ok(())
    } else {
        Err(not())
    }
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
