//! A startup's answer scanned as it is relayed: the cancel key registered before the client
//! can have it, the backend's `in_hot_standby` held against what the session was routed to,
//! a SCRAM exchange filtered when the proxy terminates TLS.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cancel::{CancelGuard, CancelRegistry, Owner};
use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::route::Served;
use crate::sasl::SaslFilter;
use crate::startup_scan::StartupScanner;

/// A startup's key scan: registers the key as soon as it is complete, before it is relayed.
pub(crate) struct KeyScan<'a> {
    pub(crate) scanner: StartupScanner,
    /// What the backend must report itself as (`in_hot_standby`, PostgreSQL 14+), or the
    /// session is refused: the primary for a read-write session, a standby for a read-only
    /// one routed to a standby.
    pub(crate) must_be: Option<Served>,
    pub(crate) registry: &'a Arc<CancelRegistry>,
    pub(crate) owner: &'a Owner,
    pub(crate) guard: &'a mut Option<CancelGuard>,
    /// The channel-binding filter of a session with a TLS backend.
    pub(crate) sasl: Option<SaslFilter>,
}

impl KeyScan<'_> {
    /// Feeds backend bytes; returns those to relay (the same, unless filtered) and whether
    /// the startup is over.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(Vec<u8>, bool), ProxyError> {
        let data = match &mut self.sasl {
            Some(f) => f.backend(data)?,
            None => data.to_vec(),
        };
        let done = self.scanner.feed(&data);
        // Nothing of a refused answer reaches the client: its session never becomes usable.
        match self.must_be {
            Some(Served::Primary) if self.scanner.in_recovery() => {
                return Err(ProxyError::BackendInRecovery(self.owner.addr.to_string()));
            }
            Some(Served::Standby) if self.scanner.out_of_recovery() => {
                return Err(ProxyError::BackendNotInRecovery(
                    self.owner.addr.to_string(),
                ));
            }
            _ => {}
        }
        if self.guard.is_none() {
            if let Some(key) = self.scanner.key() {
                *self.guard = Some(self.registry.register(key, self.owner.clone()));
            }
        }
        Ok((data, done))
    }

    /// Looks at client bytes about to go to the backend.
    fn client(&mut self, data: &[u8]) -> Result<(), ProxyError> {
        self.sasl.as_mut().map_or(Ok(()), |f| f.client(data))
    }
}

/// Relays both ways until the backend's ReadyForQuery, capturing its BackendKeyData; true if
/// either side closed first.
pub(crate) async fn scan_until_ready<C, B>(
    client: &mut C,
    backend: &mut B,
    ctx: &ListenerCtx,
    scan: &mut KeyScan<'_>,
) -> Result<bool, ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let m = &ctx.metrics;
    let mut cbuf = vec![0u8; 4096];
    let mut bbuf = vec![0u8; 8192];
    loop {
        tokio::select! {
            r = client.read(&mut cbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(true);
                }
                m.bytes_in.fetch_add(n as u64, Relaxed);
                scan.client(&cbuf[..n])?;
                backend.write_all(&cbuf[..n]).await?;
            }
            r = backend.read(&mut bbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(true);
                }
                m.bytes_out.fetch_add(n as u64, Relaxed);
                let (out, done) = scan.feed(&bbuf[..n])?;
                client.write_all(&out).await?;
                if done {
                    return Ok(false);
                }
            }
        }
    }
}
