//! pgha-host: the one control plane. A [`Host`] runs the agents of its members over any store
//! (`pgha up`: every member of a local cluster over the embedded store; `pgha agent`: one
//! member over etcd), serves the same [`api`] from it, and the CLI reaches that API through
//! one [`client::Client`]. The binary only parses arguments, loads config and prints.

pub mod api;
pub mod at;
pub mod client;
pub mod config_edit;
pub mod dynamic;
pub mod entry;
pub mod error;
pub mod gather;
pub mod handle;
pub mod host;
pub mod init;
pub mod kept_config;
pub mod local;
pub mod node;
pub mod ops;
pub mod parameter_check;
pub mod promotion_wait;
pub mod reinit;
pub mod rolling;
pub mod secrets;
pub mod signals;
pub mod status;
#[cfg(test)]
mod stub_api;
pub mod sync_wait;
pub mod tls_files;

pub use at::ClusterAt;
pub use error::CliError;
pub use handle::ClusterHandle;
pub use host::{Host, HostError, HostSetup, NotReady};
pub use local::LocalCluster;
