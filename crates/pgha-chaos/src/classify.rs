//! What a client saw when a statement or connection failed: refused, reset, timed out, no
//! writable host, or the server's SQLSTATE.

use serde::{Deserialize, Serialize};

/// A client error's class, as the report counts them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Nothing listened (connection refused).
    Refused,
    /// The connection broke: reset, closed, end of stream.
    Reset,
    /// No answer within the client's bound.
    TimedOut,
    /// A multi-host target (`target_session_attrs=read-write`) found every member that
    /// answered read-only: no primary at that moment (tokio-postgres says it with an I/O
    /// error of kind `PermissionDenied` that no system call raised).
    NoWritableHost,
    /// The server answered with an error: its SQLSTATE.
    Sqlstate(String),
    /// Anything else (TLS, authentication, protocol), as tokio-postgres words it.
    Other(String),
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorClass::Refused => f.write_str("refused"),
            ErrorClass::Reset => f.write_str("reset"),
            ErrorClass::TimedOut => f.write_str("timed out"),
            ErrorClass::NoWritableHost => f.write_str("no writable host"),
            ErrorClass::Sqlstate(code) => write!(f, "SQLSTATE {code}"),
            ErrorClass::Other(what) => write!(f, "other: {what}"),
        }
    }
}

/// The class of a tokio-postgres error.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    if let Some(code) = e.code() {
        return ErrorClass::Sqlstate(code.code().to_string());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io_error(io);
        }
        source = s.source();
    }
    if e.is_closed() {
        return ErrorClass::Reset;
    }
    let text = e.to_string();
    if text.contains("timed out") || text.contains("timeout") {
        return ErrorClass::TimedOut;
    }
    // "error communicating with the server: ..." without an io source, "db error", ...
    ErrorClass::Other(text.split(':').next().unwrap_or(&text).trim().to_string())
}

/// The class of an I/O error under a tokio-postgres error: one of kind `PermissionDenied`
/// that carries no OS error code is tokio-postgres's own "database does not allow writes"
/// (a real EPERM, e.g. from a firewall's rule dropping what this host sends, has its code).
pub fn classify_io_error(io: &std::io::Error) -> ErrorClass {
    if io.kind() == std::io::ErrorKind::PermissionDenied && io.raw_os_error().is_none() {
        return ErrorClass::NoWritableHost;
    }
    classify_io(io.kind())
}

/// The class of an I/O error kind.
pub fn classify_io(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused => ErrorClass::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
            ErrorClass::Reset
        }
        TimedOut | WouldBlock => ErrorClass::TimedOut,
        other => ErrorClass::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_classes() {
        use std::io::ErrorKind;
        assert_eq!(
            classify_io(ErrorKind::ConnectionRefused),
            ErrorClass::Refused
        );
        assert_eq!(classify_io(ErrorKind::UnexpectedEof), ErrorClass::Reset);
        assert_eq!(classify_io(ErrorKind::TimedOut), ErrorClass::TimedOut);
        assert_eq!(
            classify_io(ErrorKind::PermissionDenied),
            ErrorClass::Other("PermissionDenied".into())
        );
        assert_eq!(
            ErrorClass::Sqlstate("57P01".into()).to_string(),
            "SQLSTATE 57P01"
        );
    }

    /// Found by the distributed campaigns: 308 connection errors of the multi-host writers
    /// counted as "other: PermissionDenied", an EPERM nobody could explain, were every member
    /// answering read-only while the primary moved.
    #[test]
    fn a_read_only_answer_is_told_from_an_operating_systems_refusal() {
        use std::io::{Error, ErrorKind};
        let not_writable = Error::new(
            ErrorKind::PermissionDenied,
            "database does not allow writes",
        );
        assert_eq!(classify_io_error(&not_writable), ErrorClass::NoWritableHost);
        assert_eq!(
            classify_io_error(&Error::from_raw_os_error(EPERM)),
            ErrorClass::Other("PermissionDenied".into())
        );
        assert_eq!(ErrorClass::NoWritableHost.to_string(), "no writable host");
    }

    /// EPERM on Linux.
    const EPERM: i32 = 1;

    /// tokio-postgres itself, against a server that answers `transaction_read_only = on` (a
    /// standby), with `target_session_attrs=read-write`: its error classifies as no writable
    /// host.
    #[tokio::test]
    async fn tokio_postgres_finding_only_a_read_only_server_is_no_writable_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_only_server(&mut socket).await;
        });
        let e = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={port} user=x connect_timeout=5 \
                 target_session_attrs=read-write"
            ),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("a read-only server refused");
        assert_eq!(classify(&e), ErrorClass::NoWritableHost, "{e:?}");
    }

    /// Accepts any startup without a password and answers every query with one row, `on`.
    async fn read_only_server(socket: &mut tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let len = socket.read_u32().await.unwrap() as usize;
        let mut startup = vec![0; len - 4];
        socket.read_exact(&mut startup).await.unwrap();
        let message = |tag: u8, body: &[u8]| {
            let mut m = vec![tag];
            m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            m.extend_from_slice(body);
            m
        };
        let ready = message(b'Z', b"I");
        let mut hello = message(b'R', &0u32.to_be_bytes()); // AuthenticationOk
        hello.extend(&ready);
        socket.write_all(&hello).await.unwrap();
        loop {
            let Ok(tag) = socket.read_u8().await else {
                return;
            };
            let len = socket.read_u32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            socket.read_exact(&mut body).await.unwrap();
            if tag != b'Q' {
                return;
            }
            // RowDescription: one text column.
            let mut field = b"transaction_read_only\0".to_vec();
            field.extend_from_slice(&0u32.to_be_bytes()); // table oid
            field.extend_from_slice(&0u16.to_be_bytes()); // column
            field.extend_from_slice(&25u32.to_be_bytes()); // text
            field.extend_from_slice(&(-1i16).to_be_bytes());
            field.extend_from_slice(&(-1i32).to_be_bytes());
            field.extend_from_slice(&0u16.to_be_bytes()); // text format
            let mut description = 1u16.to_be_bytes().to_vec();
            description.extend(field);
            let mut row = 1u16.to_be_bytes().to_vec();
            row.extend_from_slice(&2u32.to_be_bytes());
            row.extend_from_slice(b"on");
            let mut answer = message(b'T', &description);
            answer.extend(message(b'D', &row));
            answer.extend(message(b'C', b"SHOW\0"));
            answer.extend(&ready);
            socket.write_all(&answer).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=x connect_timeout=2"),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens");
        assert_eq!(classify(&e), ErrorClass::Refused);
    }
}
