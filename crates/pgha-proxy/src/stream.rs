//! Byte streams of a terminated session: a client socket with bytes already read put back in
//! front, and a backend connection in plaintext or TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::binding::tls_server_end_point;

/// `inner`, whose first bytes read are `prefix` (what the proxy read before deciding that
/// the client starts a TLS handshake).
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A session's backend connection: plaintext, or TLS verified against the cluster CA.
pub(crate) enum BackendConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl BackendConn {
    /// SCRAM channel binding data of the member's certificate (TLS only).
    pub(crate) fn binding(&self) -> Option<Vec<u8>> {
        match self {
            BackendConn::Plain(_) => None,
            BackendConn::Tls(s) => {
                let cert = s.get_ref().1.peer_certificates()?.first()?;
                tls_server_end_point(cert)
            }
        }
    }
}

impl AsyncRead for BackendConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn prefix_comes_first_then_the_stream() {
        let rest: &[u8] = b"cdef";
        let mut s = Prefixed::new(b"ab".to_vec(), rest);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcdef");
        let mut one = [0u8; 1];
        let mut s = Prefixed::new(b"xy".to_vec(), &b"z"[..]);
        for want in [b'x', b'y', b'z'] {
            s.read_exact(&mut one).await.unwrap();
            assert_eq!(one[0], want);
        }
    }
}
