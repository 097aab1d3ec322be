//! The byte pump between a client and its backend once routing is done.
//!
//! One task drives both directions (no extra wake-ups between them). Idle sessions own no
//! buffer: a direction borrows one from a per-thread pool only for the read and gives it back as
//! soon as the write completed, so 2 000 idle sessions cost sockets and a small state each. A
//! short read clears tokio's readiness, so one round trip costs one `read` and one `write` per
//! direction and no extra `EAGAIN` read. Bytes are counted per read into the listener's counters.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size of one relay buffer.
pub const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse.
const POOL_CAP: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_buf(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_CAP {
            p.push(buf);
        }
    });
}

/// State of one direction.
#[derive(Default)]
struct Dir {
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    eof: bool,
    done: bool,
}

impl Dir {
    fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        counter: &AtomicU64,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if let Some(buf) = &self.buf {
                while self.pos < self.end {
                    let n = ready!(w.as_mut().poll_write(cx, &buf[self.pos..self.end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pos += n;
                }
                give_buf(self.buf.take().expect("buffer present"));
            }
            if self.eof {
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut buf = take_buf();
            let mut rb = ReadBuf::new(&mut buf);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
                    give_buf(buf);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    give_buf(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.eof = true;
                        give_buf(buf);
                    } else {
                        counter.fetch_add(n as u64, Relaxed);
                        self.pos = 0;
                        self.end = n;
                        self.buf = Some(buf);
                    }
                }
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            give_buf(b);
        }
    }
}

/// Copies client→backend and backend→client until both sides closed or one failed.
pub struct Splice<'a, C: ?Sized, B: ?Sized> {
    client: &'a mut C,
    backend: &'a mut B,
    up: Dir,
    down: Dir,
    bytes_in: &'a AtomicU64,
    bytes_out: &'a AtomicU64,
}

/// Relays bytes both ways; `bytes_in` counts client→backend, `bytes_out` backend→client.
pub fn splice<'a, C, B>(
    client: &'a mut C,
    backend: &'a mut B,
    bytes_in: &'a AtomicU64,
    bytes_out: &'a AtomicU64,
) -> Splice<'a, C, B>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Splice {
        client,
        backend,
        up: Dir::default(),
        down: Dir::default(),
        bytes_in,
        bytes_out,
    }
}

impl<C, B> Future for Splice<'_, C, B>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.up.done {
            let (c, b) = (Pin::new(&mut *this.client), Pin::new(&mut *this.backend));
            if let Poll::Ready(Err(e)) = this.up.poll_pump(cx, c, b, this.bytes_in) {
                return Poll::Ready(Err(e));
            }
        }
        if !this.down.done {
            let (b, c) = (Pin::new(&mut *this.backend), Pin::new(&mut *this.client));
            if let Poll::Ready(Err(e)) = this.down.poll_pump(cx, b, c, this.bytes_out) {
                return Poll::Ready(Err(e));
            }
        }
        if this.up.done && this.down.done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relays_both_ways_and_counts() {
        let (mut client_end, mut proxy_client) = tokio::io::duplex(64);
        let (mut proxy_backend, mut backend_end) = tokio::io::duplex(64);
        let (i, o) = (AtomicU64::new(0), AtomicU64::new(0));
        let pump = splice(&mut proxy_client, &mut proxy_backend, &i, &o);
        let talk = async {
            let big = vec![7u8; 100_000];
            let mut got = vec![0u8; big.len()];
            let (w, r) = tokio::join!(client_end.write_all(&big), backend_end.read_exact(&mut got));
            w.unwrap();
            r.unwrap();
            assert_eq!(got, big);
            backend_end.write_all(b"pong").await.unwrap();
            let mut pong = [0u8; 4];
            client_end.read_exact(&mut pong).await.unwrap();
            assert_eq!(&pong, b"pong");
            client_end.shutdown().await.unwrap();
            backend_end.shutdown().await.unwrap();
        };
        let (r, ()) = tokio::join!(pump, talk);
        r.unwrap();
        assert_eq!(i.load(Relaxed), 100_000);
        assert_eq!(o.load(Relaxed), 4);
    }
}
