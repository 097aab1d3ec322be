//! The fencing watchdog (I1): a task of its own that stops a writable PostgreSQL immediately
//! once the lease deadline passes without the agent loop having renewed it — even if the loop
//! is stuck in a slow store call or probe.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::spec::NodeSpec;

/// Starts the watchdog; send it the lease deadline after every step (`None`: no lease held).
pub fn spawn(spec: Arc<NodeSpec>) -> watch::Sender<Option<Instant>> {
    let (tx, mut rx) = watch::channel::<Option<Instant>>(None);
    tokio::spawn(async move {
        loop {
            let deadline = *rx.borrow_and_update();
            match deadline {
                None => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
                Some(at) => {
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return },
                        _ = tokio::time::sleep_until(at) => {
                            if *rx.borrow() == Some(at) {
                                fence(&spec).await;
                                // Wait for the next deadline (a new lease) before acting again.
                                if rx.changed().await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    tx
}

async fn fence(spec: &NodeSpec) {
    let inst = &spec.instance;
    if !inst.is_running() || inst.has_standby_signal() {
        return;
    }
    tracing::error!(
        "{}: lease deadline passed without renewal and the agent loop did not demote in time: \
         stopping PostgreSQL immediately (fencing)",
        spec.name
    );
    if let Err(e) = inst
        .stop(
            pgha_pg::StopMode::Immediate,
            std::time::Duration::from_secs(10),
        )
        .await
    {
        tracing::error!("{}: fencing stop failed: {e}", spec.name);
    }
}
