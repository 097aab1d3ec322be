//! Proxy configuration with serde defaults (durations as seconds or "250ms"/"30s"/"2m" strings).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the proxy needs besides its [`crate::Targets`] watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Read-write listener (`host:port`); `None` disables it.
    pub rw_listen: Option<String>,
    /// Read-only listener (`host:port`); `None` disables it.
    pub ro_listen: Option<String>,
    /// How long a new session waits for a target before getting an ErrorResponse.
    #[serde(with = "duration")]
    pub hold_timeout: Duration,
    /// Client connections allowed at once over all listeners (held ones included).
    pub max_client_conn: usize,
    /// Time a client has to complete its startup packet (slowloris bound); after an SSLRequest
    /// answered 'S', the time it has to send its first TLS record.
    #[serde(with = "duration")]
    pub startup_timeout: Duration,
    /// Plaintext sessions: time from the backend's first answer to its ReadyForQuery (the
    /// authentication exchange); a client still authenticating then is closed.
    #[serde(with = "duration")]
    pub auth_timeout: Duration,
    /// A session in which no byte moved either way for this long is closed; `None` (`"off"`):
    /// never.
    #[serde(with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive on both sockets of every session: idle time before the first probe;
    /// `None` (`"off"`) disables keepalives.
    #[serde(with = "duration::option")]
    pub tcp_keepalive_idle: Option<Duration>,
    /// Time between keepalive probes.
    #[serde(with = "duration")]
    pub tcp_keepalive_interval: Duration,
    /// Unanswered keepalive probes after which the connection is dropped; data sent and not
    /// acknowledged for idle + interval × count drops it too (`TCP_USER_TIMEOUT`).
    pub tcp_keepalive_count: u32,
    /// Time allowed for one TCP connect to a backend.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Largest startup packet accepted, in bytes.
    pub max_startup_packet: usize,
    /// Read-only listener: standbys lagging more than this many bytes (or of unknown lag) are
    /// skipped; `None` accepts any lag.
    pub ro_max_lag_bytes: Option<u64>,
    /// Read-only listener: with no eligible standby, route to the primary.
    pub ro_fallback_to_primary: bool,
    /// Read-only listener: add `default_transaction_read_only=on` to plaintext startup packets
    /// that do not set it, so that a fallback to the primary does not accept writes by default.
    pub ro_default_read_only: bool,
    /// Threads dedicated to client sessions, each with its own event loop (default: one per
    /// CPU); 0 runs sessions on the runtime that drives [`crate::Proxy::run`].
    pub worker_threads: usize,
    /// TLS terminated by the proxy with its own certificate; `None`: client TLS is passed
    /// through to PostgreSQL untouched.
    pub tls: Option<ProxyTls>,
}

/// The proxy's own TLS: clients verify its certificate (one name for the cluster), and it
/// verifies each member's certificate, issued by the cluster CA for the member's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTls {
    /// PEM certificate chain the proxy presents to clients.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM certificate(s) of the cluster CA: the only roots trusted for members.
    pub ca_file: PathBuf,
    /// Refuse clients that do not start TLS (cancel requests excepted: libpq sends its legacy
    /// cancels in plaintext).
    #[serde(default)]
    pub require: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            rw_listen: Some("127.0.0.1:6432".into()),
            ro_listen: Some("127.0.0.1:6433".into()),
            hold_timeout: Duration::from_secs(30),
            max_client_conn: 5000,
            startup_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(60),
            idle_timeout: None,
            tcp_keepalive_idle: Some(Duration::from_secs(60)),
            tcp_keepalive_interval: Duration::from_secs(10),
            tcp_keepalive_count: 6,
            connect_timeout: Duration::from_secs(3),
            max_startup_packet: 10_000,
            ro_max_lag_bytes: Some(16 * 1024 * 1024),
            ro_fallback_to_primary: true,
            ro_default_read_only: true,
            worker_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            tls: None,
        }
    }
}

/// Serde for durations: a number of seconds (`30`, `0.5`) or a string (`"250ms"`, `"30s"`, `"2m"`).
pub mod duration {
    use std::time::Duration;

    use pgha_core::duration_text::{parse_duration, DurationTextError};
    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Serializes as a string in milliseconds (`"1500ms"`), which [`deserialize`] reads back.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    /// A duration as written: a number of seconds or a string with a unit.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }

    impl Raw {
        fn duration(self) -> Result<Duration, DurationTextError> {
            match self {
                Raw::Secs(s) => Duration::try_from_secs_f64(s)
                    .map_err(|_| DurationTextError::NotANumber(s.to_string())),
                Raw::Text(t) => parse_duration(&t),
            }
        }
    }

    /// Reads a number of seconds or a string with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Raw::deserialize(d)?.duration().map_err(de::Error::custom)
    }

    /// Serde for an optional duration: `"off"` (or null) for `None`, else as [`super::duration`].
    pub mod option {
        use std::time::Duration;

        use serde::{de, Deserialize, Deserializer, Serializer};

        use super::Raw;

        /// `"off"`, or the duration as [`super::serialize`] writes it.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_str("off"),
            }
        }

        /// `"off"` or null for `None`, else what [`super::deserialize`] reads.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<Raw>::deserialize(d)? {
                None => Ok(None),
                Some(Raw::Text(t)) if t.trim() == "off" => Ok(None),
                Some(raw) => raw.duration().map(Some).map_err(de::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_names_its_files_and_requires_nothing_by_default() {
        let c: ProxyConfig = serde_json::from_str(
            r#"{"tls": {"cert_file": "/t/proxy.crt", "key_file": "/t/proxy.key",
                "ca_file": "/t/ca.crt"}}"#,
        )
        .unwrap();
        let tls = c.tls.clone().unwrap();
        assert_eq!(tls.ca_file, PathBuf::from("/t/ca.crt"));
        assert!(!tls.require);
        let back: ProxyConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<ProxyConfig>(r#"{"tls": {"cert_file": "x"}}"#).is_err());
    }

    #[test]
    fn durations_read_as_seconds_or_text_and_say_what_is_wrong() {
        for (json, ms) in [
            (r#"{"hold_timeout": 1.5}"#, 1500),
            (r#"{"hold_timeout": "250ms"}"#, 250),
            (r#"{"hold_timeout": "2m"}"#, 120_000),
        ] {
            let c: ProxyConfig = serde_json::from_str(json).unwrap();
            assert_eq!(c.hold_timeout, Duration::from_millis(ms), "{json}");
        }
        for json in [r#"{"hold_timeout": -1}"#, r#"{"hold_timeout": "3d"}"#] {
            let err = serde_json::from_str::<ProxyConfig>(json).unwrap_err();
            assert!(
                err.to_string().contains("duration") || err.to_string().contains("unit"),
                "{err}"
            );
        }
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let c: ProxyConfig = serde_json::from_str(r#"{"hold_timeout": "5s"}"#).unwrap();
        assert_eq!(c.hold_timeout, Duration::from_secs(5));
        assert_eq!(c.max_client_conn, ProxyConfig::default().max_client_conn);
        let back: ProxyConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn optional_durations_can_be_off() {
        let c: ProxyConfig =
            serde_json::from_str(r#"{"idle_timeout": "90s", "tcp_keepalive_idle": "off"}"#)
                .unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.tcp_keepalive_idle, None);
        let back: ProxyConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let c: ProxyConfig = serde_json::from_str(r#"{"idle_timeout": null}"#).unwrap();
        assert_eq!(c.tls, None);
        assert_eq!(c.idle_timeout, None);
        assert!(serde_json::from_str::<ProxyConfig>(r#"{"idle_timeout": "soon"}"#).is_err());
    }
}
