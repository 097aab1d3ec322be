//! The prefix watch on etcd: reopened after a failure, and probed for progress when silent.

use super::convert::{as_u64, bounded, map_err};
use super::EtcdStore;
use crate::error::StoreError;
use crate::model::Revision;
use crate::store::Watch;
use async_trait::async_trait;
use etcd_client::{KeyValue, WatchResponse, WatchStream};
use tokio::time::Instant;

/// A prefix watch that reopens itself (from the next unseen revision) after a failure.
///
/// A stream that stays silent for a call timeout is asked for a progress report
/// (`WatchProgressRequest`, answered by etcd ≥ 3.4 with an empty response); when that gets no
/// answer within another call timeout, the watch fails: the connection or the member is dead,
/// which HTTP/2 keep-alive pings would only notice much later. Etcd itself ends the stream
/// with "no leader" when its member loses its quorum (see [`EtcdStore::connect`]).
pub(super) struct EtcdWatch {
    pub(super) store: EtcdStore,
    /// The first revision not reported yet.
    pub(super) next: i64,
    pub(super) stream: Option<WatchStream>,
    /// When the stream last delivered something (or was opened).
    pub(super) heard: Instant,
    /// When a progress report was asked for and has not arrived yet.
    pub(super) probed: Option<Instant>,
}

impl EtcdWatch {
    /// The next message of the open stream; `Ok(None)` when the stream stays silent up to the
    /// next liveness step (then a progress report is asked for), an error when it stays silent
    /// after one was asked for. Keeps its deadlines in `self`: a caller may drop `changed`
    /// (e.g. in a `select!`) and call again without restarting the clock.
    async fn next_message(&mut self) -> Result<Option<WatchResponse>, StoreError> {
        let timeout = self.store.timeout;
        let deadline = match self.probed {
            Some(asked) => asked + timeout,
            None => self.heard + timeout,
        };
        let stream = self.stream.as_mut().expect("watch stream open");
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => {
                self.heard = Instant::now();
                self.probed = None;
                Ok(Some(message))
            }
            Ok(Ok(None)) => Err(StoreError::Unavailable("etcd closed the watch".into())),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) if self.probed.is_some() => Err(StoreError::Unavailable(format!(
                "etcd sent nothing on the watch for {:?}, not even a requested progress report",
                self.heard.elapsed()
            ))),
            Err(_) => {
                bounded(timeout, stream.request_progress()).await?;
                self.probed = Some(Instant::now());
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl Watch for EtcdWatch {
    async fn changed(&mut self) -> Result<Revision, StoreError> {
        loop {
            if self.stream.is_none() {
                let stream = self.store.call(self.store.open_watch(self.next)).await?;
                self.stream = Some(stream);
                self.heard = Instant::now();
                self.probed = None;
            }
            let message = match self.next_message().await {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            };
            if message.canceled() {
                self.stream = None;
                if message.compact_revision() > 0 {
                    // History we had not seen was compacted away: report a change and resume
                    // from the present (callers re-read the snapshot anyway).
                    self.next = self.store.call(self.store.current_revision()).await? + 1;
                    return Ok(as_u64(self.next - 1));
                }
                return Err(StoreError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    message.cancel_reason()
                )));
            }
            let latest = message
                .events()
                .iter()
                .filter_map(|event| event.kv().map(KeyValue::mod_revision))
                .max();
            if let Some(revision) = latest {
                self.next = revision + 1;
                return Ok(as_u64(revision));
            }
        }
    }
}
