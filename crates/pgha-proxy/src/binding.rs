//! SCRAM's `tls-server-end-point` channel binding data (RFC 5929, 4.1): the hash of a server's
//! certificate, with the hash function of the certificate's signature (SHA-256 for MD5 and
//! SHA-1), as libpq and PostgreSQL compute it.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::der::Decode;
use x509_cert::Certificate;

/// The channel binding data of the DER certificate `der`; `None` when it cannot be read or
/// its signature algorithm names no single hash (RSASSA-PSS, Ed25519): then -PLUS is not
/// used with it.
pub(crate) fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(der).ok()?;
    let oid = cert.signature_algorithm.oid.to_string();
    let hash = match oid.as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1, dsa-with-sha1,
        // sha256WithRSAEncryption, ecdsa-with-SHA256, dsa-with-sha256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2" => Sha256::digest(der).to_vec(),
        // sha224WithRSAEncryption, ecdsa-with-SHA224
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" => Sha224::digest(der).to_vec(),
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Sha384::digest(der).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Sha512::digest(der).to_vec(),
        _ => return None,
    };
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn a_cluster_certificate_hashes_with_sha256() {
        let ca = pgha_pg::tls::Authority::generate().unwrap();
        let issued = ca.issue("pgha-proxy", &["db.example".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let hash = tls_server_end_point(&der).unwrap();
        assert_eq!(hash, Sha256::digest(&der).to_vec());
        assert!(tls_server_end_point(b"not a certificate").is_none());
    }
}
