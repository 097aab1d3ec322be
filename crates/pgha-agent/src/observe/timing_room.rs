//! Says once per timing read when the settings, valid, may leave the failsafe no room.

use pgha_core::ClusterConfig;

use crate::agent::Agent;

impl Agent {
    /// Warns when `config`'s ttl, margin and loop interval, looked at for the first time,
    /// may let a store outage end the leader's trust before the members confirm it.
    pub(super) fn say_if_failsafe_too_tight(&mut self, config: &ClusterConfig) {
        let timing = (config.ttl_ms, config.safety_margin_ms, config.loop_wait_ms);
        if self.timing_looked_at.replace(timing) == Some(timing) {
            return;
        }
        if let Some(tight) = config.failsafe_too_tight() {
            tracing::warn!("{}: {tight}", self.spec.name);
        }
        if let Some(raised) = config.margin_raised() {
            tracing::warn!("{}: {raised}", self.spec.name);
        }
    }
}
