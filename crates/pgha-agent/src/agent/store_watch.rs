//! The agent's subscription to store changes, (re)opened in the background: a change only
//! wakes the loop early, so a slow or absent store never holds the loop up for it.

use std::sync::Arc;
use std::time::Duration;

use pgha_store::{Store, Watch};
use tokio::task::JoinHandle;

use super::STORE_TIMEOUT;

/// How long after a failed attempt the next one starts.
const RETRY: Duration = Duration::from_secs(1);

/// A watch on the store, or the task that opens one.
pub(crate) struct StoreWatch {
    store: Arc<dyn Store>,
    state: State,
}

enum State {
    Open(Box<dyn Watch>),
    Opening(JoinHandle<Box<dyn Watch>>),
}

impl StoreWatch {
    /// Starts opening a watch in the background.
    pub(crate) fn start(store: Arc<dyn Store>) -> StoreWatch {
        let state = State::Opening(open_in_background(store.clone()));
        StoreWatch { store, state }
    }

    /// Resolves on a change in the store, or once a watch is open again (changes may have
    /// been missed meanwhile); never on a failure: a failed watch is reopened in the
    /// background, attempt after attempt. Cancel-safe (the loop polls it in a `select!`).
    pub(crate) async fn changed(&mut self) {
        loop {
            match &mut self.state {
                State::Open(watch) => match watch.changed().await {
                    Ok(_) => return,
                    Err(_) => self.state = State::Opening(open_in_background(self.store.clone())),
                },
                State::Opening(task) => match task.await {
                    Ok(watch) => {
                        self.state = State::Open(watch);
                        return;
                    }
                    // only if the task panicked: try again
                    Err(_) => self.state = State::Opening(open_in_background(self.store.clone())),
                },
            }
        }
    }
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        if let State::Opening(task) = &self.state {
            task.abort();
        }
    }
}

fn open_in_background(store: Arc<dyn Store>) -> JoinHandle<Box<dyn Watch>> {
    tokio::spawn(async move {
        loop {
            if let Ok(Ok(watch)) = tokio::time::timeout(STORE_TIMEOUT, store.watch()).await {
                return watch;
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_store::{MemoryStore, TokioClock};

    /// A change wakes it; until then it waits.
    #[tokio::test]
    async fn a_change_wakes_it_and_nothing_else() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(TokioClock::default())));
        let mut watch = StoreWatch::start(store.clone());
        // the first wake-up: the watch is open
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("opened");
        let quiet = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(quiet.is_err(), "nothing changed, nothing woke it");
        let ttl = pgha_core::Ttl::from_secs(5);
        store.put_member("n1", "{}", ttl).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the change woke it");
    }
}
