//! Learning-rate schedules: constant, cosine and warmup-stable-decay, each after a linear
//! warmup.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Constant,
    Cosine,
    /// Warmup, a long constant phase, then a linear decay over the last `decay_fraction` of
    /// the steps (MiniCPM's WSD; the paper trains its bases this way so that any stable-phase
    /// checkpoint can be continued or cooled down).
    Wsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: Kind,
    pub lr: f64,
    pub warmup: usize,
    pub total: usize,
    /// The floor of cosine and WSD, as a fraction of `lr`.
    pub min_ratio: f64,
    /// WSD: the share of all steps spent decaying.
    pub decay_fraction: f64,
}

impl Schedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let min = self.lr * self.min_ratio;
        match self.kind {
            Kind::Constant => self.lr,
            Kind::Cosine => {
                let span = self.total.saturating_sub(self.warmup).max(1);
                let p = ((step - self.warmup) as f64 / span as f64).min(1.0);
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Kind::Wsd => {
                let decay = ((self.total as f64 * self.decay_fraction).round() as usize).max(1);
                let start = self.total.saturating_sub(decay).max(self.warmup);
                if step < start {
                    self.lr
                } else {
                    let p = ((step - start + 1) as f64 / decay as f64).min(1.0);
                    self.lr + (min - self.lr) * p
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: Kind) -> Schedule {
        Schedule {
            kind,
            lr: 1e-3,
            warmup: 10,
            total: 100,
            min_ratio: 0.1,
            decay_fraction: 0.2,
        }
    }

    #[test]
    fn warmup_is_linear_and_reaches_the_peak() {
        for k in [Kind::Constant, Kind::Cosine, Kind::Wsd] {
            let s = s(k);
            assert!((s.at(0) - 1e-4).abs() < 1e-12, "{k:?}");
            assert!((s.at(4) - 5e-4).abs() < 1e-12, "{k:?}");
            assert!((s.at(9) - 1e-3).abs() < 1e-12, "{k:?}");
        }
    }

    #[test]
    fn cosine_ends_at_the_floor_and_passes_the_midpoint_halfway() {
        let s = s(Kind::Cosine);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(55) - 0.55e-3).abs() < 1e-9, "{}", s.at(55));
        assert!((s.at(100) - 1e-4).abs() < 1e-12);
        assert!(s.at(30) > s.at(60));
    }

    #[test]
    fn wsd_is_flat_then_decays_linearly_over_the_last_fifth() {
        let s = s(Kind::Wsd);
        assert_eq!(s.at(10), 1e-3);
        assert_eq!(s.at(79), 1e-3);
        assert!(s.at(80) < 1e-3);
        assert!((s.at(89) - 0.55e-3).abs() < 1e-9, "{}", s.at(89));
        assert!((s.at(99) - 1e-4).abs() < 1e-12);
    }
}
