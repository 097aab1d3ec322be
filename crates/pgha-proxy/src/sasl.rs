//! Relayed SCRAM through a proxy that terminates TLS (when the proxy does not authenticate the
//! client itself, see `proxy_auth`): channel binding cannot cross it, so it is taken off the
//! backend's offer, and a client that says it could bind is told so plainly.
//!
//! SCRAM-SHA-256-PLUS binds the exchange to the certificate of the server the client speaks
//! TLS with: here the proxy's, while PostgreSQL checks its own. The proxy strips the -PLUS
//! mechanisms from AuthenticationSASL, so `channel_binding=require` fails at once in libpq
//! ("server did not offer an authentication method that supports channel binding"). libpq's
//! default, `channel_binding=prefer`, then sends the gs2 flag 'y' ("I could bind, I think the
//! server cannot"), which a PostgreSQL on TLS must refuse as a downgrade, and which the proxy
//! cannot rewrite: the flag is covered by the client's proof. The proxy refuses such a client
//! itself, naming the setting that works (`channel_binding=disable`; the proxy's certificate,
//! verified with `sslmode=verify-full`, already authenticates the other end).

use crate::error::ProxyError;

/// Largest message buffered whole during the startup (authentication requests, parameter
/// statuses, notices and the client's SASLInitialResponse are far smaller).
const MAX_MESSAGE: usize = 64 * 1024;
/// AuthenticationSASL's request code.
const AUTH_SASL: u32 = 10;

/// The startup-phase filter of one session with a TLS backend.
#[derive(Debug, Default)]
pub(crate) struct SaslFilter {
    /// Backend bytes not yet forming a whole message.
    pending: Vec<u8>,
    /// ReadyForQuery went by: bytes pass untouched.
    ready: bool,
    /// The backend offered SASL: the client's next message is its SASLInitialResponse.
    offered: bool,
    /// Client bytes of that message so far; `None` once it was checked.
    initial: Option<Vec<u8>>,
}

impl SaslFilter {
    /// The backend bytes to relay for `data`: whole messages, AuthenticationSASL without
    /// -PLUS mechanisms; after ReadyForQuery, everything as it comes.
    pub(crate) fn backend(&mut self, data: &[u8]) -> Result<Vec<u8>, ProxyError> {
        if self.ready {
            return Ok(data.to_vec());
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut at = 0;
        while let Some(total) = whole(&self.pending[at..])? {
            let msg = &self.pending[at..at + total];
            at += total;
            if msg[0] == b'R' && total >= 9 && code(msg) == AUTH_SASL {
                self.offered = true;
                self.initial = Some(Vec::new());
                out.extend_from_slice(&without_plus(msg));
            } else {
                out.extend_from_slice(msg);
            }
            if msg[0] == b'Z' {
                self.ready = true;
                out.extend_from_slice(&self.pending[at..]);
                at = self.pending.len();
                break;
            }
        }
        self.pending.drain(..at);
        Ok(out)
    }

    /// Looks at client bytes about to go to the backend: an error if they complete a
    /// SASLInitialResponse whose gs2 flag is 'y'.
    pub(crate) fn client(&mut self, data: &[u8]) -> Result<(), ProxyError> {
        let Some(buf) = self.initial.as_mut().filter(|_| self.offered) else {
            return Ok(());
        };
        buf.extend_from_slice(data);
        if buf.first().is_some_and(|t| *t != b'p') {
            self.initial = None;
            return Ok(());
        }
        let Some(total) = whole(buf)? else {
            return Ok(());
        };
        let binds = claims_binding(&buf[5..total]);
        self.initial = None;
        if binds {
            return Err(ProxyError::ChannelBinding);
        }
        Ok(())
    }
}

/// The length of the whole message at the start of `buf`, if it is all there.
fn whole(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(ProxyError::BadBackendMessage(
            "bad message length in the startup",
        ));
    }
    Ok((buf.len() > len).then_some(len + 1))
}

/// An authentication request's code.
fn code(msg: &[u8]) -> u32 {
    u32::from_be_bytes([msg[5], msg[6], msg[7], msg[8]])
}

/// AuthenticationSASL `msg` with every mechanism ending in "-PLUS" left out.
fn without_plus(msg: &[u8]) -> Vec<u8> {
    let mut body = msg[5..9].to_vec();
    for name in msg[9..].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !name.ends_with(b"-PLUS") {
            body.extend_from_slice(name);
            body.push(0);
        }
    }
    body.push(0);
    let mut out = vec![b'R'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Whether a SASLInitialResponse body (mechanism, length, data) is SCRAM whose gs2 header
/// starts with 'y'.
fn claims_binding(body: &[u8]) -> bool {
    let Some(end) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    if !body[..end].starts_with(b"SCRAM-") {
        return false;
    }
    body.get(end + 5..)
        .is_some_and(|data| data.starts_with(b"y,"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(names: &[&str]) -> Vec<u8> {
        let mut body = AUTH_SASL.to_be_bytes().to_vec();
        for n in names {
            body.extend_from_slice(n.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut m = vec![b'R'];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn initial(mechanism: &str, data: &str) -> Vec<u8> {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data.as_bytes());
        let mut m = vec![b'p'];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn plus_is_stripped_across_any_split_and_ready_passes_the_rest() {
        let offer = sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let ready = [b'Z', 0, 0, 0, 5, b'I', b'T', 0, 0];
        let mut stream = offer.clone();
        stream.extend_from_slice(&ready);
        for chunk in 1..stream.len() {
            let mut f = SaslFilter::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                out.extend(f.backend(piece).unwrap());
            }
            let mut want = sasl(&["SCRAM-SHA-256"]);
            want.extend_from_slice(&ready);
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(f.backend(b"\xff\xff").unwrap(), b"\xff\xff");
        }
        let mut f = SaslFilter::default();
        assert!(f.backend(&[b'R', 0xff, 0, 0, 0]).is_err(), "absurd length");
    }

    #[test]
    fn a_client_claiming_it_could_bind_is_refused() {
        let mut f = SaslFilter::default();
        f.backend(&sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))
            .unwrap();
        let y = initial("SCRAM-SHA-256", "y,,n=,r=abc");
        f.client(&y[..7]).unwrap();
        assert!(matches!(f.client(&y[7..]), Err(ProxyError::ChannelBinding)));
        // 'n' passes, and only the first client message is looked at.
        let mut f = SaslFilter::default();
        f.backend(&sasl(&["SCRAM-SHA-256"])).unwrap();
        f.client(&initial("SCRAM-SHA-256", "n,,n=,r=abc")).unwrap();
        f.client(&initial("SCRAM-SHA-256", "y,,")).unwrap();
        // Before any SASL offer (trust, password): nothing is looked at.
        let mut f = SaslFilter::default();
        f.client(&y).unwrap();
    }
}
