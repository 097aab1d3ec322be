//! The backend's answer to a startup, read as it is relayed: the session's cancel key
//! (BackendKeyData) and whether the server is in recovery (`in_hot_standby`), up to
//! ReadyForQuery.
//!
//! PostgreSQL 14 and newer report `in_hot_standby` in a ParameterStatus message before
//! ReadyForQuery. A read-write session whose backend says `on` reached a standby: the primary
//! the proxy routed by was demoted since it was last confirmed. A read-only session routed to
//! a standby whose backend says `off` reached a primary: that standby was promoted since. Both
//! are refused there (see `session.rs`), whatever the routing believed (I2).

use crate::startup::CancelKey;
use crate::wire::{CANCEL_SECRET_MAX, CANCEL_SECRET_MIN};

/// Backend bytes scanned at most before giving up (no ReadyForQuery seen).
const SCAN_LIMIT: usize = 256 * 1024;

/// The ParameterStatus messages the scanner keeps, name and value NUL-terminated as on the wire.
const HOT_STANDBY_ON: &[u8] = b"in_hot_standby\0on\0";
const HOT_STANDBY_OFF: &[u8] = b"in_hot_standby\0off\0";

/// Incremental scanner of backend→client bytes up to ReadyForQuery.
#[derive(Debug, Default)]
pub struct StartupScanner {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
    /// Inside a message whose body is kept (BackendKeyData, a short ParameterStatus): its
    /// type and the body so far.
    kept: Option<(u8, Vec<u8>)>,
    key: Option<CancelKey>,
    /// `in_hot_standby` as reported (`None`: not reported, before PostgreSQL 14).
    hot_standby: Option<bool>,
    scanned: usize,
    done: bool,
}

impl StartupScanner {
    /// Feeds the next bytes; returns true once scanning is over (ReadyForQuery, or gave up).
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        self.scanned += data.len();
        while !self.done && !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                if let Some((_, body)) = &mut self.kept {
                    body.extend_from_slice(&data[..n]);
                }
                self.body_left -= n;
                data = &data[n..];
                if self.body_left == 0 {
                    self.message_done();
                }
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.message_begins();
            }
        }
        if self.scanned > SCAN_LIMIT {
            self.done = true;
        }
        self.done
    }

    fn message_begins(&mut self) {
        let h = self.header;
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if h[0] == b'Z' || len < 4 {
            self.done = true;
            return;
        }
        self.body_left = len - 4;
        // BackendKeyData: length word, pid, then the secret (4..=256 bytes).
        let key_len = 8 + CANCEL_SECRET_MIN..=8 + CANCEL_SECRET_MAX;
        let keep = match h[0] {
            b'K' => key_len.contains(&len),
            b'S' => [HOT_STANDBY_ON.len(), HOT_STANDBY_OFF.len()].contains(&(len - 4)),
            _ => false,
        };
        self.kept = keep.then(|| (h[0], Vec::with_capacity(len - 4)));
        if self.body_left == 0 {
            self.message_done();
        }
    }

    fn message_done(&mut self) {
        match self.kept.take() {
            Some((b'K', k)) => {
                let pid = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                self.key = CancelKey::new(pid, &k[4..]);
            }
            Some((b'S', body)) if body == HOT_STANDBY_ON => self.hot_standby = Some(true),
            Some((b'S', body)) if body == HOT_STANDBY_OFF => self.hot_standby = Some(false),
            _ => {}
        }
    }

    /// The key found, if any.
    pub fn key(&self) -> Option<CancelKey> {
        self.key.clone()
    }

    /// The backend reported `in_hot_standby = on`: it is a standby.
    pub fn in_recovery(&self) -> bool {
        self.hot_standby == Some(true)
    }

    /// The backend reported `in_hot_standby = off`: it is a primary.
    pub fn out_of_recovery(&self) -> bool {
        self.hot_standby == Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A startup answer: AuthenticationOk, [NegotiateProtocolVersion,] ParameterStatus,
    /// BackendKeyData with `secret`, ReadyForQuery.
    fn startup_answer(secret: &[u8], negotiate: bool) -> Vec<u8> {
        let mut stream = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
        if negotiate {
            stream.extend_from_slice(&[b'v', 0, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 0]);
        }
        stream.extend_from_slice(&[b'S', 0, 0, 0, 9, b'a', 0, b'b', 0, 0]);
        stream.push(b'K');
        stream.extend_from_slice(&(8 + secret.len() as u32).to_be_bytes());
        stream.extend_from_slice(&[0, 0, 1, 2]);
        stream.extend_from_slice(secret);
        stream.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        stream
    }

    #[test]
    fn scanner_finds_key_across_splits() {
        let long: Vec<u8> = (0..32).collect();
        let cases: [(&[u8], bool); 3] = [
            (&[0xde, 0xad, 0xbe, 0xef], false),
            (&long, true),
            (&[7; 256], false),
        ];
        for (secret, negotiate) in cases {
            let stream = startup_answer(secret, negotiate);
            for chunk in 1..stream.len() {
                let mut s = StartupScanner::default();
                let mut done = false;
                for piece in stream.chunks(chunk) {
                    done = s.feed(piece);
                }
                assert!(done, "chunk {chunk}");
                assert_eq!(s.key(), CancelKey::new(258, secret), "chunk {chunk}");
            }
        }
        // A BackendKeyData whose secret is out of bounds yields no key (but scanning ends).
        for secret in [&[1u8; 3][..], &[1u8; 257][..]] {
            let mut s = StartupScanner::default();
            assert!(s.feed(&startup_answer(secret, false)));
            assert_eq!(s.key(), None);
        }
    }

    /// `in_hot_standby` found across any split, `off` read as it is, other parameters ignored.
    #[test]
    fn scanner_reads_in_hot_standby() {
        let status = |name: &str, value: &str| {
            let body = format!("{name}\0{value}\0");
            let mut m = vec![b'S'];
            m.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
            m.extend_from_slice(body.as_bytes());
            m
        };
        for (value, standby) in [("on", true), ("off", false)] {
            let mut stream = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
            stream.extend(status("server_version", "15.14"));
            stream.extend(status("in_hot_standby", value));
            stream.extend(status("integer_datetimes", "on"));
            stream.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
            for chunk in 1..stream.len() {
                let mut s = StartupScanner::default();
                let done = stream.chunks(chunk).fold(false, |_, piece| s.feed(piece));
                assert!(done, "chunk {chunk}");
                assert_eq!(s.in_recovery(), standby, "{value}, chunk {chunk}");
                assert_eq!(s.out_of_recovery(), !standby, "{value}, chunk {chunk}");
            }
        }
    }
}
