//! A TCP forwarder the test can slow down (every byte delivered late, by a delay it changes at
//! any moment: a slow link or server where the kernel has no `netem`) or sever and heal.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

/// The delay of each chunk read, drawn anew for each one between `least` and `most` (both
/// ways alike). Bytes keep their order: a chunk never overtakes the one read before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub least: Duration,
    pub most: Duration,
}

impl Latency {
    pub const NONE: Latency = Latency::fixed(Duration::ZERO);

    pub const fn fixed(delay: Duration) -> Latency {
        Latency {
            least: delay,
            most: delay,
        }
    }
}

/// What the forwarding threads share: the latency in force, whether the link is severed or
/// stopped, and every connection's sockets (shut down when it is severed or dropped).
struct Shared {
    least_us: AtomicU64,
    most_us: AtomicU64,
    severed: AtomicBool,
    stopped: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn draw(&self) -> Duration {
        let least = self.least_us.load(Ordering::Relaxed);
        let most = self.most_us.load(Ordering::Relaxed).max(least);
        Duration::from_micros(rand::thread_rng().gen_range(least..=most))
    }
}

/// Listens on an address of its own and forwards each connection to `target`, every chunk
/// delivered [`Latency`] after it was read. Connections are made from the thread that called
/// [`TcpLink::start`] (its network namespace included). Dropping it ends every connection.
pub struct TcpLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TcpLink {
    /// Binds `listen` (port 0 for any) and starts forwarding with no delay.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<TcpLink> {
        let listener = bind_nonblocking(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            least_us: AtomicU64::new(0),
            most_us: AtomicU64::new(0),
            severed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name(format!("link {addr}"))
            .spawn(move || accept_loop(listener, addr, target, accepting))?;
        Ok(TcpLink { addr, shared })
    }

    /// Cuts the link: every connection through it is closed, and new ones are refused (the
    /// listening socket is closed: a connect gets ECONNREFUSED) until [`TcpLink::heal`].
    pub fn sever(&self) {
        self.shared.severed.store(true, Ordering::SeqCst);
        self.shared.close_all();
        // the accept loop drops the listener within a few milliseconds
        std::thread::sleep(Duration::from_millis(30));
    }

    /// Listens again after [`TcpLink::sever`].
    pub fn heal(&self) {
        self.shared.severed.store(false, Ordering::SeqCst);
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The latency from now on (chunks already read keep theirs).
    pub fn set(&self, latency: Latency) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.shared
            .least_us
            .store(us(latency.least), Ordering::Relaxed);
        self.shared
            .most_us
            .store(us(latency.most), Ordering::Relaxed);
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.close_all();
    }
}

impl Shared {
    fn close_all(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn bind_nonblocking(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts while the link is up; severed, it closes its listening socket, and binds `addr`
/// again once healed.
fn accept_loop(listener: TcpListener, addr: SocketAddr, target: SocketAddr, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stopped.load(Ordering::SeqCst) {
        if shared.severed.load(Ordering::SeqCst) {
            listener = None;
        } else if listener.is_none() {
            listener = bind_nonblocking(addr).ok();
        }
        let accepted = listener.as_ref().map(TcpListener::accept);
        let Some(Ok((client, _))) = accepted else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = client.set_nonblocking(false);
        // an upstream that is down: the client sees its connection closed
        if let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            forward(client, server, &shared);
        }
    }
}

/// Two delayed directions between `client` and `server`.
fn forward(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_out), Ok(server_out)) = clones else {
        return;
    };
    {
        let mut sockets = shared.sockets.lock().unwrap();
        if shared.severed.load(Ordering::SeqCst) {
            return;
        }
        for s in [&client, &server] {
            if let Ok(s) = s.try_clone() {
                sockets.push(s);
            }
        }
    }
    one_way(client, server_out, shared.clone());
    one_way(server, client_out, shared.clone());
}

/// A chunk read, and when it is due at the other end (`None`: the reading side ended).
type Due = (Instant, Option<Vec<u8>>);

/// Reads `from` on one thread and writes to `to` on another, each chunk when it is due.
fn one_way(from: TcpStream, to: TcpStream, shared: Arc<Shared>) {
    let (tx, rx) = channel::<Due>();
    std::thread::spawn(move || read_side(from, tx, shared));
    std::thread::spawn(move || write_side(to, rx));
}

fn read_side(mut from: TcpStream, tx: Sender<Due>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        // never before the chunk read earlier: TCP keeps the order
        let due = (Instant::now() + shared.draw()).max(last_due);
        last_due = due;
        let chunk = (n > 0).then(|| buf[..n].to_vec());
        if tx.send((due, chunk)).is_err() || n == 0 {
            return;
        }
    }
}

fn write_side(mut to: TcpStream, rx: Receiver<Due>) {
    while let Ok((due, chunk)) = rx.recv() {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let Some(chunk) = chunk else {
            let _ = to.shutdown(Shutdown::Write);
            return;
        };
        if to.write_all(&chunk).is_err() {
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the link: a round trip takes twice the delay, and none once the
    /// delay is taken away, on the same connection.
    #[test]
    fn a_round_trip_takes_twice_the_delay_set() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        let link = TcpLink::start("127.0.0.1:0".parse().unwrap(), echo_addr).unwrap();
        let mut s = TcpStream::connect(link.addr()).unwrap();
        let round_trip = |s: &mut TcpStream, text: &[u8]| {
            let started = Instant::now();
            s.write_all(text).unwrap();
            let mut got = vec![0u8; text.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, text);
            started.elapsed()
        };
        assert!(round_trip(&mut s, b"hello") < Duration::from_millis(100));
        link.set(Latency::fixed(Duration::from_millis(150)));
        let slow = round_trip(&mut s, b"slow");
        assert!(slow >= Duration::from_millis(300), "{slow:?}");
        assert!(slow < Duration::from_millis(600), "{slow:?}");
        link.set(Latency::NONE);
        assert!(round_trip(&mut s, b"fast again") < Duration::from_millis(100));
        drop(link);
        let mut buf = [0u8; 8];
        assert_eq!(
            s.read(&mut buf).unwrap_or(0),
            0,
            "the link ended the connection"
        );
    }

    /// Severed, it closes what runs through it and refuses new connections; healed, it
    /// forwards again on the same address.
    #[test]
    fn a_severed_link_refuses_until_healed() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in upstream.incoming() {
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let link = TcpLink::start("127.0.0.1:0".parse().unwrap(), upstream_addr).unwrap();
        let echo = |s: &mut TcpStream| {
            s.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
        };
        let mut before = TcpStream::connect(link.addr()).unwrap();
        echo(&mut before);
        link.sever();
        let mut buf = [0u8; 4];
        assert_eq!(before.read(&mut buf).unwrap_or(0), 0, "closed by the cut");
        let refused = TcpStream::connect(link.addr()).map(|_| ()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        link.heal();
        let mut after = crate::poll(Duration::from_secs(2), Duration::from_millis(10), || {
            TcpStream::connect(link.addr()).ok()
        })
        .expect("listening again");
        echo(&mut after);
    }
}
