//! `pgha tls ca` and `pgha tls member`: the certificates a distributed cluster's TLS needs,
//! made with the cluster's own authority (no openssl steps to get right).

use std::path::Path;

use anyhow::{bail, Context};
use pgha_pg::ca_dir::{write_new, CA_CERT, CA_KEY};
use pgha_pg::tls::Authority;

/// Makes a new cluster CA in `dir`; refuses to replace one.
pub fn make_ca(dir: &Path) -> anyhow::Result<()> {
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
    write_new(&dir.join(CA_CERT), &issued.cert_pem, 0o644)?;
    println!(
        "made the cluster CA: {} (copy to every host: [tls] ca_file) and {} (keep it here, 0600)",
        dir.join(CA_CERT).display(),
        key.display()
    );
    Ok(())
}

/// Issues member `name`'s certificate, valid for its name and every host in `hosts`, from
/// the CA in `dir`: `dir/NAME.crt` and `dir/NAME.key` (0600).
pub fn issue_member(dir: &Path, name: &str, hosts: &[String]) -> anyhow::Result<()> {
    if !pgha_core::MemberName::valid(name) {
        bail!("{name:?} is not a member name (letters, digits and '_')");
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
    println!(
        "issued {name}'s certificate for {name}, {}: {} and {} ([tls] cert_file and key_file on {name}'s host)",
        hosts.join(", "),
        cert.display(),
        key.display()
    );
    Ok(())
}
