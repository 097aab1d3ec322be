//! TLS for every PostgreSQL connection pgha makes or configures: the cluster's certificate
//! authority, member certificates naming the member and its address, and the verifying client
//! side (libpq's `sslmode=verify-full`, rustls for pgha's own connections).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::conf::quote_conninfo;

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: no PEM certificate in it")]
    NoCertificate { what: String },
    #[error("{what}: {source}")]
    BadCertificate { what: String, source: rustls::Error },
    #[error("{name:?} cannot be named in a certificate: {detail}")]
    BadName { name: String, detail: String },
    #[error("{what}: no PEM private key in it ({detail})")]
    NoKey { what: String, detail: String },
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The cluster's certificate authority: it signs every member's certificate, and every
/// client pgha configures trusts it alone.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// The authority's name. The same for every cluster (each has its own key): what it signs
/// after a reload chains to the certificate it was first issued with.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "pgha cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Authority {
    /// A new authority.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    /// The authority from its private key (the certificate it signs with has the same name
    /// and key as the one it was first issued with, so what it signs chains to it).
    pub fn load(key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = ca_params().self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    /// The authority's own certificate and key, to keep.
    pub fn issued(&self) -> Issued {
        Issued {
            cert_pem: self.cert.pem(),
            key_pem: self.key.serialize_pem(),
        }
    }

    /// A server certificate for `member`, valid for its name and for each of `hosts` (IP
    /// addresses or DNS names the others and clients reach it at).
    pub fn issue(&self, member: &str, hosts: &[String]) -> Result<Issued, TlsError> {
        let mut names = vec![member.to_string()];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, member);
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(name.clone().try_into().map_err(|e: rcgen::Error| {
                        TlsError::BadName {
                            name: name.clone(),
                            detail: e.to_string(),
                        }
                    })?)
                }
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // A member serves PostgreSQL with it, and presents it to etcd as a client.
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Where a member's TLS files are on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate (public): what every client verifies against.
    pub ca_cert: PathBuf,
    /// This member's certificate and key, readable by the PostgreSQL OS user.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// A member whose certificate and key live in its member directory (`server.crt`,
    /// `server.key`), trusting the CA certificate at `ca_cert`.
    pub fn in_member_dir(ca_cert: PathBuf, member_dir: &Path) -> Self {
        TlsFiles {
            ca_cert,
            server_cert: member_dir.join("server.crt"),
            server_key: member_dir.join("server.key"),
        }
    }

    /// Whether the member's certificate and key are in place.
    pub fn installed(&self, run_as: &crate::RunAs) -> bool {
        crate::beneath::is_file(&self.server_cert, run_as)
            && crate::beneath::is_file(&self.server_key, run_as)
    }

    /// Writes the member's certificate and key where PostgreSQL reads them, owned by the
    /// PostgreSQL OS user (the key 0600), through writes the OS user cannot redirect.
    pub fn install(&self, issued: &Issued, run_as: &crate::RunAs) -> crate::Result<()> {
        crate::beneath::write(&self.server_cert, issued.cert_pem.as_bytes(), 0o644, run_as)?;
        crate::beneath::write(&self.server_key, issued.key_pem.as_bytes(), 0o600, run_as)
    }

    /// The server settings of `pgha.conf`.
    pub fn server_settings(&self) -> [(&'static str, String); 3] {
        [
            ("ssl", "on".to_string()),
            ("ssl_cert_file", self.server_cert.to_string_lossy().into()),
            ("ssl_key_file", self.server_key.to_string_lossy().into()),
        ]
    }
}

/// A member's TLS: its files, and the client side its agent and tools use.
#[derive(Debug, Clone)]
pub struct MemberTls {
    pub files: TlsFiles,
    pub client: ClientTls,
}

/// The client side of pgha's own connections: the cluster CA as the only root, full
/// verification of the member's name.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the certificates in `pem` (the cluster CA), and nothing else.
    pub fn from_ca_pem(pem: &str, what: &str) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
            roots.add(cert).map_err(|source| TlsError::BadCertificate {
                what: what.to_string(),
                source,
            })?;
        }
        if roots.is_empty() {
            return Err(TlsError::NoCertificate {
                what: what.to_string(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::BadCertificate {
                what: what.to_string(),
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// The connector for tokio-postgres.
    pub fn connector(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        tokio_postgres_rustls::MakeRustlsConnect::new((*self.config).clone())
    }

    /// The rustls configuration itself (for the HTTPS clients of the agents' API).
    pub fn rustls(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

/// The server side of TLS with a member's certificate and key (the agents' HTTPS API).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    what: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::PrivateKeyDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .flatten()
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::NoKey {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    let bad = |source| TlsError::BadCertificate {
        what: what.to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(bad)?;
    Ok(Arc::new(config))
}

/// Points `config` at `member` on `host:port`. With TLS the server must present a certificate
/// from the cluster CA naming `member` (reached at `host` when it is an IP address) or naming
/// `host` (a DNS name): a peer without one never sees the password.
pub fn target(config: &mut tokio_postgres::Config, member: &str, host: &str, port: u16, tls: bool) {
    config.port(port);
    match host.parse::<IpAddr>() {
        Ok(ip) if tls => {
            config.host(member).hostaddr(ip);
        }
        _ => {
            config.host(host);
        }
    }
    if tls {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
}

/// The libpq connection-string part that reaches `member` on `host:port`, with full
/// verification against `ca_cert` when given (the same rule as [`target`]).
pub fn conninfo_target(member: &str, host: &str, port: u16, ca_cert: Option<&Path>) -> String {
    match ca_cert {
        None => format!("host={} port={port}", quote_conninfo(host)),
        Some(ca) => {
            let endpoint = match host.parse::<IpAddr>() {
                Ok(_) => format!(
                    "host={} hostaddr={}",
                    quote_conninfo(member),
                    quote_conninfo(host)
                ),
                Err(_) => format!("host={}", quote_conninfo(host)),
            };
            format!(
                "{endpoint} port={port} sslmode=verify-full sslrootcert={}",
                quote_conninfo(&ca.to_string_lossy())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_certificate_chains_to_a_reloaded_authority() {
        use rustls::client::danger::ServerCertVerifier;
        let ca = Authority::generate().unwrap();
        let kept = ca.issued();
        let again = Authority::load(&kept.key_pem).unwrap();
        let member = again
            .issue("n1", &["127.0.0.1".into(), "db1.example".into()])
            .unwrap();
        let roots = ClientTls::from_ca_pem(&kept.cert_pem, "ca").unwrap();
        let cert = CertificateDer::from_pem_slice(member.cert_pem.as_bytes()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new({
                let mut r = rustls::RootCertStore::empty();
                r.add(CertificateDer::from_pem_slice(kept.cert_pem.as_bytes()).unwrap())
                    .unwrap();
                r
            }),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["n1", "127.0.0.1", "db1.example"] {
            let server = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&cert, &[], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("n2").unwrap();
        assert!(verifier
            .verify_server_cert(&cert, &[], &other, &[], now)
            .is_err());
        let _ = roots.connector();
        let stranger = Authority::generate().unwrap();
        let forged = stranger.issue("n1", &["127.0.0.1".into()]).unwrap();
        let forged = CertificateDer::from_pem_slice(forged.cert_pem.as_bytes()).unwrap();
        let n1 = rustls::pki_types::ServerName::try_from("n1").unwrap();
        assert!(
            verifier
                .verify_server_cert(&forged, &[], &n1, &[], now)
                .is_err(),
            "a certificate from another authority of the same name"
        );
    }

    #[test]
    fn conninfo_verifies_the_member_name_at_an_ip_address() {
        let ca = Path::new("/c/ca.crt");
        assert_eq!(
            conninfo_target("n1", "127.0.0.1", 5432, Some(ca)),
            "host='n1' hostaddr='127.0.0.1' port=5432 sslmode=verify-full sslrootcert='/c/ca.crt'"
        );
        assert_eq!(
            conninfo_target("n1", "db1.example", 5432, Some(ca)),
            "host='db1.example' port=5432 sslmode=verify-full sslrootcert='/c/ca.crt'"
        );
        assert_eq!(
            conninfo_target("n1", "127.0.0.1", 5432, None),
            "host='127.0.0.1' port=5432"
        );
    }
}
