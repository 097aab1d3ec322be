//! An HTTP/2 forwarder (gRPC, e.g. to etcd) that can hold calls back: one whose path and first
//! message match is sent on only after a delay, or once the test releases it, whatever became
//! of its caller (its answer goes to the test, [`CallHold::held_answer`]), or never, while
//! every other call, sent before or after on the same connection, passes at once. A request
//! that lands late although later ones did not: what a connection left behind (its caller
//! timed out and moved on) delivers when its link comes back; one that never lands while
//! others do: a request sent to a member that stalled, the next sent to another.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

mod forward;

/// Which calls a rule catches: those to one path (`/etcdserverpb.KV/Txn`) whose first
/// message (a unary call's request, a stream's first one) holds some bytes (a key's name) and,
/// if given, lacks others.
#[derive(Clone, Debug)]
pub struct Calls {
    path: String,
    holding: Vec<u8>,
    lacking: Option<Vec<u8>>,
}

impl Calls {
    /// Every call to `path`.
    pub fn to(path: &str) -> Calls {
        Calls {
            path: path.to_string(),
            holding: Vec::new(),
            lacking: None,
        }
    }

    /// Only those whose first message holds `bytes`.
    pub fn holding(self, bytes: &[u8]) -> Calls {
        Calls {
            holding: bytes.to_vec(),
            ..self
        }
    }

    /// Only those whose first message does not hold `bytes`.
    pub fn lacking(self, bytes: &[u8]) -> Calls {
        Calls {
            lacking: Some(bytes.to_vec()),
            ..self
        }
    }

    fn catch(&self, message: &[u8]) -> bool {
        let holds =
            |bytes: &[u8]| bytes.is_empty() || message.windows(bytes.len()).any(|w| w == bytes);
        holds(&self.holding) && !self.lacking.as_deref().is_some_and(holds)
    }
}

/// The calls to hold, and how.
#[derive(Clone, Debug)]
struct Rule {
    /// Tells the rule apart from the others armed (a spent one is removed by it).
    id: u64,
    calls: Calls,
    hold: Hold,
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    /// The next call caught, for this long (the rule is then spent).
    NextFor(Duration),
    /// Every call caught, until the test releases it ([`CallHold::release_first`]) or never.
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

/// What the forwarding tasks share with the test: the rules armed, when the first call they
/// caught arrived and was sent on and what the server answered it, and the calls still held
/// for the test to release, in the order they came.
#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    next_rule: u64,
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
        runtime.spawn(forward::accept_loop(listener, target, shared.clone()));
        Ok(CallHold {
            addr,
            shared,
            _runtime: runtime,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds the next call `calls` catches for `delay`, then sends it on (once: the calls
    /// after it pass). The rules armed before stay armed.
    pub fn hold_next(&self, calls: Calls, delay: Duration) {
        self.arm(calls, Hold::NextFor(delay));
    }

    /// Holds every call `calls` catches from now on, each until [`CallHold::release_first`]
    /// sends it, or never (a lost request: [`CallHold::clear`] drops it unsent). The rules
    /// armed before stay armed.
    pub fn hold_all(&self, calls: Calls) {
        self.arm(calls, Hold::AllUntilReleased);
    }

    /// Arms one more rule, and forgets what the rules armed before caught.
    fn arm(&self, calls: Calls, hold: Hold) {
        let mut s = self.shared.0.lock().unwrap();
        let id = s.next_rule;
        s.next_rule += 1;
        s.rules.push(Rule { id, calls, hold });
        s.held_at = None;
        s.sent_on_at = None;
        s.held_answer = None;
    }

    /// Stops holding calls, and drops those still held: they are never sent (their callers
    /// gave up long before).
    pub fn clear(&self) {
        let mut s = self.shared.0.lock().unwrap();
        s.rules.clear();
        s.waiting.clear();
    }

    /// Waits up to `timeout` for the rules armed to catch a call; when the first arrived.
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
        s.rules.clear();
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
