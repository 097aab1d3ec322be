//! Timing settings that are valid but leave less room than they seem to: the failsafe's to
//! bridge a store outage, and a safety margin under a fifth of the ttl (raised in effect).

use std::fmt;

use crate::config::ClusterConfig;

/// `ttl_ms` is at most [`FailsafeTooTight::floor_ms`]: a store outage may end the leader's
/// trust in its lease before every member has noticed it and confirmed the leader, and the
/// leader then demotes where a longer ttl would have kept it writing through the outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailsafeTooTight {
    pub ttl_ms: u64,
    pub loop_wait_ms: u64,
    pub safety_margin_ms: u64,
    /// `safety_margin_ms + 2 × loop_wait_ms + 3 × ` a store call's bound (half the margin,
    /// 250 ms to 2 s): the leader's last renewal went out a loop before the outage began; a
    /// member writing to the store as it begins waits out that call's bound and maybe one
    /// more, then a loop, then its read's bound before its read fails and it may confirm (the
    /// leader's own read fails no later, and asks it again every 100 ms); the leader's trust
    /// ends a margin before the ttl. About: the `etcd_disk_stalled` test measured 2.2 s from
    /// the last renewal to the first confirmation where this gives 2.5 s.
    pub floor_ms: u64,
}

impl fmt::Display for FailsafeTooTight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ttl_ms {} with loop_wait_ms {} and safety_margin_ms {}: a store outage may end \
             the leader's trust in its lease before every member has noticed it and \
             confirmed the leader (failsafe), and the leader then demotes; raise ttl_ms \
             above {} (safety_margin_ms + 2 x loop_wait_ms + 3 store call bounds of half \
             the margin, 2 s at most) for the failsafe to keep it writing through an outage",
            self.ttl_ms, self.loop_wait_ms, self.safety_margin_ms, self.floor_ms
        )
    }
}

impl ClusterConfig {
    /// Whether these (valid) timing settings may leave the failsafe no room: see
    /// [`FailsafeTooTight`].
    pub fn failsafe_too_tight(&self) -> Option<FailsafeTooTight> {
        let floor_ms = (self.margin_ms())
            .saturating_add(self.loop_wait_ms.saturating_mul(2))
            .saturating_add(self.store_call_bound_ms().saturating_mul(3));
        (self.ttl_ms <= floor_ms).then_some(FailsafeTooTight {
            ttl_ms: self.ttl_ms,
            loop_wait_ms: self.loop_wait_ms,
            safety_margin_ms: self.safety_margin_ms,
            floor_ms,
        })
    }
}

/// `safety_margin_ms` is under a fifth of `ttl_ms`: the lease arithmetic uses a fifth (see
/// [`ClusterConfig::margin_ms`]), so the leader demotes that much before the lease's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarginRaised {
    pub ttl_ms: u64,
    pub safety_margin_ms: u64,
    pub used_ms: u64,
}

impl fmt::Display for MarginRaised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "safety_margin_ms {} is under a fifth of ttl_ms {}: {} ms is used, so that the \
             lease holds while the leader's clock runs up to a tenth slow (NTP daemons slew a \
             clock after a step, chrony by up to 8.3 % for hours); set safety_margin_ms to {} \
             or more to say what is in force",
            self.safety_margin_ms, self.ttl_ms, self.used_ms, self.used_ms
        )
    }
}

impl ClusterConfig {
    /// Whether the margin in force is more than the one set: see [`MarginRaised`].
    pub fn margin_raised(&self) -> Option<MarginRaised> {
        let used_ms = self.margin_ms();
        (used_ms > self.safety_margin_ms).then_some(MarginRaised {
            ttl_ms: self.ttl_ms,
            safety_margin_ms: self.safety_margin_ms,
            used_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ttl_ms: u64, safety_margin_ms: u64, loop_wait_ms: u64) -> ClusterConfig {
        ClusterConfig {
            ttl_ms,
            safety_margin_ms,
            loop_wait_ms,
            ..ClusterConfig::default()
        }
    }

    /// The defaults leave room; a 3 s ttl with the margin and loop `ttl_ms=3000` brings
    /// (750 ms, 1 s) does not, nor do the test clusters' (1 s, 500 ms), though both are valid.
    #[test]
    fn small_ttls_may_leave_the_failsafe_no_room() {
        assert_eq!(ClusterConfig::default().failsafe_too_tight(), None);
        let examples = [(3_000, 750, 1_000, 3_875), (3_000, 1_000, 500, 3_500)];
        for (ttl, margin, loop_wait, floor) in examples {
            let config = timing(ttl, margin, loop_wait);
            assert_eq!(config.validate(), Ok(()));
            let tight = config.failsafe_too_tight().expect("too tight");
            assert_eq!(tight.floor_ms, floor);
            assert!(
                tight.to_string().contains(&format!("above {floor}")),
                "{tight}"
            );
        }
        // operations.md quotes the note for its example, word for word.
        let ops = include_str!("../../../docs/operations.md");
        let tight = timing(3_000, 1_000, 500).failsafe_too_tight().unwrap();
        assert!(ops.contains(&format!("pgha: note: {tight}\n")), "{tight}");
        assert_eq!(timing(4_500, 1_000, 500).failsafe_too_tight(), None);
        // The defaults: 2.5 s + 2 s + 3 x 1.25 s.
        assert_eq!(timing(8_251, 2_500, 1_000).failsafe_too_tight(), None);
        assert!(timing(8_250, 2_500, 1_000).failsafe_too_tight().is_some());
        // A store call is bounded by 2 s at most, whatever the margin.
        assert_eq!(timing(20_000, 8_000, 1_000).failsafe_too_tight(), None);
        assert!(timing(16_000, 8_000, 1_000).failsafe_too_tight().is_some());
    }

    /// The defaults and the margins `pgha config set ttl_ms=...` brings (a quarter) are in
    /// force as set; under a fifth, a fifth is used, and said.
    #[test]
    fn a_margin_under_a_fifth_of_the_ttl_is_raised_and_said() {
        assert_eq!(ClusterConfig::default().margin_raised(), None);
        assert_eq!(timing(30_000, 7_500, 1_000).margin_raised(), None);
        assert_eq!(timing(30_000, 6_000, 1_000).margin_raised(), None);
        let raised = timing(30_000, 2_500, 1_000);
        assert_eq!(raised.margin_ms(), 6_000);
        let note = raised.margin_raised().unwrap().to_string();
        assert!(note.contains("6000 ms is used"), "{note}");
        assert_eq!(timing(3_000, 500, 500).margin_ms(), 600);
    }
}
