//! Serves the API on a bound listener until told to stop, over HTTPS when given a server
//! certificate (handshakes run in their own tasks, bounded, so a slow client holds up no one).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::host::Host;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The API being served.
pub struct ApiServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Serves [`super::router`] over `host` on `listener`; over HTTPS with `tls`.
pub fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> ApiServer {
    let (stop, stopped) = watch::channel(false);
    let router = super::router(host);
    let task = tokio::spawn(async move {
        let shutdown = {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let served = match tls {
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(config) => {
                let tls = TlsListener::start(listener, TlsAcceptor::from(config), stopped);
                axum::serve(tls, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!("the API stopped: {e}");
        }
    });
    ApiServer { stop, task }
}

impl ApiServer {
    /// Stops accepting, lets the requests in flight finish, and waits for that.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Accepted connections whose TLS handshake completed.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` until `stopped`, each handshake in a task of its own.
    fn start(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        mut stopped: watch::Receiver<bool>,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("API accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("API TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("API TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        TlsListener { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (stopping): wait for the graceful shutdown to end us.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
