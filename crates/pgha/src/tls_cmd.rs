//! `pgha tls ca|member|proxy`: the cluster CA and the certificates it issues.

use crate::cli::TlsAction;

/// `pgha tls ...`: makes the files and says where each one goes.
pub fn run(action: TlsAction) -> anyhow::Result<()> {
    use pgha_host::tls_files::{issue, make_ca, Holder};
    let (holder, dir, name, hosts) = match action {
        TlsAction::Ca { dir } => {
            let made = make_ca(&dir)?;
            outln!(
                "made the cluster CA: {} (copy to every host: [tls] ca_file) and {} (keep it here, 0600)",
                made.cert.display(),
                made.key.display()
            );
            return Ok(());
        }
        TlsAction::Member { dir, name, hosts } => (Holder::Member, dir, name, hosts),
        TlsAction::Proxy { dir, name, hosts } => (Holder::Proxy, dir, name, hosts),
    };
    let written = issue(&dir, holder, &name, &hosts)?;
    let (section, on) = match holder {
        Holder::Member => ("[tls]", format!("{name}'s host")),
        Holder::Proxy => ("[proxy.tls]", "the proxy's host".to_string()),
    };
    let mut valid_for = vec![name.clone()];
    valid_for.extend(hosts);
    outln!(
        "issued {name}'s certificate for {}: {} and {} ({section} cert_file and key_file on {on})",
        valid_for.join(", "),
        written.cert.display(),
        written.key.display()
    );
    Ok(())
}
