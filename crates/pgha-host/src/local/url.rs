//! `pgha url`: a libpq URI for the superuser, to the read-write entry point or to one member.

use std::time::Duration;

use super::{LocalCluster, Password};
use crate::error::CliError;

/// The URI of `member`, or of the read-write entry point (the proxy, which follows the
/// primary) when no member is named; `direct_primary` asks for the primary itself.
pub async fn url(
    cluster: &LocalCluster,
    member: Option<&str>,
    direct_primary: bool,
    password: Password,
) -> anyhow::Result<String> {
    if let Some(name) = member {
        let m = cluster.member(name)?;
        return Ok(cluster.uri(&m.host, m.port, password));
    }
    if !direct_primary {
        return Ok(cluster.entry_uri(password));
    }
    for m in &cluster.members {
        if !m.instance.is_running() {
            continue;
        }
        let Ok(client) = cluster.connect(m, Duration::from_secs(2)).await else {
            continue;
        };
        if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
            if !row.get::<_, bool>(0) {
                return Ok(cluster.uri(&m.host, m.port, password));
            }
        }
    }
    Err(CliError::NoPrimary {
        dir: cluster.dir.clone(),
    }
    .into())
}
