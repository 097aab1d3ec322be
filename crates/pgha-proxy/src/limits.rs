//! Per-socket and per-process limits: TCP keepalives on session sockets, the open-files limit.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::ProxyConfig;

/// Open files the proxy needs besides two per client (listeners, backends' probes, cancels,
/// logs).
const FD_MARGIN: u64 = 100;

/// Sets TCP_NODELAY and, unless disabled, keepalives as configured, on one session socket (a
/// client's or a backend's). A dead peer (host gone, link cut) is noticed by the kernel instead
/// of holding the session until the other side speaks; with data sent and not acknowledged
/// (keepalives do not run then: a query sent into a blackholed backend) after as long as the
/// keepalives would take (`TCP_USER_TIMEOUT`), not after the kernel's retransmissions (about
/// 15 minutes).
pub(crate) fn tune_socket(stream: &TcpStream, cfg: &ProxyConfig) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let Some(idle) = cfg.tcp_keepalive_idle else {
        return;
    };
    let keepalive = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(cfg.tcp_keepalive_interval)
        .with_retries(cfg.tcp_keepalive_count);
    let socket = SockRef::from(stream);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
    let unanswered = idle + cfg.tcp_keepalive_interval * cfg.tcp_keepalive_count;
    if let Err(e) = socket.set_tcp_user_timeout(Some(unanswered)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
}

/// Open files needed for `max_client_conn` clients: each has a client and a backend socket.
pub(crate) fn files_needed(max_client_conn: usize) -> u64 {
    (max_client_conn as u64)
        .saturating_mul(2)
        .saturating_add(FD_MARGIN)
}

/// Raises the open-files soft limit (RLIMIT_NOFILE) to the hard limit, and warns, naming the
/// limit, when that is still below what `max_client_conn` needs: past it, accepts fail with
/// EMFILE and clients wait in the kernel's backlog instead of getting an answer.
pub(crate) fn raise_open_files(max_client_conn: usize) {
    let need = files_needed(max_client_conn);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let mut have = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!(from = soft, to = hard, "raised the open-files soft limit");
                have = hard;
            }
            Err(e) => tracing::warn!(error = %e, soft, hard,
                "cannot raise the open-files soft limit (RLIMIT_NOFILE) to the hard limit"),
        }
    }
    if have < need {
        tracing::warn!(
            "open-files limit RLIMIT_NOFILE is {have}, below the {need} that max_client_conn \
             {max_client_conn} needs (2 per client + {FD_MARGIN}): raise the hard limit \
             (LimitNOFILE= in the systemd unit, or ulimit -Hn) or lower max_client_conn"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_files_per_client_and_a_margin() {
        assert_eq!(files_needed(5000), 10_100);
        assert_eq!(files_needed(usize::MAX), u64::MAX);
    }

    /// Found by review: keepalives do not run while sent data waits for its acknowledgement,
    /// so a session whose query went into a blackholed backend hung for the kernel's
    /// retransmissions (about 15 minutes). Data unanswered for as long as the keepalives take
    /// ends it too; with keepalives off, neither is set.
    #[tokio::test]
    async fn session_sockets_give_up_unanswered_data_as_soon_as_keepalives_would() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        tune_socket(&stream, &ProxyConfig::default());
        let socket = SockRef::from(&stream);
        let expected = std::time::Duration::from_secs(60 + 10 * 6);
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(expected));
        assert!(socket.keepalive().unwrap());
        let off = ProxyConfig {
            tcp_keepalive_idle: None,
            ..ProxyConfig::default()
        };
        let plain = TcpStream::connect(addr).await.unwrap();
        tune_socket(&plain, &off);
        assert_eq!(SockRef::from(&plain).tcp_user_timeout().unwrap(), None);
    }
}
