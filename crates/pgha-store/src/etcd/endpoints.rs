//! One etcd client per endpoint, one of them in use: a call that gets no answer in time (or
//! an answer from a member without a leader) moves the calls after it to the next endpoint.
//!
//! One client balanced over every endpoint sends each call to any of them: with one member of
//! three stalled (a disk stall, a paused VM), about a third of all calls then hang until their
//! bound, and the agents see the store come and go. Here a stalled member costs one call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use etcd_client::{Client, ConnectOptions};

#[derive(Clone)]
pub(super) struct Endpoints {
    clients: Arc<Vec<Client>>,
    in_use: Arc<AtomicUsize>,
}

impl Endpoints {
    /// A client for each endpoint, in the order given (the first one in use). Connects
    /// lazily: nothing is reached here.
    pub(super) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
    ) -> Result<Endpoints, etcd_client::Error> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            clients.push(Client::connect([endpoint], Some(options.clone())).await?);
        }
        Ok(Endpoints {
            clients: Arc::new(clients),
            in_use: Arc::default(),
        })
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
            answered: false,
        }
    }

    /// The client of the endpoint in use.
    pub(super) fn client(&self) -> Client {
        self.clients[self.in_use() % self.clients.len()].clone()
    }

    /// A call through endpoint `used` failed: the next calls go to the next endpoint (unless
    /// another failed call moved on already).
    fn failed(&self, used: usize) {
        let next = (used + 1) % self.clients.len();
        let _ = self
            .in_use
            .compare_exchange(used, next, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// One call to the endpoint in use ([`Endpoints::attempt`]).
pub(super) struct Attempt<'a> {
    endpoints: &'a Endpoints,
    used: usize,
    answered: bool,
}

impl Attempt<'_> {
    /// The endpoint answered (whatever it said, short of having no leader).
    pub(super) fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.endpoints.failed(self.used);
        }
    }
}
