//! The store's error type, saying whether a retry makes sense.

/// What went wrong talking to the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set guard failed (key present/absent, revision moved, leader changed).
    /// Retrying the same write is pointless: read again and decide again.
    #[error("compare-and-set on {key} failed: {detail}")]
    Conflict { key: String, detail: String },
    /// The store could not be reached or did not answer in time. Retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered but refused the request for lack of resources: etcd out of space
    /// (its NOSPACE alarm: every write refused until an operator makes room) or too busy.
    /// Reads, read-only transactions and lease keep-alives are still served.
    #[error(
        "etcd refused the request: {0}. If `etcdctl alarm list` shows NOSPACE, etcd reached \
         its space quota and refuses every write until room is made: `etcdctl compact` to its \
         current revision, `etcdctl defrag`, then `etcdctl alarm disarm`; run etcd with \
         --auto-compaction-mode=periodic --auto-compaction-retention=1h so that its history \
         does not fill it again"
    )]
    Exhausted(String),
    /// The persisted state could not be written or read.
    #[error("store persistence failed: {0}")]
    Persistence(String),
    /// etcd refused the configured user or its password, or has no authentication enabled
    /// while a user is configured. Retrying cannot help: the operator must act.
    #[error("etcd refused pgha's credentials: {0}")]
    Credentials(String),
    /// etcd's user lacks a permission the request needs (its role must grant read and write
    /// on the cluster's key prefix).
    #[error("etcd refused the request: {0} (the etcd user's role lacks the permission)")]
    PermissionDenied(String),
    /// The request itself is invalid (bad name, bad TTL). Retrying cannot help.
    #[error("invalid store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// A member key's name: not empty, no `/` (it is one path segment of the key).
    pub(crate) fn check_member_name(name: &str) -> Result<(), StoreError> {
        if name.is_empty() || name.contains('/') {
            return Err(StoreError::Invalid(format!("bad member name {name:?}")));
        }
        Ok(())
    }

    /// Whether the same request may succeed if simply retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Persistence(_) | StoreError::Exhausted(_)
        )
    }

    pub(crate) fn conflict(key: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Conflict {
            key: key.into(),
            detail: detail.into(),
        }
    }
}
