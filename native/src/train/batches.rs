//! Training batches from a token stream: the stream is cut into non-overlapping windows of
//! `seq_len + 1` tokens; each epoch visits them in a seeded random order. The position in that
//! order is all a resumed run needs to continue with the same batches.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Batches {
    tokens: Vec<u32>,
    seq_len: usize,
    seed: u64,
    windows: usize,
    /// The order of the current epoch and which epoch it is.
    order: Vec<usize>,
    epoch: usize,
}

impl Batches {
    pub fn new(tokens: Vec<u32>, seq_len: usize, seed: u64) -> anyhow::Result<Batches> {
        let windows = tokens.len().saturating_sub(1) / seq_len;
        if windows == 0 {
            anyhow::bail!(
                "the training text has {} tokens, fewer than one sequence of {} + 1; use a larger corpus or a shorter --seq-len",
                tokens.len(),
                seq_len
            );
        }
        Ok(Batches {
            tokens,
            seq_len,
            seed,
            windows,
            order: Vec::new(),
            epoch: usize::MAX,
        })
    }

    #[cfg(test)]
    pub fn windows(&self) -> usize {
        self.windows
    }

    fn order_of(&mut self, epoch: usize) {
        if self.epoch != epoch {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch as u64);
            self.order = (0..self.windows).collect();
            self.order.shuffle(&mut rng);
            self.epoch = epoch;
        }
    }

    /// The `batch` windows starting at position `pos` of the global order: inputs and targets,
    /// each `batch · seq_len` token ids, row-major.
    pub fn batch(&mut self, pos: u64, batch: usize) -> (Vec<i64>, Vec<i64>) {
        let mut inputs = Vec::with_capacity(batch * self.seq_len);
        let mut targets = Vec::with_capacity(batch * self.seq_len);
        for i in 0..batch as u64 {
            let p = pos + i;
            let epoch = (p / self.windows as u64) as usize;
            self.order_of(epoch);
            let w = self.order[(p % self.windows as u64) as usize];
            let start = w * self.seq_len;
            let span = &self.tokens[start..start + self.seq_len + 1];
            inputs.extend(span[..self.seq_len].iter().map(|&t| t as i64));
            targets.extend(span[1..].iter().map(|&t| t as i64));
        }
        (inputs, targets)
    }
}

/// Held-out windows in order (evaluation is the same text every time).
pub fn eval_windows(tokens: &[u32], seq_len: usize, max: usize) -> Vec<(Vec<i64>, Vec<i64>)> {
    let n = (tokens.len().saturating_sub(1) / seq_len).min(max);
    (0..n)
        .map(|w| {
            let span = &tokens[w * seq_len..w * seq_len + seq_len + 1];
            (
                span[..seq_len].iter().map(|&t| t as i64).collect(),
                span[1..].iter().map(|&t| t as i64).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_a_seeded_permutation_and_positions_are_stable() {
        let tokens: Vec<u32> = (0..1001).collect();
        let mut a = Batches::new(tokens.clone(), 10, 7).unwrap();
        assert_eq!(a.windows(), 100);
        // One full epoch visits every window once.
        let mut seen: Vec<i64> = (0..100).map(|p| a.batch(p, 1).0[0]).collect();
        seen.sort();
        assert_eq!(seen, (0..100).map(|w| w * 10).collect::<Vec<i64>>());
        // Position 57 gives the same batch whatever was read before (resume).
        let mut b = Batches::new(tokens.clone(), 10, 7).unwrap();
        assert_eq!(a.batch(57, 3), b.batch(57, 3));
        // Targets are the inputs shifted by one.
        let (x, y) = b.batch(120, 2);
        assert_eq!(&x[1..10], &y[..9]);
        // Another seed, another order.
        let mut c = Batches::new(tokens, 10, 8).unwrap();
        assert_ne!(
            (0..10).map(|p| c.batch(p, 1).0[0]).collect::<Vec<_>>(),
            (0..10).map(|p| b.batch(p, 1).0[0]).collect::<Vec<_>>()
        );
    }
}
