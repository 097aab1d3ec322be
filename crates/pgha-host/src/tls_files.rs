//! `pgha tls ca|member|proxy`: the certificate files a distributed cluster's TLS needs, made
//! with the cluster's own authority (no openssl steps to get right).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pgha_pg::ca_dir::{write_new, CA_CERT, CA_KEY};
use pgha_pg::tls::Authority;

/// A certificate and its key, as written.
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Who a certificate is for: a member (its name is also a replication slot's) or a proxy
/// that terminates clients' TLS (its name is the one clients verify, e.g. a DNS name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Member,
    Proxy,
}

/// Makes a new cluster CA in `dir`; refuses to replace one.
pub fn make_ca(dir: &Path) -> anyhow::Result<Written> {
    let key = dir.join(CA_KEY);
    if key.exists() {
        bail!(
            "{} already exists: a new CA would orphan every certificate it signed; \
             choose another directory or remove it yourself",
            key.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let issued = Authority::generate()?.issued();
    write_new(&key, &issued.key_pem, 0o600)?;
    let cert = dir.join(CA_CERT);
    write_new(&cert, &issued.cert_pem, 0o644)?;
    Ok(Written { cert, key })
}

/// Issues `name`'s certificate, valid for its name and every host in `hosts`, from the CA in
/// `dir`: `dir/NAME.crt` and `dir/NAME.key` (0600).
pub fn issue(dir: &Path, holder: Holder, name: &str, hosts: &[String]) -> anyhow::Result<Written> {
    if holder == Holder::Member && !pgha_core::MemberName::valid(name) {
        bail!("{name:?} is not a member name (letters, digits and '_')");
    }
    if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
        bail!("{name:?} cannot name a certificate file");
    }
    let key_file = dir.join(CA_KEY);
    pgha_pg::trust::check_secrets(&key_file)?;
    let pem = std::fs::read_to_string(&key_file).with_context(|| {
        format!(
            "read the CA key {} (make it with `pgha tls ca`)",
            key_file.display()
        )
    })?;
    let issued = Authority::load(&pem)?.issue(name, hosts)?;
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    write_new(&key, &issued.key_pem, 0o600)?;
    write_new(&cert, &issued.cert_pem, 0o644)?;
    Ok(Written { cert, key })
}
