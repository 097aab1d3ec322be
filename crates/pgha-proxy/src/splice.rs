//! The byte pump between a client and its backend once routing is done.
//!
//! One task drives both directions (no extra wake-ups between them). Idle sessions own no
//! buffer: a direction borrows one from a per-thread pool only for the read and gives it back as
//! soon as the write completed, so 2 000 idle sessions cost sockets and a small state each. A
//! short read clears tokio's readiness, so one round trip costs one `read` and one `write` per
//! direction and no extra `EAGAIN` read. Bytes are counted per read into the listener's counters.
//! An optional idle bound ends the splice when no byte moved for that long; its one timer is
//! re-armed only when it fires, not on every read.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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
    /// Bytes were read since the idle bound last looked.
    moved: bool,
    /// Written, not flushed yet: a TLS stream may keep a record it could not send in its own
    /// buffer, and only a flush sends it once the socket takes it.
    unflushed: bool,
}

/// The error (inside an `io::Error` of kind `TimedOut`) with which a splice ends when no byte
/// moved for its idle bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no data either way for {0:?}")]
pub struct IdleElapsed(pub Duration);

impl IdleElapsed {
    /// The idle bound that ended a splice, if that is what `e` says.
    pub fn of(e: &io::Error) -> Option<IdleElapsed> {
        e.get_ref()?.downcast_ref::<IdleElapsed>().copied()
    }
}

/// The idle bound of a splice: the timer and when bytes last moved.
struct Idle {
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    last: Instant,
}

impl Idle {
    /// Ready with an error once `limit` passed since `last`; otherwise re-arms the timer.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last + self.limit;
            if due <= Instant::now() {
                let elapsed = IdleElapsed(self.limit);
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, elapsed));
            }
            self.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
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
                self.unflushed = true;
            }
            if self.unflushed {
                // Before waiting for more to read: what was written must reach the peer even
                // if nothing more comes (the last rows and ReadyForQuery after a cancel).
                ready!(w.as_mut().poll_flush(cx))?;
                self.unflushed = false;
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
                        self.moved = true;
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
    idle: Option<Idle>,
}

impl<C: ?Sized, B: ?Sized> Splice<'_, C, B> {
    /// Ends the splice with an `io::Error` carrying [`IdleElapsed`] once no byte was read from
    /// either side for `limit`; `None`: no bound.
    pub fn idle_timeout(mut self, limit: Option<Duration>) -> Self {
        self.idle = limit.map(|limit| Idle {
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            last: Instant::now(),
        });
        self
    }
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
        idle: None,
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
            return Poll::Ready(Ok(()));
        }
        if let Some(idle) = &mut this.idle {
            if std::mem::take(&mut this.up.moved) | std::mem::take(&mut this.down.moved) {
                idle.last = Instant::now();
            }
            if let Poll::Ready(e) = idle.poll_elapsed(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A writer that, like a TLS stream whose socket was full, keeps what it is given until
    /// it is flushed.
    struct HoldsUntilFlush {
        held: Vec<u8>,
        inner: tokio::io::DuplexStream,
    }

    impl AsyncWrite for HoldsUntilFlush {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            while !this.held.is_empty() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
                this.held.drain(..n);
            }
            Pin::new(&mut this.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            ready!(self.as_mut().poll_flush(cx))?;
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    impl AsyncRead for HoldsUntilFlush {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    /// Found by the TLS cancel test (a COPY cancelled through a terminating proxy hung now
    /// and then): the last bytes the backend sent, with nothing after them, must reach the
    /// client even when its stream holds them until a flush.
    #[tokio::test]
    async fn what_a_stream_holds_is_flushed_before_waiting_to_read() {
        let (mut client_end, proxy_client) = tokio::io::duplex(64);
        let mut proxy_client = HoldsUntilFlush {
            held: Vec::new(),
            inner: proxy_client,
        };
        let (mut proxy_backend, mut backend_end) = tokio::io::duplex(64);
        let (i, o) = (AtomicU64::new(0), AtomicU64::new(0));
        let pump = splice(&mut proxy_client, &mut proxy_backend, &i, &o);
        let talk = async {
            backend_end.write_all(b"ReadyForQuery").await.unwrap();
            let mut got = [0u8; 13];
            let read = client_end.read_exact(&mut got);
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .expect("the last bytes stayed in the proxy")
                .unwrap();
            assert_eq!(&got, b"ReadyForQuery");
        };
        tokio::select! {
            _ = pump => panic!("the splice ended"),
            () = talk => {}
        }
    }

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
