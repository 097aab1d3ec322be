//! `pgha url`: a libpq URI for the superuser, to the read-write entry point or to one member.

use std::time::Duration;

use super::{LocalCluster, Password};
use crate::error::CliError;
use crate::ClusterAt;

/// The URI `target` names for the superuser of the cluster `at`.
pub async fn url(at: &ClusterAt, target: Target<'_>, password: Password) -> anyhow::Result<String> {
    match at {
        ClusterAt::Dir(dir) => local_url(&LocalCluster::open(dir)?, target, password).await,
        ClusterAt::Config(file) => distributed_url(file, target, password).await,
    }
}

/// A local cluster's URI: of one member, of the primary itself, or of the read-write entry
/// point (its proxy, which follows the primary: [`Target::Proxy`] names the same).
async fn local_url(
    cluster: &LocalCluster,
    target: Target<'_>,
    password: Password,
) -> anyhow::Result<String> {
    match target {
        Target::Member(name) => {
            let m = cluster.member(name)?;
            return Ok(cluster.uri(&m.host, m.port, password));
        }
        Target::AnyPrimary | Target::Proxy => return Ok(cluster.entry_uri(password)),
        Target::Primary => {}
    }
    for m in &cluster.members {
        if !m.instance.is_running() {
            continue;
        }
        let Ok(client) = cluster.connect(m, Duration::from_secs(2)).await else {
            continue;
        };
        if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
            if !row.get::<_, bool>(0) {
                return Ok(cluster.uri(&m.host, m.port, password));
            }
        }
    }
    Err(CliError::NoPrimary {
        dir: cluster.dir.clone(),
    }
    .into())
}

/// What `pgha url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Whichever member is the primary (the default): in a local cluster its proxy; in a
    /// distributed one every member etcd lists, the leader first, with
    /// `target_session_attrs=read-write`, so that libpq connects to the primary.
    AnyPrimary,
    /// The proxy's read-write listener (`[proxy] rw_listen`; a local cluster's proxy).
    Proxy,
    /// The member that leads now.
    Primary,
    /// One member.
    Member(&'a str),
}

/// Why a distributed cluster's URI cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(
        "--proxy: {file} has no [proxy] rw_listen; set it to the read-write listener of \
         `pgha proxy`, or leave out --proxy for a URI of every member"
    )]
    NoProxyListener { file: std::path::PathBuf },
    #[error(
        "no member named {name:?} in etcd (it lists {known}); a member that was stopped is \
         listed again once its agent runs it"
    )]
    UnknownMember { name: String, known: String },
    #[error("etcd names no leader now: no primary to connect to; leave out --primary for a URI that finds it once there is one")]
    NoLeader,
    #[error("etcd lists no member with a PostgreSQL address yet: start the agents (`pgha agent --config FILE`) first")]
    NoMembers,
}

/// Where libpq gets the superuser's password from, and how it checks the server, for a host
/// of a distributed cluster: the query parameters after `?`, without the leading `&`.
struct Access {
    /// `passfile=...` when the member directory's password file is readable here.
    passfile: Option<std::path::PathBuf>,
    /// `[tls] ca_file`: `sslmode=verify-full` with it as the root.
    ca_file: Option<std::path::PathBuf>,
}

impl Access {
    fn params(&self, password: Password) -> Vec<String> {
        let mut params = Vec::new();
        if password == Password::FromPassfile {
            if let Some(file) = &self.passfile {
                params.push(format!(
                    "passfile={}",
                    super::percent_encode(&file.to_string_lossy())
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            params.push(format!(
                "sslmode=verify-full&sslrootcert={}",
                super::percent_encode(&ca.to_string_lossy())
            ));
        }
        params
    }
}

/// `host:port` as a URI's authority part (IPv6 addresses in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A libpq URI for `user` to `hosts` (`host:port` each) with `params`; the password in it
/// (percent-encoded) only when `inline` is given.
fn libpq_uri(user: &str, inline: Option<&str>, hosts: &[String], params: &[String]) -> String {
    // In the authority part, '/' would end it: encoded too.
    let encode = |text: &str| super::percent_encode(text).replace('/', "%2F");
    let user = encode(user);
    let userinfo = match inline {
        Some(pw) => format!("{user}:{}", encode(pw)),
        None => user,
    };
    let mut uri = format!("postgresql://{userinfo}@{}/postgres", hosts.join(","));
    if !params.is_empty() {
        uri.push('?');
        uri.push_str(&params.join("&"));
    }
    uri
}

/// The URI `target` names for the superuser of the distributed cluster of node config `file`.
/// The password stays out of it unless `password` is [`Password::Inline`]: libpq reads it
/// from the member directory's `pgpass` when this user can read that file, else from
/// PGPASSFILE or ~/.pgpass.
async fn distributed_url(
    file: &std::path::Path,
    target: Target<'_>,
    password: Password,
) -> anyhow::Result<String> {
    let node = crate::node::Node::load(file)?;
    let c = &node.config;
    let passfile = c.member.dir.join("pgpass");
    let access = Access {
        passfile: std::fs::File::open(&passfile).is_ok().then_some(passfile),
        ca_file: c.tls.as_ref().map(|t| t.ca_file.clone()),
    };
    let inline = (password == Password::Inline).then_some(node.secrets.superuser_password.as_str());
    let user = &c.postgresql.superuser;
    let mut params = access.params(password);
    if target == Target::Proxy {
        let listen = c
            .proxy
            .rw_listen
            .as_deref()
            .ok_or(UrlError::NoProxyListener {
                file: file.to_path_buf(),
            })?;
        let addr: std::net::SocketAddr = listen.parse()?;
        let hosts = [authority(&addr.ip().to_string(), addr.port())];
        return Ok(libpq_uri(user, inline, &hosts, &params));
    }
    let store = node.connect_store(Some(Duration::from_secs(5))).await?;
    let view = crate::ops::view(store.as_ref()).await?;
    let leader = view.leader.as_ref().map(|l| l.holder.clone());
    let mut members: Vec<_> = view
        .members
        .iter()
        .filter_map(|(n, r)| pgha_agent::spec::postgres_address(n, r))
        .collect();
    // The leader first: libpq tries the hosts in order.
    members.sort_by_key(|m| Some(m.name.as_str()) != leader.as_ref().map(|l| l.as_str()));
    let chosen: Vec<_> =
        match target {
            Target::Member(name) => {
                let one = members.iter().find(|m| m.name == name).ok_or_else(|| {
                    UrlError::UnknownMember {
                        name: name.to_string(),
                        known: members
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                vec![one]
            }
            Target::Primary => {
                let leader = leader.ok_or(UrlError::NoLeader)?;
                let one = members
                    .iter()
                    .find(|m| m.name == leader.as_str())
                    .ok_or(UrlError::NoLeader)?;
                vec![one]
            }
            Target::AnyPrimary | Target::Proxy => {
                if members.is_empty() {
                    return Err(UrlError::NoMembers.into());
                }
                params.insert(0, "target_session_attrs=read-write".to_string());
                members.iter().collect()
            }
        };
    let hosts: Vec<String> = chosen.iter().map(|m| authority(&m.host, m.port)).collect();
    Ok(libpq_uri(user, inline, &hosts, &params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_uri_keeps_the_password_out_unless_asked() {
        let hosts = vec!["10.0.0.1:5432".to_string(), authority("::1", 5433)];
        let access = Access {
            passfile: Some("/var/lib/pgha/node1/pgpass".into()),
            ca_file: Some("/etc/pgha/ca.crt".into()),
        };
        let mut params = access.params(Password::FromPassfile);
        params.insert(0, "target_session_attrs=read-write".into());
        assert_eq!(
            libpq_uri("postgres", None, &hosts, &params),
            "postgresql://postgres@10.0.0.1:5432,[::1]:5433/postgres?target_session_attrs=read-write\
             &passfile=/var/lib/pgha/node1/pgpass&sslmode=verify-full&sslrootcert=/etc/pgha/ca.crt"
        );
        let inline = access.params(Password::Inline);
        assert_eq!(
            libpq_uri("postgres", Some("p@ss:w/rd"), &hosts[..1], &inline),
            "postgresql://postgres:p%40ss%3Aw%2Frd@10.0.0.1:5432/postgres?sslmode=verify-full&sslrootcert=/etc/pgha/ca.crt"
        );
        let bare = Access {
            passfile: None,
            ca_file: None,
        };
        assert_eq!(
            libpq_uri(
                "postgres",
                None,
                &hosts[..1],
                &bare.params(Password::FromPassfile)
            ),
            "postgresql://postgres@10.0.0.1:5432/postgres"
        );
    }
}
