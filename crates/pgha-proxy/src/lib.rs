//! pgha-proxy: TCP router that sends clients to the confirmed primary or to standbys.
//!
//! Wiring: publish [`Targets`] on a `tokio::sync::watch` channel (from the agent, or from a
//! [`Prober`] run over the lease holder and standby addresses), [`Proxy::bind`] a
//! [`ProxyConfig`] with the receiver and a shutdown token, then `proxy.run().await`.
//!
//! ```no_run
//! # async fn wire() -> Result<(), pgha_proxy::ProxyError> {
//! use pgha_proxy::{Candidates, Member, Prober, ProberConfig, Proxy, ProxyConfig, Targets};
//! use tokio_util::sync::CancellationToken;
//!
//! let shutdown = CancellationToken::new();
//! let (targets_tx, targets_rx) = tokio::sync::watch::channel(Targets::none());
//! let (cands_tx, cands_rx) = tokio::sync::watch::channel(Candidates::default());
//! let prober = Prober::new(ProberConfig::new("postgres"));
//! tokio::spawn(prober.run(cands_rx, targets_tx, shutdown.clone()));
//! // Whenever the lease holder or the member list changes:
//! cands_tx.send_replace(Candidates {
//!     leader: Some(Member::new("node1", "127.0.0.1:5432")),
//!     standbys: vec![Member::new("node2", "127.0.0.1:5433")],
//! });
//! let proxy = Proxy::bind(ProxyConfig::default(), targets_rx, shutdown.clone()).await?;
//! let metrics = proxy.metrics(); // metrics.snapshot() / metrics.render_prometheus()
//! proxy.run().await;
//! # Ok(()) }
//! ```

mod cancel;
mod config;
mod error;
mod listener;
mod metrics;
mod prober;
mod proxy;
mod route;
mod session;
mod splice;
mod startup;
mod targets;
pub mod wire;

pub use cancel::{CancelRegistry, KeyScanner};
pub use config::{duration, ProxyConfig};
pub use error::{ProbeError, ProxyError};
pub use metrics::{ListenerSnapshot, MetricsSnapshot};
pub use prober::{Candidates, Member, ProbeResult, Prober, ProberConfig};
pub use proxy::{MetricsHandle, Proxy};
pub use route::Role;
pub use splice::splice;
pub use startup::{read_first_packet, CancelKey, FirstPacket, StartupPacket};
pub use targets::{Backend, Standby, Targets};
pub use tokio_util::sync::CancellationToken;
