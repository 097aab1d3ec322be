//! Operations on a cluster's store behind the API (and on a stopped local cluster's
//! persisted store): read the view, request a switchover or failover, change the dynamic
//! settings. Every rule they apply is the core's; they only read, check and write.

use pgha_core::{
    ClusterConfig, ClusterView, Lsn, MemberName, PendingSwitchover, SwitchoverRequest,
};
use pgha_store::{Guard, HistoryEntry, HistoryId, Key, Store, StoreError, Unreadable};

use crate::dynamic::SettingError;

/// Why an operation did not happen. A [`OpError::Refused`] is the cluster's rules saying no
/// (nothing was written; the API answers 409); the others are failures to reach or read the
/// store.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    #[error("the store has no config yet: is the cluster bootstrapped?")]
    NoConfig,
    #[error("the config kept changing under us; try again")]
    Contended,
    #[error(
        "the pending request changed while it was being withdrawn (another operator's, or \
         carried out): nothing withdrawn; see `pgha status` and cancel again if you still mean to"
    )]
    RequestChanged,
}

/// What the cluster's rules refuse, and why.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Switchover(#[from] pgha_core::switchover::Refusal),
    #[error("another switchover or failover is pending")]
    AlreadyPending,
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Reinit(#[from] crate::reinit::ReinitRefused),
    /// PostgreSQL refused a `postgresql.*` setting (or could not be asked): nothing stored.
    #[error("{0}; nothing was changed")]
    Parameters(pgha_pg::PgError),
    #[error(
        "--leader-down: {0} holds the leader key, so it is not down as far as the store knows"
    )]
    LeaderHoldsKey(MemberName),
    #[error(
        "--leader-down: {0}'s agent reports its PostgreSQL running as a primary; stop it first"
    )]
    LeaderStillPrimary(MemberName),
    /// The request written before the list was withdrawn is deleted again (see
    /// [`request_leader_down`]).
    #[error("the failsafe list changed while it was being withdrawn (a new term?); ask again")]
    FailsafeListChanged,
}

/// The cluster as the store sees it now.
pub async fn view(store: &dyn Store) -> Result<ClusterView, OpError> {
    view_of(&store.snapshot().await?)
}

/// [`view`] of a snapshot read already.
pub fn view_of(snapshot: &pgha_store::Snapshot) -> Result<ClusterView, OpError> {
    Ok(pgha_store::cluster_view(snapshot)?)
}

/// The configuration as the store holds it, valid or not (`pgha config show` and `edit` open
/// one that fails validation, to mend it); the defaults where it holds none.
pub async fn stored_config(store: &dyn Store) -> Result<ClusterConfig, OpError> {
    let snapshot = store.snapshot().await?;
    Ok(pgha_store::stored_config(&snapshot)?.unwrap_or_default())
}

/// A request written: the member it promotes (for a switchover naming none, the best
/// candidate as the store shows it now), the leader it was made to, and for a scheduled one a
/// refusal of the moment it was written despite (the leader checks it again when it is due).
#[derive(Debug)]
pub struct Requested {
    pub target: MemberName,
    pub from: Option<MemberName>,
    pub checked_when_due: Option<pgha_core::switchover::Refusal>,
}

/// Validates a switchover/failover request against the current view and writes it. A
/// switchover scheduled for later to a named member is not refused for a passing state (the
/// target not streaming this moment): it is written, and the leader's check when it is due
/// decides (a refusal then is in the history).
pub async fn request(
    store: &dyn Store,
    mut request: SwitchoverRequest,
) -> Result<Requested, OpError> {
    let view = view(store).await?;
    withdraw_void_request(store, &view).await?;
    if request.from.is_none() {
        // Name the leader the request is about: the target waits for its final position.
        request.from = view.leader.as_ref().map(|l| l.holder.clone());
    }
    let leader_lsn = view
        .leader
        .as_ref()
        .and_then(|l| view.members.get(&l.holder))
        .map(|r| r.lsn)
        .unwrap_or_default();
    let requested = match pgha_core::switchover::check(&view, leader_lsn, &request) {
        Ok(target) => Requested {
            target,
            from: request.from.clone(),
            checked_when_due: None,
        },
        Err(refusal) if deferrable(&request) && refusal.may_pass_by_then() => match &request.to {
            Some(target) => Requested {
                target: target.clone(),
                from: request.from.clone(),
                checked_when_due: Some(refusal),
            },
            None => return Err(Refusal::from(refusal).into()),
        },
        Err(refusal) => return Err(Refusal::from(refusal).into()),
    };
    match write_request(store, &request).await {
        Ok(_) => Ok(requested),
        // The same request pending already: this one's copy, sent again to another host after
        // the first answer was lost (a paused API, a cut link), or an operator's twin; it is
        // written, which is what was asked (not "refused: one is pending" while it runs).
        Err(OpError::Refused(Refusal::AlreadyPending))
            if view_of(&store.snapshot().await?)?
                .switchover
                .is_some_and(|p| p.request == request) =>
        {
            Ok(requested)
        }
        Err(e) => Err(e),
    }
}

/// Deletes the pending request if it was made in an earlier term (a scheduled switchover
/// overtaken by a failover): void, it would refuse every new request until its instant.
async fn withdraw_void_request(store: &dyn Store, view: &ClusterView) -> Result<(), OpError> {
    let Some(pending) = view.switchover.as_ref() else {
        return Ok(());
    };
    if !pgha_core::switchover::predates_the_stores_term(view, pending) {
        return Ok(());
    }
    match withdraw_request(store, pending.clone()).await {
        Ok(_) => {
            let position = view.leader_position.as_ref();
            let event = pgha_core::switchover::void_request_withdrawn(pending, position);
            record(store, event, "the withdrawal of a void request").await;
        }
        Err(OpError::RequestChanged) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Appends `event` to the cluster's history, and says it in the log; a history the store does
/// not take fails nothing (the log has `what`).
async fn record(store: &dyn Store, event: pgha_core::HistoryEvent, what: &str) {
    tracing::warn!("history: {event}");
    let json = serde_json::to_string(&HistoryEntry::now(event)).expect("an entry serialises");
    if let Err(e) = store
        .append_history(&HistoryId::fresh(), &json, Guard::Any)
        .await
    {
        tracing::warn!("{what} is not in the history: {e}");
    }
}

/// Whether `request` is a switchover scheduled for a later instant than now (wall clock, as
/// the agents compare it).
fn deferrable(request: &SwitchoverRequest) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    request.kind == pgha_core::RequestKind::Switchover && request.at.is_some_and(|at| at > now)
}

/// Writes `request` unless one is pending; answers the revision it was written at.
async fn write_request(store: &dyn Store, request: &SwitchoverRequest) -> Result<u64, OpError> {
    let json = serde_json::to_string(request).expect("a request serialises");
    store
        .put(Key::Switchover, &json, Guard::Absent)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => OpError::Refused(Refusal::AlreadyPending),
            other => other.into(),
        })
}

/// `pgha failover --to TARGET --leader-down`: as [`request`], and when the failsafe list of
/// the last leader (which the operator knows is down) is what keeps the target from taking
/// over, the request is written, then the list withdrawn (only as it was read) and that
/// recorded in the history. Refused, writing nothing, while a leader holds the key, while
/// the list's leader says its PostgreSQL runs as a primary, or when the failover would be
/// refused anyway.
pub async fn request_leader_down(
    store: &dyn Store,
    request: SwitchoverRequest,
) -> Result<Requested, OpError> {
    use pgha_core::switchover::{check, failsafe_list_withdrawn};
    let view = view(store).await?;
    withdraw_void_request(store, &view).await?;
    if let Some(leader) = &view.leader {
        return Err(Refusal::LeaderHoldsKey(leader.holder.clone()).into());
    }
    let Some(list) = view.failsafe.clone() else {
        return self::request(store, request).await;
    };
    if view
        .members
        .get(&list.leader)
        .is_some_and(|r| r.running && !r.in_recovery)
    {
        return Err(Refusal::LeaderStillPrimary(list.leader).into());
    }
    let without = ClusterView {
        failsafe: None,
        ..view.clone()
    };
    let target = check(&without, Lsn(0), &request).map_err(Refusal::from)?;
    if check(&view, Lsn(0), &request).is_ok() {
        return self::request(store, request).await;
    }
    let written = write_request(store, &request).await?;
    // Written first: the target cannot act on it while the list stands, and acts on it (not
    // on an election of its own) as soon as the list is gone.
    let withdrawn = store
        .delete(Key::Failsafe, Guard::Revision(view.failsafe_revision))
        .await;
    if let Err(e) = withdrawn {
        let unwritten = store
            .delete(Key::Switchover, Guard::Revision(written))
            .await;
        if let Err(left) = unwritten {
            tracing::warn!(
                "the failover request written before the failsafe list was withdrawn stays \
                 pending (`pgha switchover --cancel` withdraws it): {left}"
            );
        }
        return Err(match e {
            StoreError::Conflict { .. } => Refusal::FailsafeListChanged.into(),
            other => other.into(),
        });
    }
    let event = failsafe_list_withdrawn(&list, &target, view.leader_position.as_ref());
    record(store, event, "the withdrawal of the failsafe list").await;
    Ok(Requested {
        target,
        from: request.from,
        checked_when_due: None,
    })
}

/// Deletes the pending switchover or failover request, if any, as it was read (another
/// operator's written since is not withdrawn unseen: `RequestChanged`); answers what it asked.
pub async fn cancel_request(store: &dyn Store) -> Result<Option<SwitchoverRequest>, OpError> {
    let Some(pending) = view(store).await?.switchover else {
        return Ok(None);
    };
    withdraw_request(store, pending).await.map(Some)
}

/// Deletes `pending` as it was read: `RequestChanged` when the key moved since.
async fn withdraw_request(
    store: &dyn Store,
    pending: PendingSwitchover,
) -> Result<SwitchoverRequest, OpError> {
    match store
        .delete(Key::Switchover, Guard::Revision(pending.revision))
        .await
    {
        Ok(()) => Ok(pending.request),
        Err(StoreError::Conflict { .. }) => Err(OpError::RequestChanged),
        Err(e) => Err(e.into()),
    }
}

/// Changes the dynamic config with compare-and-set, retrying if it moved meanwhile.
pub async fn update_config(
    store: &dyn Store,
    change: impl Fn(&mut ClusterConfig) -> Result<(), Refusal>,
) -> Result<ClusterConfig, OpError> {
    for _ in 0..5 {
        let snapshot = store.snapshot().await?;
        let current = snapshot.get(Key::Config).ok_or(OpError::NoConfig)?;
        // as stored, not validated: a change may mend a configuration that fails validation
        let mut config = pgha_store::stored_config(&snapshot)?.unwrap_or_default();
        change(&mut config)?;
        let json = serde_json::to_string(&config).expect("a config serialises");
        match store
            .put(Key::Config, &json, Guard::Revision(current.revision))
            .await
        {
            Ok(_) => return Ok(config),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OpError::Contended)
}

/// Writes `initial` as the dynamic config unless the store has one.
pub async fn ensure_config(store: &dyn Store, initial: &ClusterConfig) -> Result<(), OpError> {
    if store.snapshot().await?.get(Key::Config).is_none() {
        let json = serde_json::to_string(initial).expect("a config serialises");
        match store.put(Key::Config, &json, Guard::Absent).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Applies KEY=VALUE assignments to the dynamic config, all or none.
pub async fn set_assignments(
    store: &dyn Store,
    assignments: &[String],
) -> Result<ClusterConfig, OpError> {
    update_config(store, |c| {
        let pairs = assignments
            .iter()
            .map(|a| crate::dynamic::split_assignment(a))
            .collect::<Result<Vec<_>, _>>()?;
        *c = crate::dynamic::set_keys(c, pairs)?;
        Ok(())
    })
    .await
}

/// Sets `paused` (maintenance mode) in the dynamic config.
pub async fn set_paused(store: &dyn Store, paused: bool) -> Result<ClusterConfig, OpError> {
    update_config(store, |c| {
        c.paused = paused;
        Ok(())
    })
    .await
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
