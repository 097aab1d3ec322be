//! `pgha agent --config FILE` and `pgha proxy --config FILE`: a host of one member of a
//! distributed cluster over etcd, serving the API; SIGINT/SIGTERM stops PostgreSQL and leaves
//! the cluster cleanly (in maintenance mode it stops only the agent, leaving PostgreSQL
//! running). Or the proxy alone, following the leader in etcd.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::stop_signals::StopSignals;
use anyhow::{bail, Context};
use pgha_agent::NodeSpec;
use pgha_core::{MemberName, Tags};
use pgha_host::{Host, HostSetup};
use pgha_pg::conf::render_hba;
use pgha_pg::tls::{ClientTls, MemberTls, TlsFiles};
use pgha_pg::{Instance, PgBinaries, RunAs};
use pgha_store::{EtcdAccess, EtcdStore, Store};

use crate::node::NodeConfig;
use crate::secrets::Secrets;

/// Everything an agent, the proxy or the CLI needs from a host's config file.
pub struct Node {
    pub config: NodeConfig,
    pub secrets: Secrets,
    /// The client side of TLS with the cluster CA of `[tls] ca_file`.
    pub tls: Option<ClientTls>,
}

impl Node {
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        if file.exists() {
            pgha_pg::trust::check(file)?;
        }
        let config = NodeConfig::load(file)?;
        let secrets = Secrets::load(&config.secrets.file)?;
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                pgha_pg::trust::check(&t.ca_file)?;
                let pem = std::fs::read_to_string(&t.ca_file).with_context(|| {
                    format!(
                        "read tls.ca_file {} ({})",
                        t.ca_file.display(),
                        file.display()
                    )
                })?;
                Some(ClientTls::from_ca_pem(
                    &pem,
                    &t.ca_file.display().to_string(),
                )?)
            }
        };
        Ok(Node {
            config,
            secrets,
            tls,
        })
    }

    pub fn credentials(&self) -> pgha_pg::probe::Credentials {
        pgha_pg::probe::Credentials {
            user: self.config.postgresql.superuser.clone(),
            password: self.secrets.superuser_password.clone(),
            dbname: "postgres".into(),
            tls: self.tls.clone(),
        }
    }

    /// Whether the agents' APIs speak HTTPS (`[tls] api = true`).
    pub fn api_https(&self) -> bool {
        self.config.tls.as_ref().is_some_and(|t| t.api)
    }

    /// The client TLS for the agents' APIs, when they speak HTTPS.
    pub fn api_client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls
            .as_ref()
            .filter(|_| self.api_https())
            .map(ClientTls::rustls)
    }

    /// The server TLS of this agent's API (its member certificate), when it speaks HTTPS.
    fn api_server_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        let Some(section) = self.config.tls.as_ref().filter(|t| t.api) else {
            return Ok(None);
        };
        let cert = std::fs::read_to_string(&section.cert_file)
            .with_context(|| format!("read tls.cert_file {}", section.cert_file.display()))?;
        let key = std::fs::read_to_string(&section.key_file)
            .with_context(|| format!("read tls.key_file {}", section.key_file.display()))?;
        let what = section.cert_file.display().to_string();
        Ok(Some(pgha_pg::tls::server_config(&cert, &key, &what)?))
    }

    /// This member's TLS: its certificate and key, and the CA for libpq, copied into the
    /// member directory (owned by the PostgreSQL OS user, the key 0600) where PostgreSQL and
    /// its walreceiver read them.
    fn member_tls(&self, member_dir: &Path, run_as: &RunAs) -> anyhow::Result<Option<MemberTls>> {
        let (Some(section), Some(client)) = (&self.config.tls, &self.tls) else {
            return Ok(None);
        };
        pgha_pg::trust::check(&section.cert_file)?;
        pgha_pg::trust::check_secrets(&section.key_file)?;
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("read tls.{key} {}", path.display()))
        };
        let issued = pgha_pg::tls::Issued {
            cert_pem: read(&section.cert_file, "cert_file")?,
            key_pem: read(&section.key_file, "key_file")?,
        };
        let files = TlsFiles::in_member_dir(member_dir.join("ca.crt"), member_dir);
        pgha_pg::beneath::write(
            &files.ca_cert,
            read(&section.ca_file, "ca_file")?.as_bytes(),
            0o644,
            run_as,
        )?;
        files.install(&issued, run_as)?;
        Ok(Some(MemberTls {
            files,
            client: client.clone(),
        }))
    }

    /// Connects to etcd, retrying with a clear message until it answers or `patience` ends.
    pub async fn connect_store(
        &self,
        patience: Option<Duration>,
    ) -> anyhow::Result<Arc<dyn Store>> {
        let c = &self.config;
        let access = self.etcd_access()?;
        let store = EtcdStore::connect_patiently(
            &c.etcd.endpoints,
            &c.cluster.name,
            c.etcd_timeout(),
            &access,
            patience,
        )
        .await
        .with_context(|| format!("etcd at {}", c.etcd.endpoints.join(", ")))?;
        Ok(Arc::new(store))
    }

    /// TLS to etcd as `[etcd]` says (ca_file, cert_file, key_file).
    fn etcd_access(&self) -> anyhow::Result<EtcdAccess> {
        let e = &self.config.etcd;
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("read etcd.{key} {}", path.display()))
        };
        let ca_pem = match &e.ca_file {
            Some(ca) => {
                pgha_pg::trust::check(ca)?;
                Some(read(ca, "ca_file")?)
            }
            None => None,
        };
        let client_identity = match (&e.cert_file, &e.key_file) {
            (Some(cert), Some(key)) => {
                pgha_pg::trust::check(cert)?;
                pgha_pg::trust::check_secrets(key)?;
                Some((read(cert, "cert_file")?, read(key, "key_file")?))
            }
            _ => None,
        };
        Ok(EtcdAccess {
            ca_pem,
            client_identity,
        })
    }

    /// This host's member, ready for an agent.
    fn spec(&self) -> anyhow::Result<NodeSpec> {
        let c = &self.config;
        let pg = &c.postgresql;
        let bins = PgBinaries::discover(pg.bin_dir.as_deref())?;
        pgha_pg::trust::check_binaries(&bins)?;
        let run_as = RunAs::detect(&pg.os_user)?;
        run_as.check_reachable(&c.member.dir)?;
        let instance = Instance::new(&c.member.name, &c.member.dir, bins, run_as);
        Ok(NodeSpec {
            name: MemberName::new(c.member.name.as_str()),
            passfile: c.member.dir.join("pgpass"),
            instance,
            host: c.member.host.clone(),
            port: c.member.port,
            api: Some(c.member.api.clone()),
            api_token: self.secrets.api_token.clone(),
            superuser: pg.superuser.clone(),
            superuser_password: self.secrets.superuser_password.clone(),
            replication_user: pg.replication_user.clone(),
            replication_password: self.secrets.replication_password.clone(),
            cluster_size: 8,
            parameters: pg.parameters(),
            hba: render_hba(
                &pg.replication_user,
                &c.replication_hosts(),
                &pg.pg_hba,
                self.tls.is_some(),
            ),
            tls: None,
            api_https: false,
            tags: Tags {
                nofailover: c.member.nofailover,
                nosync: c.member.nosync,
                priority: c.member.priority,
            },
        })
    }
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(file: &Path) -> anyhow::Result<()> {
    let node = Node::load(file)?;
    if node.config.tls.is_none() {
        tracing::warn!(
            "{}: no [tls] section: replication and pgha's connections to PostgreSQL are not \
             encrypted, and a fake member written into etcd would be sent the superuser password; \
             make certificates with `pgha tls ca` and `pgha tls member`",
            file.display()
        );
    }
    if node.config.etcd.ca_file.is_none() {
        tracing::warn!(
            "{}: no etcd.ca_file: etcd is reached in clear text; give etcd TLS (see `pgha agent --help`)",
            file.display()
        );
    }
    let spec = node.spec()?;
    let api_listener = tokio::net::TcpListener::bind(&node.config.member.api)
        .await
        .with_context(|| {
            format!(
                "bind the REST API on {} (member.api in {})",
                node.config.member.api,
                file.display()
            )
        })?;
    spec.instance.create_member_dir()?;
    let mut spec = spec;
    spec.tls = node.member_tls(&spec.instance.member_dir, &spec.instance.run_as)?;
    spec.api_https = node.api_https();
    let api_tls = node.api_server_tls()?;
    let pg = &node.config.postgresql;
    pgha_pg::secrets::write_passfile(
        &spec.passfile,
        &[
            (&pg.replication_user, &node.secrets.replication_password),
            (&pg.superuser, &node.secrets.superuser_password),
        ],
        &spec.instance.run_as,
    )?;

    let mut stop = StopSignals::install()?;
    let store = tokio::select! {
        s = node.connect_store(None) => s?,
        why = stop.recv() => bail!("{why} while waiting for etcd"),
    };
    let initial = node.config.initial_dynamic()?;
    pgha_host::ops::ensure_config(store.as_ref(), &initial).await?;
    refuse_foreign_data(&spec, store.as_ref()).await?;

    let config = pgha_host::ops::view(store.as_ref()).await?.config;
    arm_watchdog(&mut spec, &node.config.watchdog, &config, file)?;
    let (name, host_addr, port) = (spec.name.clone(), spec.host.clone(), spec.port);
    let p = &node.config.proxy;
    let host = Host::new(HostSetup {
        cluster: node.config.cluster.name.clone(),
        store,
        members: vec![spec],
        token: node.secrets.api_token.clone(),
        credentials: node.credentials(),
        entry_points: (
            p.rw_listen.clone().unwrap_or_default(),
            p.ro_listen.clone().unwrap_or_default(),
        ),
    });
    host.start_member(name.as_str()).await?;
    let api = pgha_host::api::serve(api_listener, host.clone(), api_tls);
    tracing::info!(
        "agent {name} of cluster {} running: PostgreSQL {host_addr}:{port}, REST API {}",
        node.config.cluster.name,
        node.config.member.api
    );
    stop.recv().await;
    host.leave_cluster().await;
    api.stop().await;
    Ok(())
}

/// `pgha proxy --config FILE`: the proxy alone, following the leader in etcd.
pub async fn proxy(file: &Path) -> anyhow::Result<()> {
    let node = Node::load(file)?;
    let p = &node.config.proxy;
    if p.rw_listen.is_none() && p.ro_listen.is_none() {
        bail!(
            "{}: set proxy.rw_listen and/or proxy.ro_listen",
            file.display()
        );
    }
    let store = node.connect_store(None).await?;
    let config = pgha_proxy::ProxyConfig {
        rw_listen: p.rw_listen.clone(),
        ro_listen: p.ro_listen.clone(),
        ..pgha_proxy::ProxyConfig::default()
    };
    let shutdown = pgha_proxy::CancellationToken::new();
    pgha_host::entry::start(store, config, &node.credentials(), shutdown.clone()).await?;
    tracing::info!(
        "proxy running: read-write {:?}, read-only {:?}",
        p.rw_listen,
        p.ro_listen
    );
    StopSignals::install()?.recv().await;
    shutdown.cancel();
    Ok(())
}

/// Gives the supervisor its watchdog setting. The timeout must fit in half the safety margin
/// (the supervisor stops keeping it alive at its fence deadline, the store expires the lease
/// half a margin later). `required` without a usable device: this member is never promoted.
fn arm_watchdog(
    spec: &mut NodeSpec,
    section: &crate::node::WatchdogSection,
    config: &pgha_core::ClusterConfig,
    file: &Path,
) -> anyhow::Result<()> {
    use pgha_pg::watchdog::{check, timeout_for, WatchdogMode};
    let mode = section.mode;
    if mode == WatchdogMode::Off {
        return Ok(());
    }
    let timeout_s = timeout_for(config.safety_margin_ms);
    if u64::from(timeout_s) * 1000 > config.safety_margin_ms / 2 {
        let why = format!(
            "watchdog.mode = {mode} in {} needs safety_margin_ms of at least 2000 (it is {}):              the watchdog's 1 s must fit in half the margin",
            file.display(),
            config.safety_margin_ms
        );
        if mode == WatchdogMode::Required {
            bail!("{why}; raise it with pgha config set safety_margin_ms=2000");
        }
        tracing::warn!("{why}; the watchdog stays off");
        return Ok(());
    }
    if mode == WatchdogMode::Required {
        if let Err(e) = check(&section.device, timeout_s) {
            tracing::error!(
                "{}: watchdog required but unusable ({e}): this member will not be promoted",
                spec.name
            );
            spec.tags.nofailover = true;
        }
    }
    spec.instance.watchdog = pgha_pg::supervisor::WatchdogSetting {
        mode,
        device: section.device.clone(),
        timeout_s,
    };
    Ok(())
}

/// Refuses to start on a data directory that belongs to another cluster (changes nothing).
async fn refuse_foreign_data(spec: &NodeSpec, store: &dyn Store) -> anyhow::Result<()> {
    let view = pgha_host::ops::view(store).await?;
    let (Some(cluster_id), true) = (view.initialize, spec.instance.is_initialized()) else {
        return Ok(());
    };
    let local = spec.instance.controldata().await?.system_identifier;
    if local != cluster_id.0.to_string() {
        bail!(
            "{} belongs to another cluster (system identifier {local}, the cluster in etcd has {}); \
             refusing to touch it. Point member.dir elsewhere, or move that data directory away yourself",
            spec.instance.data_dir().display(),
            cluster_id.0
        );
    }
    Ok(())
}
