//! Serves the API on a bound listener until told to stop.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::host::Host;

/// The API being served.
pub struct ApiServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Serves [`super::router`] over `host` on `listener`.
pub fn serve(listener: TcpListener, host: Arc<Host>) -> ApiServer {
    let (stop, mut stopped) = watch::channel(false);
    let router = super::router(host);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
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
