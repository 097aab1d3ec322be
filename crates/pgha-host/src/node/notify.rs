//! systemd's service notifications (sd_notify: READY, STATUS, STOPPING, WATCHDOG) over `$NOTIFY_SOCKET`.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where and how often to tell the service manager; every call is a no-op outside systemd.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier of this process, from `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and
    /// `$WATCHDOG_PID`. The variables are removed from the environment: the processes started
    /// later (`pgha supervise`, PostgreSQL, which speaks sd_notify itself when built with
    /// systemd support, callbacks) must not talk to the service manager in this unit's name.
    /// Call it before other threads read the environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name);
        let notifier = Notifier::new(
            var("NOTIFY_SOCKET"),
            var("WATCHDOG_USEC").and_then(|v| v.into_string().ok()),
            var("WATCHDOG_PID").and_then(|v| v.into_string().ok()),
            std::process::id(),
        );
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(name);
        }
        notifier
    }

    /// The notifier the variables describe, for process `pid`: a watchdog meant for another
    /// process (`watchdog_pid`) is not ours.
    pub fn new(
        socket: Option<OsString>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        pid: u32,
    ) -> Self {
        let socket = socket.filter(|s| !s.is_empty()).and_then(|path| {
            let addr = match address(&path) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET={path:?} unusable ({e}): systemd is not told");
                    return None;
                }
            };
            match UnixDatagram::unbound() {
                Ok(s) => Some((s, addr)),
                Err(e) => {
                    tracing::warn!("no socket for systemd's notifications: {e}");
                    None
                }
            }
        });
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse() == Ok(pid));
        let watchdog = watchdog_usec
            .filter(|_| ours)
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the period the service manager allows.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled()).map(|w| w / 2)
    }

    /// Sends newline-separated `KEY=value` assignments; a failure is logged, never fatal.
    pub fn send(&self, state: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!("could not notify systemd ({state:?}): {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// A status is one line of the protocol.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The socket's address: a path, or an abstract name when it starts with '@'.
fn address(path: &std::ffi::OsStr) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_status_and_watchdog_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::new(Some(path.into()), Some("30000000".into()), None, 1);
        assert!(n.enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        n.ready("n1: primary\nleads");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=n1: primary leads");
        n.watchdog();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        n.stopping("leaving");
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=leaving");
    }

    #[test]
    fn reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("pgha-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::new(Some(format!("@{name}").into()), None, None, 1);
        n.watchdog();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn outside_systemd_nothing_is_sent_and_no_watchdog_runs() {
        let n = Notifier::new(None, Some("30000000".into()), None, 1);
        assert!(!n.enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("nobody listens");
    }

    #[test]
    fn a_watchdog_meant_for_another_process_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let other = Notifier::new(
            Some(path.clone().into()),
            Some("30000000".into()),
            Some("42".into()),
            7,
        );
        assert_eq!(other.watchdog_interval(), None);
        let mine = Notifier::new(
            Some(path.into()),
            Some("30000000".into()),
            Some("7".into()),
            7,
        );
        assert_eq!(mine.watchdog_interval(), Some(Duration::from_secs(15)));
    }
}
