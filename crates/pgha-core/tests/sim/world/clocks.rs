//! Each member's clock: an offset from world time, and (in runs with rates) a rate off by up
//! to what an NTP daemon slews after a step (chrony: 83,333 ppm), the store's clock exact.

use super::*;

/// chrony's default `maxslewrate`: the most a slewing host's clocks run fast or slow, ppm.
pub const MAX_SLEW_PPM: i64 = 83_333;

impl Node {
    /// This member's clock reading at world time `world`.
    pub(super) fn local(&self, world: u64) -> u64 {
        let scaled = world as i128 * (1_000_000 + self.rate_ppm) as i128 / 1_000_000;
        scaled as u64 + self.offset
    }

    /// The world time at which this member's clock reads `local` (0 before it began).
    pub(super) fn world(&self, local: u64) -> u64 {
        let since = local.saturating_sub(self.offset) as i128;
        // rounded up: the world instant by which the clock has reached `local`
        let rate = (1_000_000 + self.rate_ppm) as i128;
        ((since * 1_000_000 + rate - 1) / rate) as u64
    }
}

impl World {
    /// Gives each member a clock running at its own rate: slow or fast by the most chrony
    /// slews, or by a random part of it, or exact (each a quarter of the members). Half the
    /// seeds start with a long ttl and a thin margin (30 s, 2.5 s: valid, raised in effect to
    /// a fifth of the ttl), until a live change of the ttl.
    pub fn with_clock_rates(mut self) -> World {
        if self.seed % 2 == 0 {
            self.config.ttl_ms = 30_000;
            self.config.safety_margin_ms = 2_500;
        }
        for i in 0..self.nodes.len() {
            self.nodes[i].rate_ppm = match self.rng.below(4) {
                0 => -MAX_SLEW_PPM,
                1 => MAX_SLEW_PPM,
                2 => self.rng.below(2 * MAX_SLEW_PPM as u64 + 1) as i64 - MAX_SLEW_PPM,
                _ => 0,
            };
        }
        self
    }
}
