//! A reason with its clocks stopped: two steps that differ only in how long something has
//! lasted (or has left) made the same decision, and the log says it once.

use super::Reason;

impl Reason {
    /// This reason with every duration it counts set to zero.
    pub fn timeless(&self) -> Reason {
        use Reason::*;
        let mut r = self.clone();
        match &mut r {
            StoreDownLeaseTrusted { remaining_ms }
            | FailsafePromise { remaining_ms }
            | CloneFailing {
                retry_in_ms: remaining_ms,
                ..
            }
            | PromotionVetoed {
                hold_ms: remaining_ms,
                ..
            }
            | FenceStuckDemoting {
                fenced_in_ms: remaining_ms,
            } => *remaining_ms = 0,
            JobRunning { for_ms, .. }
            | PostgresUnresponsive { for_ms }
            | WalFlushStalled { for_ms, .. }
            | LeaderUnreachable { for_ms, .. }
            | PrimaryUnresponsiveDemoting { for_ms }
            | NotStreaming { for_ms, .. }
            | RestartingPrimary { down_ms: for_ms }
            | PrimaryNotRestartable { down_ms: for_ms } => *for_ms = 0,
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemberName;

    #[test]
    fn only_the_clocks_are_stopped() {
        let failing = |failures, retry_in_ms| Reason::CloneFailing {
            failures,
            retry_in_ms,
        };
        assert_eq!(failing(5, 5917).timeless(), failing(5, 743).timeless());
        assert_ne!(failing(5, 5917).timeless(), failing(6, 5917).timeless());
        let not_streaming = |leader: &str, for_ms| Reason::NotStreaming {
            leader: MemberName::new(leader),
            for_ms,
        };
        assert_eq!(
            not_streaming("n1", 0).timeless(),
            not_streaming("n1", 2).timeless()
        );
        assert_ne!(
            not_streaming("n1", 0).timeless(),
            not_streaming("n2", 0).timeless()
        );
        let leading = Reason::Leading { standbys: 2 };
        assert_eq!(leading.timeless(), leading);
    }
}
