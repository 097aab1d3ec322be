//! Longer ttls the configuration held lately: the last renewal of a leader whose key went early
//! may have been on one, so a vacancy's window counts by the longest that may still apply.

use crate::types::Millis;

/// Each ttl (ms) a live change replaced with a shorter one, and when this member saw it go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplacedTtls(Vec<(u64, Millis)>);

impl ReplacedTtls {
    /// The configuration read at `now` says `new` where this member acted on `old`. Keeps a
    /// longer one, and forgets those no vacancy begun at `vacancy` or later can count.
    pub(crate) fn note(&mut self, old: u64, new: u64, vacancy: Millis, now: Millis) {
        self.0.retain(|&(ttl, gone)| applies(ttl, gone, vacancy));
        if old > new {
            self.0.push((old, now));
        }
    }

    /// The longest ttl the old leader's lease may have been renewed on, for a vacancy this
    /// member saw begin at `since`: `current`, or a longer one that applies.
    pub(crate) fn longest_for(&self, since: Millis, current: u64) -> u64 {
        self.0
            .iter()
            .filter(|&&(ttl, gone)| applies(ttl, gone, since))
            .map(|&(ttl, _)| ttl)
            .fold(current, u64::max)
    }
}

/// Whether a lease renewed on `ttl`, replaced at `gone`, may keep its holder writing into a
/// vacancy begun at `since`: a leader decides a renewal on the ttl it read, up to a store call
/// (under a ttl) after the change was written, and writes on for under a ttl after that (its
/// margin at least a fifth, less what a clock running slow loses): a vacancy begun two ttls
/// after the change is seen comes after it stopped.
fn applies(ttl: u64, gone: Millis, since: Millis) -> bool {
    since.since(gone) < 2 * ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_longer_ttl_counts_for_two_of_its_own_after_it_was_replaced() {
        let mut ttls = ReplacedTtls::default();
        ttls.note(10_000, 3_000, Millis(50_000), Millis(50_000));
        assert_eq!(ttls.longest_for(Millis(40_000), 3_000), 10_000); // begun before
        assert_eq!(ttls.longest_for(Millis(69_999), 3_000), 10_000);
        assert_eq!(ttls.longest_for(Millis(70_000), 3_000), 3_000);
        ttls.note(3_000, 10_000, Millis(60_000), Millis(60_000)); // raised: nothing to keep
        assert_eq!(ttls.longest_for(Millis(60_000), 10_000), 10_000);
        // forgotten once no vacancy from then on can count it
        ttls.note(10_000, 3_000, Millis(71_000), Millis(71_000));
        assert_eq!(ttls.0, vec![(10_000, Millis(71_000))]);
    }
}
