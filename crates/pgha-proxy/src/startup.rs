//! Reads and checks a client's first packets: SSL/GSSENC/Cancel requests and StartupMessage, or
//! the start of a direct TLS handshake.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::ProxyError;
use crate::wire::{
    CANCEL_REQUEST, CANCEL_SECRET_MAX, CANCEL_SECRET_MIN, GSSENC_REQUEST, PROTOCOL_MAJOR_3,
    SSL_REQUEST, TLS_HANDSHAKE,
};

/// Smallest legal packet: length word plus request code / protocol version.
pub const MIN_PACKET: usize = 8;

/// A client's first (untyped) packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPacket {
    /// SSLRequest: the answer ('S'/'N') comes from the backend.
    Ssl,
    /// GSSENCRequest: the proxy answers 'N'.
    GssEnc,
    /// CancelRequest with the backend's key.
    Cancel(CancelKey),
    /// StartupMessage for protocol 3.
    Startup(StartupPacket),
    /// A TLS handshake record with no SSLRequest first (PostgreSQL 17's direct TLS negotiation,
    /// `sslnegotiation=direct`): the bytes read so far, to pass on with the rest unchanged.
    DirectTls(Vec<u8>),
}

/// Key of one backend session, from BackendKeyData / CancelRequest: the backend's process id and
/// its secret, 4 bytes in protocol 3.0, up to 256 bytes from protocol 3.2 (PostgreSQL 18 sends
/// 32). Debug output shows the secret's length only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// Backend process id.
    pub pid: u32,
    secret: Box<[u8]>,
}

impl CancelKey {
    /// A key with this pid and secret, if the secret's length is one the protocol allows
    /// (`CANCEL_SECRET_MIN..=CANCEL_SECRET_MAX` bytes).
    pub fn new(pid: u32, secret: &[u8]) -> Option<CancelKey> {
        (CANCEL_SECRET_MIN..=CANCEL_SECRET_MAX)
            .contains(&secret.len())
            .then(|| CancelKey {
                pid,
                secret: secret.into(),
            })
    }

    /// A protocol 3.0 key (4-byte secret).
    pub fn v3_0(pid: u32, secret: u32) -> CancelKey {
        CancelKey {
            pid,
            secret: secret.to_be_bytes().into(),
        }
    }

    /// The secret key bytes.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The CancelRequest packet for this key (16 bytes for a 4-byte secret, longer for longer
    /// ones: the length word says how long).
    pub fn request(&self) -> Vec<u8> {
        let len = 12 + self.secret.len();
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        p.extend_from_slice(&self.pid.to_be_bytes());
        p.extend_from_slice(&self.secret);
        p
    }
}

impl std::fmt::Debug for CancelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelKey")
            .field("pid", &self.pid)
            .field("secret_len", &self.secret.len())
            .finish()
    }
}

/// A validated StartupMessage, kept as sent so it can be forwarded unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupPacket {
    /// The whole packet, length word included.
    pub raw: Vec<u8>,
}

impl StartupPacket {
    /// The `(name, value)` parameters (validated when the packet was read).
    pub fn params(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut parts = self.raw[8..].split(|b| *b == 0);
        std::iter::from_fn(move || {
            let k = parts.next().filter(|k| !k.is_empty())?;
            let v = parts.next()?;
            Some((k, v))
        })
    }

    /// The value of parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// This packet with `name=value` appended when `name` is not already set.
    pub fn with_default(&self, name: &str, value: &str) -> StartupPacket {
        if self.param(name).is_some() {
            return self.clone();
        }
        let mut raw = self.raw[..self.raw.len() - 1].to_vec();
        for s in [name, value] {
            raw.extend_from_slice(s.as_bytes());
            raw.push(0);
        }
        raw.push(0);
        let len = raw.len() as u32;
        raw[0..4].copy_from_slice(&len.to_be_bytes());
        StartupPacket { raw }
    }
}

/// Reads one untyped packet and classifies it. Lengths outside `MIN_PACKET..=max_len`, unknown
/// request codes, protocol versions other than 3 and malformed parameter lists are errors.
pub async fn read_first_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
) -> Result<FirstPacket, ProxyError> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head[..4]).await?;
    if head[0] == TLS_HANDSHAKE {
        // As a length word this would be over 369 MB: no packet of ours starts so.
        return Ok(FirstPacket::DirectTls(head[..4].to_vec()));
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len < MIN_PACKET {
        return Err(ProxyError::BadStartup("packet shorter than 8 bytes"));
    }
    if len > max_len.max(12 + CANCEL_SECRET_MAX) {
        return Err(ProxyError::BadStartup("startup packet too long"));
    }
    r.read_exact(&mut head[4..8]).await?;
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    match code {
        SSL_REQUEST | GSSENC_REQUEST if len != 8 => {
            Err(ProxyError::BadStartup("bad request length"))
        }
        SSL_REQUEST => Ok(FirstPacket::Ssl),
        GSSENC_REQUEST => Ok(FirstPacket::GssEnc),
        CANCEL_REQUEST => {
            if !(12 + CANCEL_SECRET_MIN..=12 + CANCEL_SECRET_MAX).contains(&len) {
                return Err(ProxyError::BadStartup("bad cancel request length"));
            }
            let mut k = vec![0u8; len - 8];
            r.read_exact(&mut k).await?;
            let pid = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            let key = CancelKey::new(pid, &k[4..]).expect("length checked");
            Ok(FirstPacket::Cancel(key))
        }
        v if v >> 16 == PROTOCOL_MAJOR_3 && len > max_len => {
            Err(ProxyError::BadStartup("startup packet too long"))
        }
        v if v >> 16 == PROTOCOL_MAJOR_3 => {
            let mut raw = vec![0u8; len];
            raw[..8].copy_from_slice(&head);
            r.read_exact(&mut raw[8..]).await?;
            validate_params(&raw[8..])?;
            Ok(FirstPacket::Startup(StartupPacket { raw }))
        }
        _ => Err(ProxyError::BadStartup("unsupported protocol version")),
    }
}

/// Parameters are NUL-terminated name/value pairs ending with one extra NUL; `user` is required;
/// no name may come twice (PostgreSQL would use the last value, [`StartupPacket::param`] reads
/// the first: the proxy could authenticate one user while PostgreSQL logs in another).
fn validate_params(body: &[u8]) -> Result<(), ProxyError> {
    if body.last() != Some(&0) {
        return Err(ProxyError::BadStartup("parameters not terminated"));
    }
    let mut rest = &body[..body.len() - 1];
    let mut has_user = false;
    let mut seen = std::collections::HashSet::new();
    while !rest.is_empty() {
        let k_end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(ProxyError::BadStartup("bad name"))?;
        let (k, after) = (&rest[..k_end], &rest[k_end + 1..]);
        let v_end = after
            .iter()
            .position(|b| *b == 0)
            .ok_or(ProxyError::BadStartup("bad value"))?;
        if k.is_empty() {
            return Err(ProxyError::BadStartup("empty parameter name"));
        }
        if !seen.insert(k) {
            return Err(ProxyError::BadStartup(
                "a startup parameter given more than once",
            ));
        }
        has_user |= k == b"user";
        rest = &after[v_end + 1..];
    }
    if has_user {
        Ok(())
    } else {
        Err(ProxyError::BadStartup("no user parameter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
        for (k, v) in params {
            p.extend_from_slice(k.as_bytes());
            p.push(0);
            p.extend_from_slice(v.as_bytes());
            p.push(0);
        }
        p.push(0);
        let len = p.len() as u32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    async fn read(bytes: &[u8]) -> Result<FirstPacket, ProxyError> {
        read_first_packet(&mut &bytes[..], 10_000).await
    }

    #[tokio::test]
    async fn classifies_packets() {
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(read(&ssl).await.unwrap(), FirstPacket::Ssl);
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(read(&gss).await.unwrap(), FirstPacket::GssEnc);
        let key = CancelKey::v3_0(42, 7);
        assert_eq!(key.request().len(), 16);
        assert_eq!(
            read(&key.request()).await.unwrap(),
            FirstPacket::Cancel(key)
        );
        // Protocol 3.2: PostgreSQL 18 sends 32-byte secrets; up to 256 are allowed.
        for n in [32, 256] {
            let secret: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let key = CancelKey::new(0x0102_0304, &secret).unwrap();
            let p = key.request();
            assert_eq!(p.len(), 12 + n);
            assert_eq!(read(&p).await.unwrap(), FirstPacket::Cancel(key));
        }
        // Small max_startup_packet settings do not shorten cancel requests.
        let long = CancelKey::new(1, &[9; 256]).unwrap();
        let p = long.request();
        assert_eq!(
            read_first_packet(&mut &p[..], 100).await.unwrap(),
            FirstPacket::Cancel(long)
        );
        // A TLS ClientHello record (direct TLS): recognised from its first 4 bytes.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        assert_eq!(
            read(&hello).await.unwrap(),
            FirstPacket::DirectTls(hello[..4].to_vec())
        );
        let s = startup(&[("user", "u"), ("database", "d")]);
        match read(&s).await.unwrap() {
            FirstPacket::Startup(p) => {
                assert_eq!(p.param("database"), Some(&b"d"[..]));
                let q = p.with_default("default_transaction_read_only", "on");
                assert_eq!(q.param("default_transaction_read_only"), Some(&b"on"[..]));
                assert_eq!(q.param("user"), Some(&b"u"[..]));
                assert_eq!(q.with_default("user", "x"), q);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn rejects_bad_packets() {
        assert!(read(&[0, 0, 0, 4]).await.is_err());
        assert!(read(&[0, 1, 0, 0, 0, 3, 0, 0]).await.is_err());
        assert!(read(&[0, 0, 0, 8, 0, 2, 0, 0]).await.is_err());
        // Cancel requests with a secret shorter than 4 or longer than 256 bytes.
        for n in [0, 3, 257] {
            let mut p = CancelKey::v3_0(1, 2).request();
            p.truncate(12);
            p.extend(std::iter::repeat_n(1u8, n));
            let len = (p.len() as u32).to_be_bytes();
            p[..4].copy_from_slice(&len);
            assert!(read(&p).await.is_err(), "secret of {n} bytes");
        }
        assert!(CancelKey::new(1, &[0; 3]).is_none());
        assert!(CancelKey::new(1, &[0; 257]).is_none());
        assert!(read(&startup(&[("database", "d")])).await.is_err());
        // A repeated parameter: the proxy would read the first, PostgreSQL uses the last.
        for params in [
            &[("user", "ghost"), ("database", "d"), ("user", "app")][..],
            &[("user", "app"), ("options", "a"), ("options", "b")],
        ] {
            let e = read(&startup(params)).await.unwrap_err();
            assert!(e.to_string().contains("more than once"), "{e}");
        }
        let mut s = startup(&[("user", "u")]);
        let n = s.len();
        s[n - 1] = b'x';
        assert!(read(&s).await.is_err());
        assert!(read(&s[..5]).await.is_err());
    }
}
