//! SCRAM done by a proxy that terminates TLS (as PgBouncer does with auth_query): the client
//! authenticates to the proxy, -PLUS bound to the proxy's certificate, then the proxy logs in
//! to PostgreSQL as that role with the ClientKey the proof revealed and the verifier's
//! ServerKey (-PLUS bound to the member's certificate), and the rest of the startup is relayed.
//!
//! Only when the member asks for SCRAM: otherwise (trust, md5, password) its request is
//! relayed as before, as it is when the verifier cannot be read (-PLUS stripped, see the
//! `sasl` module). A role with no SCRAM verifier (none, md5, no such role) cannot pass
//! SCRAM in PostgreSQL either: the proxy runs the same doomed exchange PostgreSQL would, with
//! the same offer, so that clients cannot tell which roles exist. PostgreSQL still has the last
//! word: it checks the proxy's login against its own verifier, `rolvaliduntil`, `pg_hba.conf`.

use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::backend::read_message;
use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::route::Lease;
use crate::scram::{
    auth_code, auth_request, offered, parse_initial, sasl_offer, ScramError, Verifier,
    AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, SCRAM,
};
use crate::scram_client::ClientExchange;
use crate::scram_server::{mechanisms, Proved, ServerExchange};
use crate::startup::StartupPacket;
use crate::stream::BackendConn;
use crate::verifiers::{Found, Verifiers};
use crate::wire;

/// SQLSTATE of a failed password check (`invalid_password`), as PostgreSQL sends it.
const SQLSTATE_INVALID_PASSWORD: &str = "28P01";

/// The backend bytes to relay to the client next: `first` (the member's request) when the
/// proxy does not authenticate this client itself, else the proxy's AuthenticationSASLFinal
/// once the member accepted the proxy's login (its AuthenticationOk and the rest follow).
/// A failure is told to the client before it is returned (and logged, with the client's
/// address and role, when the client failed SCRAM). A client not on TLS (`peer.tls` false) is offered SCRAM-SHA-256 alone, as PostgreSQL offers it outside TLS: libpq refuses
/// -PLUS offered over a connection it knows is not encrypted.
pub(crate) async fn authenticate<C>(
    ctx: &ListenerCtx,
    client: &mut C,
    backend: &mut BackendConn,
    lease: &Lease,
    startup: &StartupPacket,
    first: Vec<u8>,
    peer: Peer,
) -> Result<Vec<u8>, ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (Some(term), Some(verifiers)) = (&ctx.shared.terminator, &ctx.shared.verifiers) else {
        return Ok(first);
    };
    let cfg = &ctx.shared.config;
    // A member that speaks an older protocol minor than the client asked for says so first
    // (NegotiateProtocolVersion): relayed ahead of the authentication request that follows.
    let (negotiated, first) = match first.first() {
        Some(b'v') => {
            let next = tokio::time::timeout(cfg.auth_timeout, read_message(backend)).await;
            let next = next.map_err(|_| ProxyError::AuthTimeout(cfg.auth_timeout))??;
            (first, next)
        }
        _ => (Vec::new(), first),
    };
    let relayed = |first: Vec<u8>| Ok([negotiated.as_slice(), &first].concat());
    if !offered(&first).contains(&SCRAM.as_bytes()) {
        return relayed(first);
    }
    let Some(role) = startup
        .param("user")
        .and_then(|u| std::str::from_utf8(u).ok())
    else {
        return relayed(first);
    };
    let found = match verifiers.get(lease.name(), lease.addr(), role).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(backend = %lease.addr(), role, error = %e,
                "cannot read the role's SCRAM verifier: authentication relayed to PostgreSQL");
            return relayed(first);
        }
    };
    client.write_all(&negotiated).await?;
    let has_verifier = found.verifier.is_some();
    let login = Login {
        verifiers,
        lease,
        role,
        binding: term.binding.as_deref().filter(|_| peer.tls),
        backend_offer: &first,
    };
    let work = tokio::time::timeout(cfg.auth_timeout, login.run(client, backend, found));
    let result = tokio::select! {
        r = work => r.unwrap_or(Err(ProxyError::AuthTimeout(cfg.auth_timeout))),
        _ = lease.token.cancelled() => Err(ProxyError::TargetChanged(lease.addr().to_string())),
        _ = ctx.shared.shutdown.cancelled() => Err(ProxyError::Shutdown),
    };
    match result {
        Ok(out) => {
            ctx.metrics.scram_by_proxy.fetch_add(1, Relaxed);
            Ok(out)
        }
        Err(e) => {
            if let ProxyError::ClientScram(s) = &e {
                ctx.metrics.scram_failed.fetch_add(1, Relaxed);
                let client = peer.addr.map_or_else(|| "?".into(), |a| a.to_string());
                tracing::warn!(%client, role, has_verifier, listener = ctx.router.role().as_str(),
                    tls = peer.tls, error = %s, "SCRAM authentication refused by the proxy");
            }
            if let Some(msg) = refusal(&e) {
                let _ = client.write_all(&msg).await;
            }
            let _ = client.shutdown().await;
            Err(e)
        }
    }
}

/// Who a session's client is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// Its address, when the socket still knew it.
    pub(crate) addr: Option<std::net::SocketAddr>,
    /// On the proxy's TLS (terminated), rather than in plaintext.
    pub(crate) tls: bool,
}

impl Peer {
    /// A plaintext client on `stream`.
    pub(crate) fn plain(stream: &tokio::net::TcpStream) -> Peer {
        Peer {
            addr: stream.peer_addr().ok(),
            tls: false,
        }
    }
}

/// What the client is told when its login ends in `e` (a refusal PostgreSQL relayed was
/// already sent; I/O errors cannot be told).
fn refusal(e: &ProxyError) -> Option<Vec<u8>> {
    let (sqlstate, msg) = match e {
        ProxyError::ClientScram(s @ ScramError::BadProof(_)) => {
            (SQLSTATE_INVALID_PASSWORD, s.to_string())
        }
        ProxyError::ClientScram(s) => (wire::SQLSTATE_PROTOCOL, s.to_string()),
        ProxyError::BackendScram(s) => (
            wire::SQLSTATE_CONNECTION_FAILURE,
            format!("pgha proxy could not log in to PostgreSQL for this client: {s}"),
        ),
        ProxyError::AuthTimeout(_) => (wire::SQLSTATE_PROTOCOL, e.to_string()),
        _ => return None,
    };
    Some(wire::fatal(sqlstate, &msg))
}

/// One client's login through the proxy.
struct Login<'a> {
    verifiers: &'a Verifiers,
    lease: &'a Lease,
    role: &'a str,
    /// The proxy certificate's channel binding data; `None` for a client not on TLS.
    binding: Option<&'a [u8]>,
    /// The member's AuthenticationSASL.
    backend_offer: &'a [u8],
}

impl Login<'_> {
    async fn run<C>(
        &self,
        client: &mut C,
        backend: &mut BackendConn,
        found: Found,
    ) -> Result<Vec<u8>, ProxyError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let cached = found.cached;
        let (proved, verifier) = self.client_side(client, found).await?;
        let logged_in = self.backend_side(client, backend, &proved, &verifier).await;
        if logged_in.is_err() && cached {
            // The member may know a newer verifier: read it again next time.
            self.verifiers.forget(self.lease.addr(), self.role);
        }
        logged_in?;
        Ok(auth_request(
            AUTH_SASL_FINAL,
            proved.server_final.as_bytes(),
        ))
    }

    /// The client's exchange with the proxy: its proof checked against the verifier (read
    /// again once when a remembered one fails).
    async fn client_side<C>(
        &self,
        client: &mut C,
        found: Found,
    ) -> Result<(Proved, Verifier), ProxyError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        // No SCRAM verifier although the member asks for SCRAM: PostgreSQL would run a doomed
        // exchange with a made-up salt (so that clients cannot tell which roles exist), and so
        // does the proxy; its offer stays the same as for any SCRAM role.
        let mock = found.verifier.is_none();
        let verifier = found
            .verifier
            .unwrap_or_else(|| self.verifiers.mock(self.role));
        let scram = ProxyError::ClientScram;
        client
            .write_all(&sasl_offer(&mechanisms(self.binding)))
            .await?;
        let initial = read_response(client).await?;
        let (mechanism, data) = parse_initial(&initial).map_err(scram)?;
        let x = ServerExchange::start(self.role, mechanism, data, &verifier, self.binding)
            .map_err(scram)?;
        let first = auth_request(AUTH_SASL_CONTINUE, x.server_first().as_bytes());
        client.write_all(&first).await?;
        let last = read_response(client).await?;
        // The mock role's final message is checked as any other (nonce, channel binding: a
        // malformed one is told apart from a wrong proof alike for every role), then refused.
        let checked = x.finish(&last, &verifier).and_then(|proved| match mock {
            true => Err(ScramError::BadProof(self.role.to_string())),
            false => Ok(proved),
        });
        match checked {
            Ok(proved) => Ok((proved, verifier)),
            Err(e @ ScramError::BadProof(_)) if found.cached => {
                // Perhaps a changed (or new) password: read it again, for this login if the
                // salt is the same (the client's proof used it), else for the next.
                let (member, addr) = (self.lease.name(), self.lease.addr());
                match self.verifiers.fetch(member, addr, self.role).await {
                    Ok(Some(fresh))
                        if fresh.salt == verifier.salt
                            && fresh.iterations == verifier.iterations =>
                    {
                        let proved = x.finish(&last, &fresh).map_err(scram)?;
                        Ok((proved, fresh))
                    }
                    _ => Err(scram(e)),
                }
            }
            Err(e) => Err(scram(e)),
        }
    }

    /// The proxy's login to the member with the client's keys; the member's own errors are
    /// relayed to the client as they come.
    async fn backend_side<C>(
        &self,
        client: &mut C,
        backend: &mut BackendConn,
        proved: &Proved,
        verifier: &Verifier,
    ) -> Result<(), ProxyError>
    where
        C: AsyncWrite + Unpin,
    {
        let scram = ProxyError::BackendScram;
        let mechanisms = offered(self.backend_offer);
        let mut x = ClientExchange::new(
            &mechanisms,
            backend.binding(),
            proved.client_key,
            verifier.server_key,
        )
        .map_err(scram)?;
        backend.write_all(&x.initial()).await?;
        let server_first = expect_auth(client, backend, AUTH_SASL_CONTINUE).await?;
        let response = x.respond(&server_first).map_err(scram)?;
        backend.write_all(&response).await?;
        let server_final = expect_auth(client, backend, AUTH_SASL_FINAL).await?;
        x.verify(&server_final).map_err(scram)
    }
}

/// The body of the client's next message, which must be a SASL response ('p').
async fn read_response<C: AsyncRead + Unpin>(client: &mut C) -> Result<Vec<u8>, ProxyError> {
    let mut msg = read_message(client).await?;
    if msg[0] != b'p' {
        return Err(ProxyError::ClientScram(ScramError::Malformed(
            "expected a SASL response",
        )));
    }
    Ok(msg.split_off(5))
}

/// The data of the member's next authentication request, which must have `code`; an
/// ErrorResponse is relayed to the client, notices are skipped.
async fn expect_auth<C: AsyncWrite + Unpin>(
    client: &mut C,
    backend: &mut BackendConn,
    code: u32,
) -> Result<Vec<u8>, ProxyError> {
    loop {
        let msg = read_message(backend).await?;
        match msg[0] {
            b'N' => continue,
            b'E' => {
                client.write_all(&msg).await?;
                return Err(ProxyError::BackendRefusedLogin);
            }
            _ => {}
        }
        return match auth_code(&msg) {
            Some((c, data)) if c == code => Ok(data.to_vec()),
            _ => Err(ProxyError::BackendScram(ScramError::Malformed(
                "unexpected message from the backend",
            ))),
        };
    }
}
