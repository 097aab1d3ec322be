//! The proxy as the SCRAM-SHA-256(-PLUS) server of a client whose TLS it terminates: checks
//! the client's messages as PostgreSQL does, binds -PLUS to the proxy's own certificate, and
//! recovers the client's ClientKey from a proof that matches the role's verifier.

use crate::scram::{
    attr, auth_message, b64, ct_eq, hmac, nonce, sha256, unb64, xor, Key, ScramError, Verifier,
    CBIND_TYPE, SCRAM, SCRAM_PLUS,
};

/// The mechanisms the proxy offers: -PLUS only when its certificate's hash is known.
pub(crate) fn mechanisms(binding: Option<&[u8]>) -> Vec<&'static str> {
    match binding {
        Some(_) => vec![SCRAM_PLUS, SCRAM],
        None => vec![SCRAM],
    }
}

/// A client's exchange after its first message.
pub(crate) struct ServerExchange {
    role: String,
    /// What the client's `c=` must decode to: its gs2 header, then the proxy's certificate
    /// hash when it binds.
    expected_c: Vec<u8>,
    binds: bool,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// A proof that matched: the client's ClientKey and the answer that proves the proxy knows
/// the verifier (`v=ServerSignature`).
pub(crate) struct Proved {
    pub(crate) client_key: Key,
    pub(crate) server_final: String,
}

crate::scram::redacted_debug!(Proved);

impl ServerExchange {
    /// Reads the client-first-message `data` sent with `mechanism` by `role`; `binding` is the
    /// proxy's certificate hash (offered as -PLUS when known).
    pub(crate) fn start(
        role: &str,
        mechanism: &[u8],
        data: &[u8],
        verifier: &Verifier,
        binding: Option<&[u8]>,
    ) -> Result<ServerExchange, ScramError> {
        Self::start_with_nonce(role, mechanism, data, verifier, binding, &nonce())
    }

    fn start_with_nonce(
        role: &str,
        mechanism: &[u8],
        data: &[u8],
        verifier: &Verifier,
        binding: Option<&[u8]>,
        server_nonce: &str,
    ) -> Result<ServerExchange, ScramError> {
        let plus = match mechanism {
            m if m == SCRAM_PLUS.as_bytes() && binding.is_some() => true,
            m if m == SCRAM.as_bytes() => false,
            _ => return Err(ScramError::Malformed("unsupported SASL mechanism")),
        };
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let p_flag = format!("p={CBIND_TYPE}");
        let (binds, after_flag) = if let Some(rest) = text.strip_prefix(p_flag.as_str()) {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix('y') {
            if binding.is_some() {
                return Err(ScramError::Downgrade);
            }
            (false, rest)
        } else if let Some(rest) = text.strip_prefix('n') {
            (false, rest)
        } else {
            return Err(ScramError::Malformed("unexpected channel binding flag"));
        };
        if binds != plus {
            return Err(ScramError::Malformed(
                "channel binding flag does not match the mechanism",
            ));
        }
        // ",," : an authorization identity is not supported (as in PostgreSQL).
        let bare = after_flag.strip_prefix(",,").ok_or(ScramError::Malformed(
            "authorization identity not supported",
        ))?;
        let header = &text[..text.len() - bare.len()];
        let mut parts = bare.split(',');
        // The user name is ignored: the startup packet's is the one that counts.
        attr(parts.next().unwrap_or_default(), 'n')?;
        let client_nonce = attr(parts.next().unwrap_or_default(), 'r')?;
        let printable = |b: u8| (0x21..=0x7e).contains(&b) && b != b',';
        if client_nonce.is_empty() || !client_nonce.bytes().all(printable) {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", verifier.salt, verifier.iterations);
        let mut expected_c = header.as_bytes().to_vec();
        if binds {
            expected_c.extend_from_slice(binding.unwrap_or_default());
        }
        Ok(ServerExchange {
            role: role.to_string(),
            expected_c,
            binds,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        })
    }

    /// The server-first-message to send.
    pub(crate) fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client-final-message `data` against `verifier` (the one whose salt and
    /// iteration count the server-first-message gave).
    pub(crate) fn finish(&self, data: &[u8], verifier: &Verifier) -> Result<Proved, ScramError> {
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let c = unb64(attr(parts.next().unwrap_or_default(), 'c')?)?;
        if c != self.expected_c {
            return Err(match self.binds {
                true => ScramError::BindingMismatch,
                false => ScramError::Malformed("unexpected channel binding data"),
            });
        }
        if attr(parts.next().unwrap_or_default(), 'r')? != self.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: Key = unb64(proof)?
            .try_into()
            .map_err(|_| ScramError::Malformed("bad proof length"))?;
        let auth = auth_message(&self.client_first_bare, &self.server_first, without_proof);
        let client_signature = hmac(&verifier.stored_key, &[auth.as_bytes()]);
        let client_key = xor(&proof, &client_signature);
        if !ct_eq(&sha256(&client_key), &verifier.stored_key) {
            return Err(ScramError::BadProof(self.role.clone()));
        }
        let server_signature = hmac(&verifier.server_key, &[auth.as_bytes()]);
        Ok(Proved {
            client_key,
            server_final: format!("v={}", b64(&server_signature)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::tests::verifier_for;

    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    fn verifier() -> Verifier {
        Verifier::parse(&verifier_for("pencil", SALT, 4096)).unwrap()
    }

    #[test]
    fn rfc7677_example_is_accepted_and_answered() {
        let v = verifier();
        let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let x = ServerExchange::start_with_nonce(
            "user",
            b"SCRAM-SHA-256",
            first,
            &v,
            None,
            server_nonce,
        )
        .unwrap();
        assert_eq!(
            x.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let proved = x.finish(fin.as_bytes(), &v).unwrap();
        assert_eq!(
            proved.server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(sha256(&proved.client_key), v.stored_key);
        assert_eq!(format!("{proved:?}"), "Proved(<redacted>)");
        // Another password's verifier: the same proof fails.
        let other = Verifier::parse(&verifier_for("pencils", SALT, 4096)).unwrap();
        assert!(
            matches!(x.finish(fin.as_bytes(), &other), Err(ScramError::BadProof(r)) if r == "user")
        );
        let flipped = fin.replace("p=dHzb", "p=dHzc");
        assert!(matches!(
            x.finish(flipped.as_bytes(), &v),
            Err(ScramError::BadProof(_))
        ));
        let other_nonce = fin.replace("k0,", "k1,");
        assert!(matches!(
            x.finish(other_nonce.as_bytes(), &v),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn channel_binding_is_to_the_proxys_certificate_and_downgrades_are_refused() {
        let v = verifier();
        let hash = [7u8; 32];
        let start = |mech: &str, data: &str, binding: Option<&[u8]>| {
            ServerExchange::start("app", mech.as_bytes(), data.as_bytes(), &v, binding)
        };
        let plus = start(SCRAM_PLUS, "p=tls-server-end-point,,n=,r=abc", Some(&hash)).unwrap();
        assert!(plus.server_first().starts_with("r=abc"));
        let mut c = b"p=tls-server-end-point,,".to_vec();
        c.extend_from_slice(&[8u8; 32]);
        let fin = format!("c={},r={},p={}", b64(&c), plus.nonce, b64(&[0; 32]));
        assert!(matches!(
            plus.finish(fin.as_bytes(), &v),
            Err(ScramError::BindingMismatch)
        ));
        assert!(matches!(
            start(SCRAM, "y,,n=,r=abc", Some(&hash)),
            Err(ScramError::Downgrade)
        ));
        // 'y' is honest when -PLUS was not offered; 'n' always is.
        assert!(start(SCRAM, "y,,n=,r=abc", None).is_ok());
        assert!(start(SCRAM, "n,,n=,r=abc", Some(&hash)).is_ok());
        for (mech, data, binding) in [
            (SCRAM_PLUS, "p=tls-server-end-point,,n=,r=abc", None),
            (SCRAM_PLUS, "n,,n=,r=abc", Some(&hash[..])),
            (SCRAM, "p=tls-server-end-point,,n=,r=abc", Some(&hash[..])),
            (SCRAM, "p=tls-unique,,n=,r=abc", Some(&hash[..])),
            (SCRAM, "n,a=admin,n=,r=abc", None),
            (SCRAM, "n,,m=ext,n=,r=abc", None),
            (SCRAM, "n,,n=,r=", None),
            (SCRAM, "n,,n=", None),
            ("SCRAM-SHA-1", "n,,n=,r=abc", None),
        ] {
            assert!(
                matches!(start(mech, data, binding), Err(ScramError::Malformed(_))),
                "{mech} {data}"
            );
        }
        assert_eq!(mechanisms(Some(&hash)), [SCRAM_PLUS, SCRAM]);
        assert_eq!(mechanisms(None), [SCRAM]);
    }
}
