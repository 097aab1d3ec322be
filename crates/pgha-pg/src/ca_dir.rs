//! The cluster's certificate authority kept in a directory pgha owns (`ca.crt`, `ca.key`),
//! and the member certificates issued from it into the members' directories.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt};
use std::path::{Path, PathBuf};

use atomic_write_file::unix::OpenOptionsExt as _;

use crate::error::{PgError, Result};
use crate::tls::{Authority, ClientTls, MemberTls, TlsFiles};
use crate::RunAs;

/// The CA's certificate (public: every client and every member's libpq reads it).
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key: only whoever runs pgha reads it.
pub const CA_KEY: &str = "ca.key";
/// The proxy's certificate and key, when it terminates TLS (`proxy_tls`).
pub const PROXY_CERT: &str = "proxy.crt";
pub const PROXY_KEY: &str = "proxy.key";
/// The name a terminating proxy's certificate carries besides its addresses.
pub const PROXY_NAME: &str = "pgha-proxy";

/// A directory holding the cluster CA.
#[derive(Debug, Clone)]
pub struct CaDir {
    pub dir: PathBuf,
}

/// One member to issue a certificate to.
pub struct MemberToIssue<'a> {
    pub name: &'a str,
    /// Addresses (IP or DNS) the others and clients reach it at.
    pub hosts: Vec<String>,
    pub member_dir: &'a Path,
}

impl CaDir {
    pub fn new(dir: PathBuf) -> Self {
        CaDir { dir }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The client side trusting this CA, when it exists.
    pub fn client(&self) -> Result<Option<ClientTls>> {
        let path = self.ca_cert();
        if !path.exists() {
            return Ok(None);
        }
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| PgError::io(format!("read {}", path.display()), e))?;
        Ok(Some(ClientTls::from_ca_pem(
            &pem,
            &path.display().to_string(),
        )?))
    }

    /// The member's TLS with this CA (its files in `member_dir`).
    pub fn member(&self, member_dir: &Path, client: &ClientTls) -> MemberTls {
        MemberTls {
            files: TlsFiles::in_member_dir(self.ca_cert(), member_dir),
            client: client.clone(),
        }
    }

    /// Makes the CA if it is missing, and gives each member a certificate it lacks (every
    /// member a new one when the CA is new). Returns the client side.
    pub fn ensure(&self, members: &[MemberToIssue<'_>], run_as: &RunAs) -> Result<ClientTls> {
        let key_path = self.dir.join(CA_KEY);
        let made = !key_path.exists();
        let authority = if made {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| PgError::io(format!("create {}", self.dir.display()), e))?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| PgError::io(format!("chmod {}", self.dir.display()), e))?;
            let authority = Authority::generate()?;
            let issued = authority.issued();
            // the key last: until it is there, the next start makes the CA again
            write_new(&self.ca_cert(), &issued.cert_pem, 0o644)?;
            write_new(&key_path, &issued.key_pem, 0o600)?;
            tracing::info!("made the cluster's TLS authority in {}", self.dir.display());
            authority
        } else {
            let pem = std::fs::read_to_string(&key_path)
                .map_err(|e| PgError::io(format!("read {}", key_path.display()), e))?;
            let authority = Authority::load(&pem)?;
            if !self.ca_cert().exists() {
                // the certificate is made again from the key: same name, same key
                write_new(&self.ca_cert(), &authority.issued().cert_pem, 0o644)?;
            }
            authority
        };
        for m in members {
            let files = TlsFiles::in_member_dir(self.ca_cert(), m.member_dir);
            if !made && files.installed(run_as) {
                continue;
            }
            let issued = authority.issue(m.name, &m.hosts)?;
            files.install(&issued, run_as)?;
        }
        Ok(self
            .client()?
            .expect("the CA certificate was just checked or written"))
    }
}

impl CaDir {
    /// The proxy's certificate and key for terminating TLS, issued by this CA (which must
    /// exist) for [`PROXY_NAME`] and `hosts` unless both files are there already: `DIR/proxy.crt`
    /// and `DIR/proxy.key` (0600, never readable by the PostgreSQL OS user).
    pub fn ensure_proxy(&self, hosts: &[String]) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = (self.dir.join(PROXY_CERT), self.dir.join(PROXY_KEY));
        if cert.exists() && key.exists() {
            return Ok((cert, key));
        }
        let key_path = self.dir.join(CA_KEY);
        let pem = std::fs::read_to_string(&key_path)
            .map_err(|e| PgError::io(format!("read {}", key_path.display()), e))?;
        let issued = Authority::load(&pem)?.issue(PROXY_NAME, hosts)?;
        write_new(&key, &issued.key_pem, 0o600)?;
        write_new(&cert, &issued.cert_pem, 0o644)?;
        // a certificate whose key was lost with it is made again next time (both are checked)
        tracing::info!("issued the proxy's TLS certificate {}", cert.display());
        Ok((cert, key))
    }
}

/// Writes `path` with `mode` (replacing a previous file of pgha's own directory) whole or not
/// at all: a temporary file created with that mode, synced, renamed over it, the directory
/// synced. A write cut short (killed, a full disk, a power loss) leaves the old file or none,
/// never a part of one that every later start would trip on.
pub fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = atomic_write_file::OpenOptions::new()
        .mode(mode)
        .preserve_mode(false)
        .preserve_owner(false)
        .open(path)
        .map_err(|e| PgError::io(format!("create {}", path.display()), e))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.commit())
        .map_err(|e| PgError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: the CA's files were written in place, the key first; a start cut
    /// between the two (killed, a full disk, a power loss) left a key without a certificate,
    /// and every later `pgha up` panicked ("the CA certificate was just checked or
    /// written"). The certificate goes first and is made again from the key when missing;
    /// a certificate without its key is a CA not made yet.
    #[test]
    fn a_ca_cut_short_is_mended_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaDir::new(dir.path().join("tls"));
        let run_as = RunAs::detect("postgres").expect("the postgres OS user");
        ca.ensure(&[], &run_as).unwrap();
        let key = std::fs::read_to_string(ca.dir.join(CA_KEY)).unwrap();
        let cert = std::fs::read_to_string(ca.ca_cert()).unwrap();
        std::fs::remove_file(ca.ca_cert()).unwrap();
        ca.ensure(&[], &run_as)
            .expect("a key without its certificate");
        assert_eq!(std::fs::read_to_string(ca.dir.join(CA_KEY)).unwrap(), key);
        let again = std::fs::read_to_string(ca.ca_cert()).unwrap();
        let (old, new) = (
            ClientTls::from_ca_pem(&cert, "old"),
            ClientTls::from_ca_pem(&again, "new"),
        );
        assert!(old.is_ok() && new.is_ok());
        std::fs::remove_file(ca.dir.join(CA_KEY)).unwrap();
        ca.ensure(&[], &run_as)
            .expect("a certificate without its key");
        assert!(ca.dir.join(CA_KEY).exists());
        assert_ne!(
            std::fs::read_to_string(ca.ca_cert()).unwrap(),
            again,
            "a new CA"
        );
    }
}
