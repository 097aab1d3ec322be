//! From etcd's answers to the store's terms: errors, revisions, transaction reads, the leader.

use crate::error::StoreError;
use crate::model::Revision;
use etcd_client::{KeyValue, TxnOpResponse, TxnResponse};
use std::future::Future;
use std::time::Duration;

/// Bounds a future by `timeout`, mapping etcd errors.
pub(super) async fn bounded<T>(
    timeout: Duration,
    op: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not answer within {timeout:?}"
        ))),
    }
}

/// Maps a client error: bad requests are `Invalid`, everything else may pass with a retry.
pub(super) fn map_err(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    match &e {
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) => {
            StoreError::Invalid(format!("etcd: {e}"))
        }
        E::GRpcStatus(status)
            if matches!(
                status.code(),
                Code::InvalidArgument | Code::Unauthenticated | Code::Unimplemented
            ) =>
        {
            StoreError::Invalid(format!("etcd refused the request: {}", status.message()))
        }
        E::GRpcStatus(status) if status.code() == Code::PermissionDenied => {
            StoreError::PermissionDenied(status.message().to_string())
        }
        E::GRpcStatus(status) if status.code() == Code::ResourceExhausted => {
            StoreError::Exhausted(status.message().to_string())
        }
        E::GRpcStatus(status) => {
            StoreError::Unavailable(format!("etcd: {} ({:?})", status.message(), status.code()))
        }
        _ => StoreError::Unavailable(format!("etcd: {e}")),
    }
}

/// The range reads of a transaction's executed branch, in order.
pub(super) fn gets(resp: &TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().to_vec()),
            _ => None,
        })
        .collect()
}

pub(super) fn describe_leader(kv: Option<&KeyValue>) -> String {
    match kv {
        Some(kv) => format!(
            "leader is {} at revision {}",
            String::from_utf8_lossy(kv.value()),
            kv.create_revision()
        ),
        None => "no leader".to_string(),
    }
}

pub(super) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| as_u64(h.revision()))
}

pub(super) fn as_u64(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

/// A revision as etcd's signed one; one beyond etcd's range can never match.
pub(super) fn as_i64(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::Error::GRpcStatus;
    use tonic::Status;

    #[test]
    fn a_refusal_for_lack_of_space_is_an_answer_that_says_what_to_do() {
        let full = map_err(GRpcStatus(Status::resource_exhausted(
            "etcdserver: mvcc: database space exceeded",
        )));
        assert!(matches!(full, StoreError::Exhausted(_)), "{full:?}");
        let said = full.to_string();
        assert!(
            said.contains("database space exceeded") && said.contains("etcdctl alarm disarm"),
            "{said}"
        );
        let gone = map_err(GRpcStatus(Status::unavailable("connection refused")));
        assert!(matches!(gone, StoreError::Unavailable(_)), "{gone:?}");
    }
}
