//! Finds what a campaign acts on: from a cluster directory (`pgha up`'s) or from an agent's
//! config file and the members etcd lists: the API, the writers' routes, the members, the
//! peers that isolate-host cuts this host off from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgha_host::client::Client;
use pgha_host::node::Node;
use pgha_host::ops::OpError;
use pgha_host::{ClusterAt, LocalCluster};

use crate::target::{Endpoint, Member, Mode, Target, WriteRoute, API_ADDRESS, POSTGRES_ADDRESS};

/// Why the campaign's target could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("the cluster directory {}: {source:#}", .dir.display())]
    ClusterDir {
        dir: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("{}: {source:#}", .file.display())]
    ConfigFile {
        file: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("pgha chaos needs etcd to find the members: {0:#}")]
    StoreUnreachable(#[source] anyhow::Error),
    #[error("reading the members from etcd: {0}")]
    View(#[from] OpError),
    #[error("{member}'s record in etcd names no PostgreSQL address")]
    NoPostgresAddress { member: String },
    #[error("{text:?} is not host:port")]
    NotHostPort { text: String },
    #[error("{text:?}: {port:?} is not a port number")]
    BadPort { text: String, port: String },
}

/// What the campaign acts on in the cluster `at`.
pub async fn target(at: &ClusterAt) -> Result<Target, DiscoverError> {
    match at {
        ClusterAt::Dir(dir) => local(dir),
        ClusterAt::Config(file) => distributed(file).await,
    }
}

/// A local cluster: `pgha up`'s API, its proxy, every member's data directory.
fn local(dir: &Path) -> Result<Target, DiscoverError> {
    let cluster = LocalCluster::open(dir).map_err(|source| DiscoverError::ClusterDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let c = &cluster.config.cluster;
    let api = format!("{}:{}", c.api_host(), c.base_port + 2);
    let (rw, ro) = cluster.entry_points();
    Ok(Target {
        mode: Mode::Local,
        client: Client::new([api], cluster.secrets.api_token.clone(), None),
        credentials: cluster.credentials(),
        writes: vec![WriteRoute::Entry(endpoint(&rw)?)],
        reads: Some(endpoint(&ro)?),
        members: cluster
            .members
            .iter()
            .map(|m| Member {
                name: m.name.clone(),
                endpoint: Endpoint {
                    host: m.host.clone(),
                    port: m.port,
                },
                data_dir: Some(m.instance.data_dir()),
                api: None,
            })
            .collect(),
        peers: Vec::new(),
        fault_commands: Vec::new(),
    })
}

/// A distributed cluster: the members etcd lists, each stopped and started through its own
/// agent's API; writers through a multi-host target (and the proxy of FILE's `[proxy]`
/// when it can be verified); only this host's member can be killed.
async fn distributed(file: &Path) -> Result<Target, DiscoverError> {
    let node = Node::load(file).map_err(|source| DiscoverError::ConfigFile {
        file: file.to_path_buf(),
        source,
    })?;
    let store = node
        .connect_store(Some(Duration::from_secs(5)))
        .await
        .map_err(DiscoverError::StoreUnreachable)?;
    let view = pgha_host::ops::view(store.as_ref()).await?;
    let token = node.secrets.api_token.clone();
    let tls = node.api_client_tls();
    let mut apis = vec![node.config.member.api.clone()];
    let mut members = Vec::new();
    for (name, record) in &view.members {
        let address = record.addresses.get(POSTGRES_ADDRESS).ok_or_else(|| {
            DiscoverError::NoPostgresAddress {
                member: name.to_string(),
            }
        })?;
        let api = record.addresses.get(API_ADDRESS).cloned();
        if let Some(a) = &api {
            apis.push(a.clone());
        }
        let local = name.as_str() == node.config.member.name;
        members.push(Member {
            name: name.to_string(),
            endpoint: endpoint(address)?,
            data_dir: local.then(|| node.config.member.dir.join("data")),
            api: api.map(|a| Client::new([a], token.clone(), tls.clone())),
        });
    }
    let mut writes = vec![WriteRoute::MultiHost(members.clone())];
    let credentials = node.credentials();
    // The proxy's entry points, when one listens. With TLS only a terminating proxy
    // (`[proxy.tls]`) can be verified at its own address: one that passes TLS through
    // presents the certificate of whichever member it routes to.
    let mut reads = None;
    if credentials.tls.is_none() || node.config.proxy.tls.is_some() {
        if let Some(rw) = listening(node.config.proxy.rw_listen.as_deref()).await {
            writes.insert(0, WriteRoute::Entry(rw));
        }
        reads = listening(node.config.proxy.ro_listen.as_deref()).await;
    }
    let peers = peers(&node, &members)?;
    let mut target = Target {
        mode: Mode::Distributed,
        client: Client::new(apis, token, tls),
        credentials,
        writes,
        reads,
        members,
        peers,
        fault_commands: Vec::new(),
    };
    drop_unverifiable_entries(&mut target).await;
    Ok(target)
}

/// Leaves out an entry point whose certificate does not name the address it is reached at
/// (e.g. `pgha tls proxy` without `--host` for it), saying so: the writers then go only
/// through the members.
async fn drop_unverifiable_entries(target: &mut Target) {
    if target.credentials.tls.is_none() {
        return;
    }
    let mut verified = Vec::new();
    for route in std::mem::take(&mut target.writes) {
        if let WriteRoute::Entry(e) = &route {
            if let Err(err) = target.connect(&route, Duration::from_secs(5)).await {
                tracing::warn!(
                    "writers go only through the members: the proxy at {e} took no verified \
                     connection ({err}); if its certificate lacks this address, issue it with \
                     `pgha tls proxy --host {}`",
                    e.host
                );
                continue;
            }
        }
        verified.push(route);
    }
    target.writes = verified;
    if let Some(ro) = target.reads.clone() {
        if target
            .connect_endpoint(&ro, Duration::from_secs(5))
            .await
            .is_err()
        {
            target.reads = None;
        }
    }
}

/// The hosts other than this one: the other members' and etcd's (what isolate-host cuts).
fn peers(node: &Node, members: &[Member]) -> Result<Vec<String>, DiscoverError> {
    let me = &node.config.member.host;
    let mut out: Vec<String> = members
        .iter()
        .filter(|m| m.data_dir.is_none())
        .map(|m| m.endpoint.host.clone())
        .collect();
    for url in &node.config.etcd.endpoints {
        let authority = url.split("://").last().unwrap_or(url);
        let authority = authority.split('/').next().unwrap_or(authority);
        out.push(endpoint(authority)?.host);
    }
    out.retain(|h| h != me);
    out.sort();
    out.dedup();
    Ok(out)
}

/// `address` as an endpoint when something accepts connections there.
async fn listening(address: Option<&str>) -> Option<Endpoint> {
    let e = endpoint(address?).ok()?;
    let connect = tokio::net::TcpStream::connect((e.host.as_str(), e.port));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => Some(e),
        _ => None,
    }
}

/// `host:port` (`[v6]:port` too) as an endpoint.
fn endpoint(text: &str) -> Result<Endpoint, DiscoverError> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| DiscoverError::NotHostPort { text: text.into() })?;
    Ok(Endpoint {
        host: host.trim_matches(['[', ']']).to_string(),
        port: port.parse().map_err(|_| DiscoverError::BadPort {
            text: text.into(),
            port: port.into(),
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_at_the_last_colon() {
        let e = endpoint("127.0.0.1:15432").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 15432));
        assert_eq!(endpoint("[::1]:5432").unwrap().host, "::1");
        assert!(matches!(
            endpoint("nohost"),
            Err(DiscoverError::NotHostPort { .. })
        ));
        assert!(matches!(
            endpoint("db:fivefour"),
            Err(DiscoverError::BadPort { .. })
        ));
    }
}
