//! PostgreSQL wire-protocol constants and the ErrorResponse messages the proxy itself sends.

/// Request code of an SSLRequest packet.
pub const SSL_REQUEST: u32 = 80_877_103;
/// Request code of a GSSENCRequest packet.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// Request code of a CancelRequest packet.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// First byte of a TLS handshake record: a client using direct TLS negotiation
/// (`sslnegotiation=direct`, PostgreSQL 17+) starts with it instead of an SSLRequest.
pub const TLS_HANDSHAKE: u8 = 0x16;
/// Shortest cancel secret key (protocol 3.0's, 4 bytes).
pub const CANCEL_SECRET_MIN: usize = 4;
/// Longest cancel secret key protocol 3.2 allows (PostgreSQL 18 itself sends 32 bytes).
pub const CANCEL_SECRET_MAX: usize = 256;
/// Major protocol version 3 (the only one accepted), as in the high 16 bits of the version.
pub const PROTOCOL_MAJOR_3: u32 = 3;

/// SQLSTATE sent when no target was available within `hold_timeout`: `cannot_connect_now`, the
/// code PostgreSQL itself uses while starting up or in recovery, which drivers and poolers
/// understand as "transient, retry shortly".
pub const SQLSTATE_NO_TARGET: &str = "57P03";
/// SQLSTATE sent when `max_client_conn` is reached (`too_many_connections`).
pub const SQLSTATE_TOO_MANY: &str = "53300";
/// SQLSTATE sent for a malformed startup sequence (`protocol_violation`).
pub const SQLSTATE_PROTOCOL: &str = "08P01";
/// SQLSTATE sent to held clients when the proxy shuts down (`admin_shutdown`).
pub const SQLSTATE_SHUTDOWN: &str = "57P01";
/// SQLSTATE sent to a client refused for how it connects (`invalid_authorization_specification`,
/// PostgreSQL's for a connection no pg_hba.conf line allows).
pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";
/// SQLSTATE sent when a backend refused the connection (`connection_failure`).
pub const SQLSTATE_CONNECTION_FAILURE: &str = "08006";

/// Encodes an ErrorResponse ('E') with severity FATAL, the given SQLSTATE and message.
pub fn fatal(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + message.len());
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate),
        (b'M', message),
    ] {
        body.push(tag);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = Vec::with_capacity(body.len() + 5);
    msg.push(b'E');
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_framed() {
        let m = fatal("57P03", "no primary");
        assert_eq!(m[0], b'E');
        let len = u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize;
        assert_eq!(len + 1, m.len());
        assert_eq!(*m.last().unwrap(), 0);
        assert!(m.windows(6).any(|w| w == b"C57P03"));
    }
}
