//! Synchronous standby management: which standbys, and the order PostgreSQL and store learn it.
//!
//! [`SyncSet`] is what the store publishes and [`SyncApplied`] what PostgreSQL counts
//! (`sets`); [`desired`] and [`before_promotion`] choose the standbys, [`set_at_promotion`] what a
//! winner publishes before its first write (`choice`);
//! [`next_step`] orders a change so the published set always covers what PostgreSQL counts
//! (`ordering`); [`removal_ready`] holds a removal until a staying member caught up (`removal`);
//! [`with_possible_holders`] widens the first members of a set that named only its leader
//! (`holders`); [`SyncInForce`] is what a leader publishes once both match the settings
//! (`in_force`);
//! [`StandbyStalls`] finds standbys that stopped confirming, which no longer count (`stalls`);
//! [`UnseenSets`] are sets it published that may still land (`unseen`); [`KeptRecords`] keeps
//! counting standbys whose records a store outage let expire, for a ttl (`kept_records`);
//! [`Reconnecting`] keeps mode `on` counting the standbys of a new primary while they connect
//! (`reconnecting`).

mod choice;
mod holders;
mod in_force;
mod kept_records;
mod ordering;
mod reconnecting;
mod removal;
mod sets;
mod stalls;
#[cfg(test)]
mod tests;
mod unseen;

pub use choice::{before_promotion, blocking, desired, set_at_promotion, NO_STANDBY};
pub use holders::with_possible_holders;
pub use in_force::{LeaderSync, SyncInForce};
pub use kept_records::KeptRecords;
pub use ordering::{next_step, SyncStep};
pub use reconnecting::Reconnecting;
pub use removal::{removal_ready, RemovalMark};
pub use sets::{SyncApplied, SyncSet};
pub use stalls::{without_stalled, Confirms, Stalled, StandbyStalls};
pub use unseen::UnseenSets;
