//! Why a store write or a quick local action of a decision failed (a job's failure is a
//! [`crate::report::FailedJob`]): logged, and the core decides again on the next observation.

use std::time::Duration;

use pgha_pg::PgError;
use pgha_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("could not encode the value: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("local PostgreSQL is not reachable")]
    LocalUnreachable,
    #[error("local PostgreSQL did not answer within {} ms", .0.as_millis())]
    SqlTimeout(Duration),
    #[error("no data directory, or a job is running: the new synchronous setting is not applied")]
    SyncNotApplied,
    #[error("{0} is a job, not a store or quick action")]
    NotQuick(String),
}
