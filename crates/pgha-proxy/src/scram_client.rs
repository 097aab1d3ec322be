//! The proxy as a SCRAM-SHA-256(-PLUS) client of PostgreSQL, with a role's ClientKey and
//! ServerKey instead of its password: -PLUS bound to the member's certificate when offered,
//! and the member's server signature checked before the session is used.

use crate::scram::{
    attr, auth_message, b64, ct_eq, frame, hmac, initial_response, nonce, sha256, unb64, xor, Key,
    ScramError, CBIND_TYPE, SCRAM, SCRAM_PLUS,
};

/// One login to a backend.
pub(crate) struct ClientExchange {
    mechanism: &'static str,
    /// gs2 header then channel binding data: what `c=` carries.
    c: Vec<u8>,
    client_first_bare: String,
    nonce: String,
    client_key: Key,
    server_key: Key,
    /// AuthMessage, once the server-first-message is in.
    auth: Option<String>,
}

impl ClientExchange {
    /// Chooses among the backend's `offered` mechanisms: -PLUS with `binding` (the hash of
    /// the member's certificate) when both are there, else SCRAM-SHA-256.
    pub(crate) fn new(
        offered: &[&[u8]],
        binding: Option<Vec<u8>>,
        client_key: Key,
        server_key: Key,
    ) -> Result<ClientExchange, ScramError> {
        Self::with_nonce(offered, binding, client_key, server_key, nonce())
    }

    fn with_nonce(
        offered: &[&[u8]],
        binding: Option<Vec<u8>>,
        client_key: Key,
        server_key: Key,
        nonce: String,
    ) -> Result<ClientExchange, ScramError> {
        let has = |m: &str| offered.contains(&m.as_bytes());
        let (mechanism, c) = match binding {
            Some(hash) if has(SCRAM_PLUS) => {
                let mut c = format!("p={CBIND_TYPE},,").into_bytes();
                c.extend_from_slice(&hash);
                (SCRAM_PLUS, c)
            }
            // Able to bind, but not offered: say so ('y'); a server that could bind refuses.
            Some(_) if has(SCRAM) => (SCRAM, b"y,,".to_vec()),
            None if has(SCRAM) => (SCRAM, b"n,,".to_vec()),
            _ => {
                return Err(ScramError::Malformed(
                    "the backend offered no SCRAM-SHA-256",
                ))
            }
        };
        Ok(ClientExchange {
            mechanism,
            c,
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            client_key,
            server_key,
            auth: None,
        })
    }

    /// The SASLInitialResponse to send.
    pub(crate) fn initial(&self) -> Vec<u8> {
        let header_len = self.c.iter().position(|b| *b == b',').map_or(0, |i| i + 2);
        let mut data = self.c[..header_len].to_vec();
        data.extend_from_slice(self.client_first_bare.as_bytes());
        initial_response(self.mechanism, &data)
    }

    /// The SASLResponse answering `server_first` (AuthenticationSASLContinue's data).
    pub(crate) fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = text.split(',');
        let nonce = attr(parts.next().unwrap_or_default(), 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        // Salt and iterations are for deriving keys from a password: the proxy has the keys.
        attr(parts.next().unwrap_or_default(), 's')?;
        attr(parts.next().unwrap_or_default(), 'i')?;
        let without_proof = format!("c={},r={nonce}", b64(&self.c));
        let auth = auth_message(&self.client_first_bare, text, &without_proof);
        let signature = hmac(&sha256(&self.client_key), &[auth.as_bytes()]);
        let proof = xor(&self.client_key, &signature);
        self.auth = Some(auth);
        let message = format!("{without_proof},p={}", b64(&proof));
        Ok(frame(b'p', message.as_bytes()))
    }

    /// Checks `server_final` (AuthenticationSASLFinal's data): the member knows the verifier.
    pub(crate) fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let auth = self
            .auth
            .as_ref()
            .ok_or(ScramError::Malformed("server-final before server-first"))?;
        let text =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Ok(e) = attr(text, 'e') {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let got = unb64(attr(text.split(',').next().unwrap_or_default(), 'v')?)?;
        let want = hmac(&self.server_key, &[auth.as_bytes()]);
        match ct_eq(&got, &want) {
            true => Ok(()),
            false => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::tests::salted;
    use crate::scram::{parse_initial, Verifier};
    use crate::scram_server::ServerExchange;

    fn keys(password: &str) -> (Key, Key) {
        let s = salted(password, "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
        (hmac(&s, &[b"Client Key"]), hmac(&s, &[b"Server Key"]))
    }

    #[test]
    fn rfc7677_example_from_keys_alone() {
        let (ck, sk) = keys("pencil");
        let offered = [SCRAM.as_bytes()];
        let nonce = "rOprNGfwEbeRWgbNEkqO".to_string();
        let mut x = ClientExchange::with_nonce(&offered, None, ck, sk, nonce).unwrap();
        let initial = x.initial();
        let (_, data) = parse_initial(&initial[5..]).unwrap();
        assert_eq!(data, b"n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        let first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                     s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = x.respond(first.as_bytes()).unwrap();
        // RFC 7677's client proof is for "n=user": ours says "n=" (PostgreSQL ignores it).
        assert!(
            fin[5..].starts_with(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=")
        );
        assert!(matches!(
            x.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::BadServerSignature)
        ));
        assert!(matches!(
            x.verify(b"e=invalid-proof"),
            Err(ScramError::ServerError(_))
        ));
        assert!(x.respond(b"r=someone-else,s=AA==,i=1").is_err());
    }

    #[test]
    fn a_recovered_client_key_logs_in_where_the_password_would() {
        let v = Verifier::parse(&crate::scram::tests::verifier_for(
            "pencil",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            4096,
        ))
        .unwrap();
        let (ck, _) = keys("pencil");
        let hash = vec![9u8; 32];
        for (offered, binding, mech) in [
            (
                vec![SCRAM_PLUS.as_bytes(), SCRAM.as_bytes()],
                Some(hash.clone()),
                SCRAM_PLUS,
            ),
            (vec![SCRAM.as_bytes()], Some(hash.clone()), SCRAM),
            (vec![SCRAM_PLUS.as_bytes(), SCRAM.as_bytes()], None, SCRAM),
        ] {
            let mut x = ClientExchange::new(&offered, binding.clone(), ck, v.server_key).unwrap();
            let initial = x.initial();
            let (m, data) = parse_initial(&initial[5..]).unwrap();
            assert_eq!(m, mech.as_bytes());
            let server_binding = binding.as_deref().filter(|_| offered.len() == 2);
            let s = ServerExchange::start("app", m, data, &v, server_binding).unwrap();
            let fin = x.respond(s.server_first().as_bytes()).unwrap();
            let proved = s.finish(&fin[5..], &v).unwrap();
            assert_eq!(proved.client_key, ck);
            x.verify(proved.server_final.as_bytes()).unwrap();
        }
        assert!(ClientExchange::new(&[SCRAM_PLUS.as_bytes()], None, ck, v.server_key).is_err());
    }
}
