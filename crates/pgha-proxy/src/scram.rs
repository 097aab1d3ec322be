//! SCRAM-SHA-256 (RFC 5802, RFC 7677) pieces shared by the proxy's two sides: a role's
//! verifier as `pg_authid` keeps it, the HMAC/hash/XOR steps, nonces, message attributes and
//! the AuthenticationSASL* messages.
//!
//! With a verifier (StoredKey, ServerKey) and a client's proof, the proxy learns the client's
//! ClientKey (proof XOR ClientSignature, checked by `H(ClientKey) == StoredKey`), and that key
//! with ServerKey is all a SCRAM client needs to log in to PostgreSQL with the same verifier:
//! the password itself is never seen.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mechanism names, as PostgreSQL offers them.
pub(crate) const SCRAM: &str = "SCRAM-SHA-256";
pub(crate) const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel binding type PostgreSQL supports.
pub(crate) const CBIND_TYPE: &str = "tls-server-end-point";
/// Authentication request codes: SASL offer, continue, final.
pub(crate) const AUTH_SASL: u32 = 10;
pub(crate) const AUTH_SASL_CONTINUE: u32 = 11;
pub(crate) const AUTH_SASL_FINAL: u32 = 12;
/// Random bytes in a nonce (PostgreSQL uses 18).
const NONCE_BYTES: usize = 18;

/// A SHA-256 sized key or signature.
pub(crate) type Key = [u8; 32];

/// Implements `Debug` as `Name(<redacted>)` for a type holding key material, so that no log
/// line or panic message shows it.
macro_rules! redacted_debug {
    ($name:ident) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}
pub(crate) use redacted_debug;

/// Why a SCRAM exchange stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// The peer sent something that is not a SCRAM message of this exchange.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client says it could bind but thinks the server cannot, although it was offered
    /// SCRAM-SHA-256-PLUS (a downgrade).
    #[error("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, although it offered it")]
    Downgrade,
    /// The client's channel binding data is not the proxy's certificate hash.
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    /// The client's proof does not match the role's verifier (wrong password).
    #[error("password authentication failed for user \"{0}\"")]
    BadProof(String),
    /// PostgreSQL's server signature does not match the verifier's ServerKey.
    #[error("the server's SCRAM signature did not verify")]
    BadServerSignature,
    /// PostgreSQL ended the exchange with an error attribute.
    #[error("the server ended SCRAM with error {0:?}")]
    ServerError(String),
}

/// A role's SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Verifier {
    pub(crate) iterations: u32,
    /// The salt in base64, as sent to clients.
    pub(crate) salt: String,
    pub(crate) stored_key: Key,
    pub(crate) server_key: Key,
}

redacted_debug!(Verifier);

impl Verifier {
    /// The verifier in `rolpassword`, if it is a well-formed SCRAM-SHA-256 one (an md5 hash
    /// or anything else: `None`).
    pub(crate) fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
        B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(Verifier {
            iterations,
            salt: salt.to_string(),
            stored_key: decode_key(stored)?,
            server_key: decode_key(server)?,
        })
    }
}

/// A base64 SHA-256 sized value.
pub(crate) fn decode_key(text: &str) -> Option<Key> {
    B64.decode(text).ok()?.try_into().ok()
}

pub(crate) fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, ScramError> {
    B64.decode(text)
        .map_err(|_| ScramError::Malformed("invalid base64"))
}

/// HMAC-SHA-256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

pub(crate) fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Equality that takes the same time whatever the contents.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A fresh printable nonce (base64 of random bytes: no ',').
pub(crate) fn nonce() -> String {
    let mut raw = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    b64(&raw)
}

/// `AuthMessage`: client-first-message-bare, server-first-message and
/// client-final-message-without-proof, joined by ','.
pub(crate) fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    final_bare: &str,
) -> String {
    format!("{client_first_bare},{server_first},{final_bare}")
}

/// The value of attribute `name` (one letter) at the start of `part` ("r=abc" -> "abc").
pub(crate) fn attr(part: &str, name: char) -> Result<&str, ScramError> {
    let mut chars = part.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Ok(&part[2..])
    } else {
        Err(ScramError::Malformed("unexpected attribute"))
    }
}

/// An authentication request ('R') with `code` and `data`.
pub(crate) fn auth_request(code: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![b'R'];
    m.extend_from_slice(&((8 + data.len()) as u32).to_be_bytes());
    m.extend_from_slice(&code.to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// AuthenticationSASL offering `mechanisms`.
pub(crate) fn sasl_offer(mechanisms: &[&str]) -> Vec<u8> {
    let mut data = Vec::new();
    for m in mechanisms {
        data.extend_from_slice(m.as_bytes());
        data.push(0);
    }
    data.push(0);
    auth_request(AUTH_SASL, &data)
}

/// An authentication request's code and data, if `msg` is one.
pub(crate) fn auth_code(msg: &[u8]) -> Option<(u32, &[u8])> {
    if msg.first() != Some(&b'R') || msg.len() < 9 {
        return None;
    }
    Some((
        u32::from_be_bytes([msg[5], msg[6], msg[7], msg[8]]),
        &msg[9..],
    ))
}

/// The mechanisms of an AuthenticationSASL message.
pub(crate) fn offered(msg: &[u8]) -> Vec<&[u8]> {
    match auth_code(msg) {
        Some((AUTH_SASL, data)) => data.split(|b| *b == 0).filter(|n| !n.is_empty()).collect(),
        _ => Vec::new(),
    }
}

/// A SASLInitialResponse ('p'): mechanism and client-first-message.
pub(crate) fn initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(data.len() as u32).to_be_bytes());
    body.extend_from_slice(data);
    frame(b'p', &body)
}

/// A message of type `tag` with `body`.
pub(crate) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The mechanism and data of a SASLInitialResponse's body.
pub(crate) fn parse_initial(body: &[u8]) -> Result<(&[u8], &[u8]), ScramError> {
    let bad = ScramError::Malformed("bad SASLInitialResponse");
    let end = body.iter().position(|b| *b == 0).ok_or(bad)?;
    let rest = &body[end + 1..];
    let len = rest
        .get(..4)
        .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]))
        .ok_or(ScramError::Malformed("bad SASLInitialResponse"))?;
    let data = &rest[4..];
    if usize::try_from(len).ok() != Some(data.len()) {
        return Err(ScramError::Malformed("bad SASLInitialResponse length"));
    }
    Ok((&body[..end], data))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // RFC 7677's example: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
    // 4096 iterations.
    pub(crate) const RFC_SALTED: &str = "xKSVEDI6tPlSysH6mUQZOeeOp01r6B3fcJbodRPcYV0=";

    /// Hi(password, salt, i) computed here for tests only (the proxy never needs it).
    pub(crate) fn salted(password: &str, salt_b64: &str, iterations: u32) -> Key {
        let salt = B64.decode(salt_b64).unwrap();
        let mut u = hmac(password.as_bytes(), &[&salt, &[0, 0, 0, 1]]);
        let mut out = u;
        for _ in 1..iterations {
            u = hmac(password.as_bytes(), &[&u]);
            out = xor(&out, &u);
        }
        out
    }

    /// The verifier PostgreSQL stores for `password`.
    pub(crate) fn verifier_for(password: &str, salt_b64: &str, iterations: u32) -> String {
        let s = salted(password, salt_b64, iterations);
        let stored = sha256(&hmac(&s, &[b"Client Key"]));
        let server = hmac(&s, &[b"Server Key"]);
        format!(
            "SCRAM-SHA-256${iterations}:{salt_b64}${}:{}",
            b64(&stored),
            b64(&server)
        )
    }

    #[test]
    fn verifiers_parse_and_stay_secret() {
        let salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
        assert_eq!(b64(&salted("pencil", salt, 4096)), RFC_SALTED);
        let v = Verifier::parse(&verifier_for("pencil", salt, 4096)).unwrap();
        assert_eq!((v.iterations, v.salt.as_str()), (4096, salt));
        assert_eq!(format!("{v:?}"), "Verifier(<redacted>)");
        for bad in [
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:$x",
            "",
        ] {
            assert!(Verifier::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn messages_frame_and_parse() {
        let offer = sasl_offer(&[SCRAM_PLUS, SCRAM]);
        assert_eq!(offered(&offer), [SCRAM_PLUS.as_bytes(), SCRAM.as_bytes()]);
        let p = initial_response(SCRAM, b"n,,n=,r=x");
        assert_eq!(
            parse_initial(&p[5..]).unwrap(),
            (SCRAM.as_bytes(), &b"n,,n=,r=x"[..])
        );
        assert!(parse_initial(b"SCRAM-SHA-256\0\0\0\0\x09n,,").is_err());
        assert_eq!(auth_code(&auth_request(0, b"")), Some((0, &b""[..])));
        assert!(attr("r=abc", 'r').unwrap() == "abc" && attr("s=abc", 'r').is_err());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"a", b"ab"));
        assert_ne!(nonce(), nonce());
        assert!(!nonce().contains(','));
    }
}
