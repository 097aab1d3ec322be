//! What a campaign does with a fault it could not inject: draw the next, draw the next once the
//! cluster is healthy again, or stop.

use pgha_host::client::ClientError;

use crate::error::ChaosError;

/// What follows a fault that could not be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInjected {
    /// Refused by the cluster, or impossible from here (no postmaster of the victim on this
    /// machine): the next fault is drawn.
    Skip,
    /// Nothing answered where it was to be sent (the victim's agent down for a moment, as
    /// under a fault of your own beside the campaign's): the next fault is drawn once the
    /// cluster is healthy again. No promise was broken: nothing was injected.
    SkipOnceHealthy,
    /// Anything else: the campaign cannot go on.
    Stop,
}

impl NotInjected {
    /// What follows the injection's error `e`.
    pub fn after(e: &ChaosError) -> NotInjected {
        match e {
            ChaosError::Api(ClientError::Failed(_)) | ChaosError::Inject { .. } => {
                NotInjected::Skip
            }
            ChaosError::Api(ClientError::Unreachable { .. }) => NotInjected::SkipOnceHealthy,
            _ => NotInjected::Stop,
        }
    }

    /// The line the campaign's log shows for it.
    pub fn line(self, kind: &str, e: &ChaosError) -> String {
        match (self, e) {
            (NotInjected::Skip, ChaosError::Api(ClientError::Failed(f))) => {
                format!("{kind}: refused by the cluster ({}), skipped", f.error)
            }
            (NotInjected::Skip, _) => format!("{e}; skipped"),
            (NotInjected::SkipOnceHealthy, _) => {
                format!("{kind}: {e}; skipped, the next fault once the cluster is healthy again")
            }
            (NotInjected::Stop, _) => format!("{kind}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `bench/chaos_dist.sh` with `OVERLAP=1` (2026-12-06, `SYNC=on`, seed 20261331):
    /// the second nemesis killed n3's agent 2.8 s before the campaign sent its next fault, a
    /// stop of n3, to n3's API; nothing answered, and the campaign stopped there with the
    /// verdict "PROMISE BROKEN" (exit 3), though nothing had been injected and nothing was
    /// lost. Nothing answering now skips the fault once the cluster is healthy again.
    #[test]
    fn a_fault_nobody_answered_is_skipped_not_a_broken_promise() {
        let unreachable = ChaosError::Api(ClientError::Unreachable {
            tried: vec!["http://10.203.73.13:8008".into()],
        });
        assert_eq!(
            NotInjected::after(&unreachable),
            NotInjected::SkipOnceHealthy
        );
        let line = NotInjected::SkipOnceHealthy.line("stop-primary", &unreachable);
        assert!(
            line.contains("nothing answers on http://10.203.73.13:8008")
                && line.contains("skipped"),
            "{line}"
        );
        let garbled = ChaosError::Api(ClientError::Garbled {
            url: "http://x".into(),
            detail: "not JSON".into(),
        });
        assert_eq!(NotInjected::after(&garbled), NotInjected::Stop);
        let timeout = ChaosError::Timeout {
            what: "a kill".into(),
            seconds: 5,
        };
        assert_eq!(NotInjected::after(&timeout), NotInjected::Stop);
    }
}
