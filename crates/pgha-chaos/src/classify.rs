//! What a client saw when a statement or connection failed: refused, reset, timed out, or
//! the server's SQLSTATE.

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
            return classify_io(io.kind());
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
