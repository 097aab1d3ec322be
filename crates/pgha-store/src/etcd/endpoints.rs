//! One etcd client per endpoint, one of them in use: a call that gets no answer in time (or
//! an answer from a member without a leader) moves the calls after it to the next endpoint.
//!
//! One client balanced over every endpoint sends each call to any of them: with one member of
//! three stalled (a disk stall, a paused VM), about a third of all calls then hang until their
//! bound, and the agents see the store come and go. Here a stalled member costs one call.
//!
//! An endpoint that left two calls in a row unanswered gets a new client (a new connection)
//! for its next call: a connection that was blackholed stays silent after the link heals
//! until TCP's retransmission backoff or the HTTP/2 keep-alive gives up on it, seconds later.
//!
//! Moving on skips an endpoint that let a call run to the store's bound in the last
//! [`SKIP_SLOW_FOR`], unless every other one did too (a call its caller gave up on sooner
//! says nothing of the endpoint's speed, and does not count): while etcd elects a new leader after
//! its leader stalled, the others answer "no leader" at once, and a plain rotation came back
//! to the stalled one after two such answers, a whole bound lost each time.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use super::convert::map_err;
use super::EtcdUser;
use crate::error::StoreError;

/// Unanswered calls in a row after which an endpoint's next call goes over a new connection.
const SUSPECT_AFTER: u32 = 2;

/// How long an endpoint that let a call run to its bound is passed over when moving on.
const SKIP_SLOW_FOR: Duration = Duration::from_secs(3);

/// How long a connection whose login etcd refused waits before it asks again (each login
/// costs etcd a password hash; every agent and proxy asks).
const LOGIN_REFUSED_FOR: Duration = Duration::from_secs(2);

tokio::task_local! {
    /// The connection one call runs on ([`Endpoints::pinned`]): every request of the call goes
    /// to it, the one it logged in.
    static PINNED: Connection;
}

/// How long a login may take before it counts as unanswered (the next call asks again).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A login under way on a connection: its result, once etcd answered.
type LoginUnderWay = tokio::sync::watch::Receiver<Option<Result<(), StoreError>>>;

/// One endpoint's client, whether it logged in as the configured etcd user (its own flag: a
/// client that replaces it starts logged out), the login under way, and etcd's last refusal
/// of that login.
#[derive(Clone)]
pub(super) struct Connection {
    client: Client,
    authenticated: Arc<AtomicBool>,
    login: Arc<Mutex<Option<LoginUnderWay>>>,
    refused: Arc<Mutex<Option<(Instant, StoreError)>>>,
}

impl Connection {
    fn new(client: Client) -> Connection {
        Connection {
            client,
            authenticated: Arc::default(),
            login: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// Whether a login is under way on it (see [`Connection::login_as`]).
    fn logging_in(&self) -> bool {
        self.login.lock().expect("login lock").is_some()
    }

    /// The login under way, or one started now as `user`. It runs as a task of its own: a
    /// caller that gives up (its bound shorter than etcd's password hash) does not cancel it,
    /// and the calls after it wait for the same login instead of starting another.
    fn login_as(&self, user: &EtcdUser) -> LoginUnderWay {
        let mut slot = self.login.lock().expect("login lock");
        if let Some(under_way) = &*slot {
            return under_way.clone();
        }
        let (tell, under_way) = tokio::sync::watch::channel(None);
        *slot = Some(under_way.clone());
        let credentials = (user.name.clone(), user.password.clone());
        let connection = self.clone();
        tokio::spawn(async move {
            let mut client = connection.client.clone();
            let login = client.update_user(Some(credentials));
            let result = match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
                Ok(Ok(())) => {
                    connection.authenticated.store(true, Ordering::SeqCst);
                    Ok(())
                }
                Ok(Err(e)) => {
                    let refusal = refusal_of_credentials(e);
                    if let StoreError::Credentials(_) = refusal {
                        let mut refused = connection.refused.lock().expect("login lock");
                        *refused = Some((Instant::now(), refusal.clone()));
                    }
                    Err(refusal)
                }
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no answer to the login within {} s",
                    LOGIN_TIMEOUT.as_secs()
                ))),
            };
            *connection.login.lock().expect("login lock") = None;
            let _ = tell.send(Some(result));
        });
        under_way
    }

    /// Logs in again on its next call: etcd refused a request of it as it refuses one whose
    /// token it no longer takes (its auth store changed since the login: "revision of auth
    /// store is old"; no token at all), or a request that was itself invalid (logging in
    /// again costs one round trip then).
    pub(super) fn forget_login(&self) {
        self.authenticated.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub(super) struct Endpoints {
    addresses: Arc<Vec<String>>,
    options: ConnectOptions,
    /// The etcd user every connection authenticates as (etcd's auth enabled), if any.
    user: Option<EtcdUser>,
    clients: Arc<Vec<Mutex<Connection>>>,
    /// Per endpoint: calls in a row it left unanswered.
    unanswered: Arc<Vec<AtomicU32>>,
    /// Per endpoint: when a call to it last ran to the store's bound without an answer.
    slow_at: Arc<Vec<Mutex<Option<Instant>>>>,
    /// The store's bound of a call.
    bound: Duration,
    in_use: Arc<AtomicUsize>,
}

impl Endpoints {
    /// A client for each endpoint, in the order given (the first one in use). Connects
    /// lazily: nothing is reached here, not even to authenticate as `user` (see
    /// [`Endpoints::authenticate`]): an endpoint down at start-up is no reason to fail.
    pub(super) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
        user: Option<EtcdUser>,
        bound: Duration,
    ) -> Result<Endpoints, etcd_client::Error> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            clients.push(Mutex::new(Connection::new(
                Client::connect([endpoint], Some(options.clone())).await?,
            )));
        }
        Ok(Endpoints {
            addresses: Arc::new(endpoints.to_vec()),
            options: options.clone(),
            user,
            unanswered: Arc::new(endpoints.iter().map(|_| AtomicU32::new(0)).collect()),
            slow_at: Arc::new(endpoints.iter().map(|_| Mutex::new(None)).collect()),
            bound,
            clients: Arc::new(clients),
            in_use: Arc::default(),
        })
    }

    /// Gives the endpoint in use a new client (nothing is reached until a call) when it left
    /// [`SUSPECT_AFTER`] calls in a row unanswered: its connection may be one a blackhole left
    /// silent. Until one is answered, every call to it gets a new one, unless its login is
    /// under way (bounded by [`LOGIN_TIMEOUT`]).
    pub(super) async fn renew_suspect(&self) {
        let i = self.in_use() % self.clients.len();
        if self.unanswered[i].load(Ordering::SeqCst) < SUSPECT_AFTER {
            return;
        }
        if self.clients[i]
            .lock()
            .expect("etcd client lock")
            .logging_in()
        {
            // Calls given up while its login runs (a password hash may outlast their bound)
            // say nothing of the connection; a new one would start the login over.
            return;
        }
        match Client::connect([&self.addresses[i]], Some(self.options.clone())).await {
            Ok(fresh) => {
                tracing::debug!(
                    "etcd {}: unanswered calls in a row, new connection",
                    self.addresses[i]
                );
                *self.clients[i].lock().expect("etcd client lock") = Connection::new(fresh);
            }
            Err(e) => tracing::debug!("etcd {}: no new client ({e})", self.addresses[i]),
        }
    }

    fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    /// A call about to go to the endpoint in use: unless [`Attempt::answered`] is said of it,
    /// the next calls go to the next endpoint. A call its caller gives up on (a caller's own
    /// bound, shorter than the store's, drops it) thus counts as unanswered too.
    pub(super) fn attempt(&self) -> Attempt<'_> {
        Attempt {
            endpoints: self,
            used: self.in_use(),
            started: Instant::now(),
            outcome: None,
        }
    }

    /// The client a request goes to: the call's pinned connection's ([`Endpoints::pinned`]),
    /// else the endpoint in use's.
    pub(super) fn client(&self) -> Client {
        PINNED
            .try_with(|c| c.client.clone())
            .unwrap_or_else(|_| self.connection().client)
    }

    /// The connection of the endpoint in use.
    pub(super) fn connection(&self) -> Connection {
        let i = self.in_use() % self.clients.len();
        self.clients[i].lock().expect("etcd client lock").clone()
    }

    /// Runs `op` with every request it makes going to `connection`, logged in first when an
    /// etcd user is configured: another call moving to the next endpoint meanwhile (or giving
    /// this one a new connection) does not send the rest of this call elsewhere, where it may
    /// not be logged in.
    pub(super) async fn pinned<T>(
        &self,
        connection: Connection,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.authenticate(&connection).await?;
        PINNED.scope(connection, op).await
    }

    /// With an etcd user configured: logs `connection` in as that user unless it did already
    /// (etcd answers every request without a token "user name is empty"). The client then
    /// replaces its token by itself when etcd says it no longer knows it (an etcd restart,
    /// `--auth-token-ttl` of idleness). The login outlives a caller that gives up on it
    /// ([`Connection::login_as`]). A refusal is [`StoreError::Credentials`], said again
    /// without asking etcd for [`LOGIN_REFUSED_FOR`]; an etcd that cannot answer,
    /// [`StoreError::Unavailable`].
    async fn authenticate(&self, connection: &Connection) -> Result<(), StoreError> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        if connection.authenticated.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some((at, refusal)) = &*connection.refused.lock().expect("login lock") {
            if at.elapsed() < LOGIN_REFUSED_FOR {
                return Err(refusal.clone());
            }
        }
        let mut under_way = connection.login_as(user);
        let answered = under_way.wait_for(Option::is_some).await;
        match answered.as_deref() {
            Ok(Some(result)) => result.clone(),
            Ok(None) | Err(_) => Err(StoreError::Unavailable("the login ended unanswered".into())),
        }
    }

    /// A call through endpoint `used` failed (`slow`: it ran to the store's bound): the next
    /// calls go to the next endpoint not slow lately, or the next one when all were (unless
    /// another failed call moved on already).
    fn failed(&self, used: usize, slow: bool) {
        let count = self.clients.len();
        let at = used % count;
        self.unanswered[at].fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        if slow {
            *self.slow_at[at].lock().expect("endpoint lock") = Some(now);
        }
        let slow_lately = |i: usize| {
            self.slow_at[i]
                .lock()
                .expect("endpoint lock")
                .is_some_and(|t| now.duration_since(t) < SKIP_SLOW_FOR)
        };
        let next = (1..=count)
            .map(|step| used + step)
            .find(|i| !slow_lately(i % count))
            .unwrap_or(used + 1)
            % count;
        let _ = self
            .in_use
            .compare_exchange(used, next, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// What a failed authentication means: etcd refused the user or its password, or has no
/// authentication enabled (both need the operator), or it could not answer (a retry may do).
fn refusal_of_credentials(e: etcd_client::Error) -> StoreError {
    use tonic::Code;
    match &e {
        etcd_client::Error::GRpcStatus(status)
            if matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::PermissionDenied
                    | Code::Unauthenticated
            ) =>
        {
            StoreError::Credentials(status.message().to_string())
        }
        _ => map_err(e),
    }
}

/// How a call to an endpoint ended, as far as the choice of endpoint goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallEnd {
    /// It answered (whatever it said, short of having no leader).
    Answered,
    /// It failed at once: no leader, or the connection refused.
    Refused,
}

/// One call to the endpoint in use ([`Endpoints::attempt`]). Dropped without an end said,
/// it got no answer: within the store's bound (it was slow), or before its caller gave up.
pub(super) struct Attempt<'a> {
    endpoints: &'a Endpoints,
    used: usize,
    started: Instant,
    outcome: Option<CallEnd>,
}

impl Attempt<'_> {
    /// The endpoint answered (whatever it said, short of having no leader).
    pub(super) fn answered(mut self) {
        self.outcome = Some(CallEnd::Answered);
        let at = self.used % self.endpoints.clients.len();
        self.endpoints.unanswered[at].store(0, Ordering::SeqCst);
        *self.endpoints.slow_at[at].lock().expect("endpoint lock") = None;
    }

    /// The endpoint failed the call before its bound (no leader, connection refused).
    pub(super) fn refused(mut self) {
        self.outcome = Some(CallEnd::Refused);
        self.endpoints.failed(self.used, false);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let slow = self.started.elapsed() >= self.endpoints.bound;
            self.endpoints.failed(self.used, slow);
        }
    }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
