//! TLS terminated in the proxy: its own certificate for clients (after SSLRequest, or direct
//! with ALPN "postgresql"), then the startup or cancel read inside TLS; every backend over TLS
//! that verifies the member's certificate (cluster CA, member name) before anything is sent,
//! forwarded cancels included.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::binding::tls_server_end_point;
use crate::cancel::cancel;
use crate::config::ProxyTls;
use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::proxy_auth::Peer;
use crate::route::Lease;
use crate::session::{before_deadline, start_plain};
use crate::startup::{read_first_packet, CancelKey, FirstPacket};
use crate::stream::Prefixed;
use crate::tls::ask;
use crate::wire;

/// The ALPN protocol of PostgreSQL's TLS (required with direct TLS negotiation).
const ALPN: &[u8] = b"postgresql";

/// A client's TLS session with the proxy.
type ClientTls = server::TlsStream<Prefixed<TcpStream>>;

/// The proxy's two TLS sides.
pub(crate) struct Terminator {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// Clients that do not start TLS are refused.
    pub(crate) require: bool,
    /// SCRAM channel binding data of the proxy's certificate (`None`: -PLUS is not offered).
    pub(crate) binding: Option<Vec<u8>>,
}

impl Terminator {
    /// Reads the certificate, key and cluster CA that `cfg` names.
    pub(crate) fn load(cfg: &ProxyTls) -> Result<Terminator, ProxyError> {
        let cert = read(&cfg.cert_file)?;
        let key = read(&cfg.key_file)?;
        let ca = read(&cfg.ca_file)?;
        let what = cfg.cert_file.display().to_string();
        let server =
            pgha_pg::tls::server_config(&cert, &key, &what).map_err(|e| setup(&what, e))?;
        let mut server = (*server).clone();
        server.alpn_protocols = vec![ALPN.to_vec()];
        let ca_what = cfg.ca_file.display().to_string();
        let roots =
            pgha_pg::tls::ClientTls::from_ca_pem(&ca, &ca_what).map_err(|e| setup(&ca_what, e))?;
        let binding = CertificateDer::pem_slice_iter(cert.as_bytes())
            .next()
            .and_then(|c| c.ok())
            .and_then(|c| tls_server_end_point(&c));
        Ok(Terminator {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(roots.rustls()),
            require: cfg.require,
            binding,
        })
    }

    /// TLS with the backend of `lease` on `stream`: SSLRequest, 'S', then a handshake in which
    /// the member proves its name with a certificate from the cluster CA.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        lease: &Lease,
        within: Duration,
    ) -> Result<client::TlsStream<TcpStream>, ProxyError> {
        self.handshake(stream, lease.name(), lease.addr(), within)
            .await
    }

    async fn handshake(
        &self,
        mut stream: TcpStream,
        member: &str,
        addr: &str,
        within: Duration,
    ) -> Result<client::TlsStream<TcpStream>, ProxyError> {
        let name = server_name(member, addr)?;
        if ask(&mut stream, within).await? != b'S' {
            return Err(ProxyError::BackendRefusedTls(addr.to_string()));
        }
        self.connector
            .connect(name, stream)
            .await
            .map_err(|source| ProxyError::BackendTls {
                addr: addr.to_string(),
                name: member.to_string(),
                source,
            })
    }

    /// Sends a CancelRequest for `key` to `member` at `addr` inside TLS, once the member has
    /// proved its name (bounded by `within`).
    pub(crate) async fn forward_cancel(
        &self,
        member: &str,
        addr: &str,
        key: &CancelKey,
        within: Duration,
    ) -> Result<(), ProxyError> {
        let send = async {
            let tcp = TcpStream::connect(addr).await?;
            let mut tls = self.handshake(tcp, member, addr, within).await?;
            tls.write_all(&key.request()).await?;
            tls.shutdown().await?;
            Ok(())
        };
        tokio::time::timeout(within, send)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}

fn read(path: &Path) -> Result<String, ProxyError> {
    std::fs::read_to_string(path).map_err(|e| setup(&path.display().to_string(), e))
}

fn setup(what: &str, detail: impl std::fmt::Display) -> ProxyError {
    ProxyError::TlsSetup {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// The name a backend's certificate must carry: the member's name when it is reached at an IP
/// address, else the host name it is reached at (as pgha's own connections verify it).
fn server_name(member: &str, addr: &str) -> Result<ServerName<'static>, ProxyError> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = if host.parse::<IpAddr>().is_ok() {
        member
    } else {
        host
    };
    ServerName::try_from(name.to_string()).map_err(|e| setup(&format!("member name {name:?}"), e))
}

/// Serves a client whose first packet was SSLRequest: 'S', the handshake (within a fresh
/// startup timeout), then what it sends inside.
pub(crate) async fn after_ssl_request(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    term: &Terminator,
) -> Result<(), ProxyError> {
    client.write_all(b"S").await?;
    let addr = client.peer_addr().ok();
    let deadline = Instant::now() + ctx.shared.config.startup_timeout;
    let accept = async {
        Ok(term
            .acceptor
            .accept(Prefixed::new(Vec::new(), client))
            .await?)
    };
    let tls = before_deadline(ctx, deadline, accept).await?;
    inside(ctx, tls, deadline, addr).await
}

/// Serves a client that started a TLS handshake with no SSLRequest (`prefix`: its first
/// bytes). As PostgreSQL does, direct TLS requires ALPN "postgresql".
pub(crate) async fn direct(
    ctx: &ListenerCtx,
    client: TcpStream,
    prefix: Vec<u8>,
    deadline: Instant,
    term: &Terminator,
) -> Result<(), ProxyError> {
    let addr = client.peer_addr().ok();
    let accept = async { Ok(term.acceptor.accept(Prefixed::new(prefix, client)).await?) };
    let mut tls = before_deadline(ctx, deadline, accept).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
        let e = ProxyError::BadStartup("direct TLS without ALPN protocol \"postgresql\"");
        return fail(&mut tls, e).await;
    }
    inside(ctx, tls, deadline, addr).await
}

/// Reads the startup or CancelRequest inside TLS and serves it: a session like a plaintext
/// one (key read, read-only default applied), or the cancel routed by its key. `addr`: the
/// client's address.
async fn inside(
    ctx: &ListenerCtx,
    mut tls: ClientTls,
    deadline: Instant,
    addr: Option<SocketAddr>,
) -> Result<(), ProxyError> {
    ctx.metrics.tls_terminated.fetch_add(1, Relaxed);
    let max = ctx.shared.config.max_startup_packet;
    let first = before_deadline(ctx, deadline, read_first_packet(&mut tls, max)).await;
    match first {
        Ok(FirstPacket::Startup(p)) => {
            let hold = Instant::now() + ctx.shared.config.hold_timeout;
            start_plain(ctx, tls, p, hold, Peer { addr, tls: true }).await
        }
        Ok(FirstPacket::Cancel(key)) => {
            cancel(ctx, key).await;
            let _ = tls.shutdown().await;
            Ok(())
        }
        Ok(_) => {
            let e = ProxyError::BadStartup("expected a startup message or cancel request");
            fail(&mut tls, e).await
        }
        Err(e @ ProxyError::BadStartup(_)) => fail(&mut tls, e).await,
        Err(e) => Err(e),
    }
}

/// Tells the client `e` (FATAL 08P01) and ends its TLS session.
async fn fail<W: AsyncWrite + Unpin>(client: &mut W, e: ProxyError) -> Result<(), ProxyError> {
    let msg = wire::fatal(wire::SQLSTATE_PROTOCOL, &e.to_string());
    let _ = client.write_all(&msg).await;
    let _ = client.shutdown().await;
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_at_addresses_are_verified_by_name_hosts_by_host_name() {
        let name = |m, a| format!("{:?}", server_name(m, a).unwrap());
        assert!(name("n1", "127.0.0.1:5432").contains("\"n1\""));
        assert!(name("n1", "[::1]:5432").contains("\"n1\""));
        assert!(name("n1", "db1.example:5432").contains("db1.example"));
        assert!(server_name("bad name", "127.0.0.1:1").is_err());
    }
}
