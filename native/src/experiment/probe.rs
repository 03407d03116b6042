//! Measurements on a checkpoint beyond its loss: how routing spreads tokens over experts
//! (expert load, from the reference forward pass on held-out tokens) and, after width growth,
//! how similar each expert still is to its copy (do the twins diverge with training?).

use moegrow_core::analysis::expert_similarity;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::Checkpoint;
use serde_json::{json, Value};

pub struct Probe {
    /// Held-out token ids the forward pass routes.
    pub tokens: Vec<u32>,
}

impl Probe {
    /// `{load: [share of selections per expert, averaged over MoE layers], twin_cosine}`;
    /// `twin_cosine` is the mean cosine similarity of expert `e` and expert `e + E/2` (the copy
    /// width growth appends), `null` for an odd expert count.
    pub fn measure(&self, ckpt: &Checkpoint) -> anyhow::Result<Value> {
        let cfg = &ckpt.config;
        let e = cfg.moe.num_experts;
        let out = ReferenceModel::load(ckpt)?.forward(&self.tokens)?;
        let mut load = vec![0.0f64; e];
        let mut layers = 0usize;
        for choices in out.choices.iter().flatten() {
            layers += 1;
            let picks: usize = choices.iter().map(|c| c.experts.len()).sum();
            for c in choices {
                for &x in &c.experts {
                    load[x] += 1.0 / picks.max(1) as f64;
                }
            }
        }
        load.iter_mut().for_each(|l| *l /= layers.max(1) as f64);
        let twin = if e % 2 == 0 {
            let half = e / 2;
            let mut sum = 0.0;
            let mut n = 0usize;
            for l in cfg.moe_layers() {
                let cos = expert_similarity(ckpt, l)?;
                for i in 0..half {
                    sum += cos[i * e + i + half] as f64;
                    n += 1;
                }
            }
            Some(sum / n.max(1) as f64)
        } else {
            None
        };
        Ok(json!({"load": load, "twin_cosine": twin}))
    }
}
