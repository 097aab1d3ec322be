//! An HTTP/2 forwarder (gRPC, e.g. to etcd) that can hold calls back: one whose path and body
//! match is sent on only after a delay, or once the test releases it, whatever became of its
//! caller (its answer goes to the test, [`CallHold::held_answer`]), while every other call,
//! sent before or after on the same connection, passes at once. A request that lands late
//! although later ones did not: what a connection left behind (its caller timed out and moved
//! on) delivers when its link comes back.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{Request, Response};
use tokio::net::{TcpListener, TcpStream};

/// The calls to hold: their request path (`/etcdserverpb.KV/Txn`), bytes their body holds (a
/// key's name), and for how long.
#[derive(Clone, Debug)]
struct Rule {
    path: String,
    body_contains: Vec<u8>,
    hold: Hold,
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    /// The next call caught, for this long (the rule is then spent).
    NextFor(Duration),
    /// Every call caught, until the test releases it ([`CallHold::release_first`]).
    AllUntilReleased,
}

/// How one caught call waits before it is sent on.
enum Wait {
    For(Duration),
    UntilReleased(tokio::sync::oneshot::Receiver<()>),
}

impl Wait {
    /// Whether the call is to be sent on now (a call never released is not).
    async fn over(self) -> bool {
        match self {
            Wait::For(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            Wait::UntilReleased(released) => released.await.is_ok(),
        }
    }
}

/// What the forwarding tasks share with the test: the rule armed, when the first call it
/// caught arrived and was sent on and what the server answered it, and the calls still held
/// for the test to release, in the order they came.
#[derive(Default)]
struct Shared {
    rule: Option<Rule>,
    held_at: Option<Instant>,
    sent_on_at: Option<Instant>,
    /// What the server answered the call sent on: its `grpc-status` (0: done), or why none
    /// came.
    held_answer: Option<String>,
    waiting: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Listens on an address of its own and forwards each HTTP/2 connection to `target` (one
/// upstream connection for each), call by call. Connections are accepted and made from a
/// thread started by [`CallHold::start`] (in the caller's network namespace). Dropping it
/// stops accepting and forwarding: calls still held are never sent.
pub struct CallHold {
    addr: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    _runtime: tokio::runtime::Runtime,
}

impl CallHold {
    /// Binds `listen` (port 0 for any) and forwards every call to `target` at once.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<CallHold> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        runtime.spawn(accept_loop(listener, target, shared.clone()));
        Ok(CallHold {
            addr,
            shared,
            _runtime: runtime,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds the next call to `path` whose body contains `body_contains` for `delay`, then
    /// sends it on (once: the calls after it pass).
    pub fn hold_next(&self, path: &str, body_contains: &[u8], delay: Duration) {
        self.arm(path, body_contains, Hold::NextFor(delay));
    }

    /// Holds every call to `path` whose body contains `body_contains` from now on, each until
    /// [`CallHold::release_first`] sends it.
    pub fn hold_all(&self, path: &str, body_contains: &[u8]) {
        self.arm(path, body_contains, Hold::AllUntilReleased);
    }

    fn arm(&self, path: &str, body_contains: &[u8], hold: Hold) {
        let mut s = self.shared.0.lock().unwrap();
        s.rule = Some(Rule {
            path: path.to_string(),
            body_contains: body_contains.to_vec(),
            hold,
        });
        s.held_at = None;
        s.sent_on_at = None;
        s.held_answer = None;
    }

    /// Waits up to `timeout` for the rule armed to catch a call; when the first arrived.
    pub fn wait_held(&self, timeout: Duration) -> Option<Instant> {
        let (lock, cond) = &*self.shared;
        let s = lock.lock().unwrap();
        let (s, _) = cond
            .wait_timeout_while(s, timeout, |s| s.held_at.is_none())
            .unwrap();
        s.held_at
    }

    /// How many calls [`CallHold::hold_all`] holds now.
    pub fn held(&self) -> usize {
        self.shared.0.lock().unwrap().waiting.len()
    }

    /// Stops holding calls (those held stay held), and sends on the first call still held,
    /// if any; whether there was one.
    pub fn release_first(&self) -> bool {
        let mut s = self.shared.0.lock().unwrap();
        s.rule = None;
        if s.waiting.is_empty() {
            return false;
        }
        let first = s.waiting.remove(0);
        first.send(()).is_ok()
    }

    /// When the held call was sent on, if it was.
    pub fn sent_on(&self) -> Option<Instant> {
        self.shared.0.lock().unwrap().sent_on_at
    }

    /// What the server answered the held call sent on, once it has: `grpc-status N` (0: done),
    /// or why no answer came.
    pub fn held_answer(&self) -> Option<String> {
        self.shared.0.lock().unwrap().held_answer.clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(forward_connection(client, target, shared.clone()));
    }
}

/// One client connection: each of its calls forwarded on one upstream connection.
async fn forward_connection(
    client: TcpStream,
    target: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) -> Option<()> {
    let _ = client.set_nodelay(true);
    let upstream = TcpStream::connect(target).await.ok()?;
    let _ = upstream.set_nodelay(true);
    let (sender, upstream_conn) = h2::client::handshake(upstream).await.ok()?;
    tokio::spawn(upstream_conn);
    let mut server = h2::server::handshake(client).await.ok()?;
    while let Some(Ok((request, respond))) = server.accept().await {
        let sender = sender.clone();
        tokio::spawn(forward_call(request, respond, sender, shared.clone()));
    }
    Some(())
}

/// One call: held whole if the rule catches it, otherwise streamed both ways as it comes.
async fn forward_call(
    request: Request<RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    sender: h2::client::SendRequest<Bytes>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) -> Option<()> {
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let armed = shared.0.lock().unwrap().rule.clone();
    let head = Request::from_parts(parts, ());
    let Some(rule) = armed.filter(|r| r.path == path) else {
        return stream_call(head, body, respond, sender).await;
    };
    // A call on the held path: read it whole (a unary call, one message) to see whether the
    // rule catches it.
    let mut whole = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        whole.extend_from_slice(&chunk);
    }
    let caught = whole
        .windows(rule.body_contains.len().max(1))
        .any(|w| w == rule.body_contains.as_slice());
    if caught {
        let wait = {
            let (lock, cond) = &*shared;
            let mut s = lock.lock().unwrap();
            s.held_at.get_or_insert_with(Instant::now);
            cond.notify_all();
            match rule.hold {
                Hold::NextFor(delay) => {
                    s.rule = None;
                    Wait::For(delay)
                }
                Hold::AllUntilReleased => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    s.waiting.push(tx);
                    Wait::UntilReleased(rx)
                }
            }
        };
        // Sent on whatever became of the caller (it may have given up long before); a call
        // never released is never sent.
        if !wait.over().await {
            return None;
        }
        shared.0.lock().unwrap().sent_on_at = Some(Instant::now());
        let answered = match send_whole(head, Bytes::from(whole), sender).await {
            Some((answer, _)) => grpc_status(answer).await,
            None => "not sent: the connection to the server is gone".to_string(),
        };
        shared.0.lock().unwrap().held_answer = Some(answered);
        return Some(());
    }
    let (answer, _) = send_whole(head, Bytes::from(whole), sender).await?;
    relay_response(answer, respond).await
}

/// The `grpc-status` the server answered with (in the headers or the trailers), read to the
/// end, or why there is none.
async fn grpc_status(answer: h2::client::ResponseFuture) -> String {
    let response = match answer.await {
        Ok(response) => response,
        Err(e) => return format!("no answer: {e}"),
    };
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("grpc-status {v}"))
    };
    if let Some(said) = status(response.headers()) {
        return said;
    }
    let mut body = response.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    match body.trailers().await {
        Ok(Some(trailers)) => status(&trailers).unwrap_or_else(|| "no grpc-status".into()),
        Ok(None) => "no trailers".to_string(),
        Err(e) => format!("answer cut: {e}"),
    }
}

/// Sends a request whose body is `body`, in one frame; the response coming.
async fn send_whole(
    head: Request<()>,
    body: Bytes,
    sender: h2::client::SendRequest<Bytes>,
) -> Option<(h2::client::ResponseFuture, SendStream<Bytes>)> {
    let mut sender = sender.ready().await.ok()?;
    let (answer, mut send) = sender.send_request(head, false).ok()?;
    send.send_data(body, true).ok()?;
    Some((answer, send))
}

/// Streams a call both ways: the request's frames upstream, the response's back.
async fn stream_call(
    head: Request<()>,
    body: RecvStream,
    respond: h2::server::SendResponse<Bytes>,
    sender: h2::client::SendRequest<Bytes>,
) -> Option<()> {
    let mut sender = sender.ready().await.ok()?;
    let end = body.is_end_stream();
    let (answer, send) = sender.send_request(head, end).ok()?;
    if !end {
        tokio::spawn(pipe(body, send));
    }
    relay_response(answer, respond).await
}

/// The upstream response, relayed to the caller (headers, data, trailers).
async fn relay_response(
    answer: h2::client::ResponseFuture,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Option<()> {
    let (parts, body) = answer.await.ok()?.into_parts();
    let end = body.is_end_stream();
    let send = respond
        .send_response(Response::from_parts(parts, ()), end)
        .ok()?;
    if !end {
        pipe(body, send).await;
    }
    Some(())
}

/// Copies `from`'s data frames and trailers to `to`, until either ends; a caller that went
/// away resets the other side.
async fn pipe(mut from: RecvStream, mut to: SendStream<Bytes>) {
    while let Some(chunk) = from.data().await {
        let Ok(chunk) = chunk else {
            to.send_reset(h2::Reason::CANCEL);
            return;
        };
        let _ = from.flow_control().release_capacity(chunk.len());
        if to.send_data(chunk, false).is_err() {
            return;
        }
    }
    match from.trailers().await {
        Ok(Some(trailers)) => {
            let _ = to.send_trailers(trailers);
        }
        Ok(None) => {
            let _ = to.send_data(Bytes::new(), true);
        }
        Err(_) => to.send_reset(h2::Reason::CANCEL),
    }
}
