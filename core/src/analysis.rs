//! Numbers about a checkpoint: parameter counts, training FLOPs per token, bytes by dtype, and
//! the paper's per-layer expert weight-norm profile.

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;
use crate::dtype::decode_f32;
use crate::error::Result;
use crate::reference::Mat;
use crate::roles::{expected_roles, is_routed_expert, role_shape, ExpertLayout, Proj, Role};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamCounts {
    /// Every trainable parameter stored (what transformers' `num_parameters()` reports; the
    /// DeepSeek-V3 correction bias is a buffer, updated by the balancing rule, not a parameter).
    pub total: u64,
    /// Parameters one token's forward pass uses: everything except the routed experts it does
    /// not go to (`top_k / E` of each MoE layer's routed experts count).
    pub activated: u64,
    /// Parameters of routed experts, all of them.
    pub routed_experts: u64,
    /// The input embedding table (included in both counts above).
    pub embedding: u64,
}

impl ParamCounts {
    /// Training FLOPs per token, `6 · N_activated`, the paper's accounting.
    pub fn train_flops_per_token(&self) -> u64 {
        6 * self.activated
    }
}

pub fn param_counts(ckpt: &Checkpoint) -> ParamCounts {
    param_counts_for(&ckpt.config, ckpt.layout)
}

/// Parameter counts implied by a config alone (a checkpoint's tensors always match its config;
/// the loader checks every shape), e.g. for a growth plan's result before it is written.
pub fn param_counts_for(cfg: &ModelConfig, layout: ExpertLayout) -> ParamCounts {
    let moe = &cfg.moe;
    let mut total = 0u64;
    let mut routed = 0u64;
    let mut embedding = 0u64;
    for role in expected_roles(cfg, layout) {
        if is_buffer(role) {
            continue;
        }
        let n = role_shape(cfg, role).iter().product::<usize>() as u64;
        total += n;
        if is_routed_expert(role) {
            routed += n;
        }
        if role == Role::Embed {
            embedding = n;
        }
    }
    let active_routed = if moe.num_experts == 0 {
        0
    } else {
        routed * moe.top_k as u64 / moe.num_experts as u64
    };
    ParamCounts {
        total,
        activated: total - routed + active_routed,
        routed_experts: routed,
        embedding,
    }
}

/// Tensors transformers registers as buffers rather than parameters.
pub fn is_buffer(role: Role) -> bool {
    matches!(role, Role::Layer(_, crate::roles::LayerRole::RouterBias))
}

/// Tensor count and bytes per dtype.
pub fn bytes_by_dtype(ckpt: &Checkpoint) -> BTreeMap<&'static str, (usize, u64)> {
    let mut out = BTreeMap::new();
    for e in ckpt.entries() {
        let slot = out.entry(e.dtype.name()).or_insert((0usize, 0u64));
        slot.0 += 1;
        slot.1 += e.nbytes() as u64;
    }
    out
}

/// `‖W‖_F / √numel` — the root-mean-square entry, comparable across matrix sizes.
pub fn rms(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    (values
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        / values.len() as f64)
        .sqrt()
}

/// The paper's per-layer expert weight norm: for every routed expert matrix (gate, up, down)
/// `‖W‖_F / √numel`, averaged over the three matrices and over experts. `None` for dense
/// layers. Converged models show it rising with depth; stacking breaks that profile with a
/// jump at the seam, interposition keeps it smooth.
pub fn expert_norm_profile(ckpt: &Checkpoint) -> Result<Vec<Option<f64>>> {
    let cfg = &ckpt.config;
    (0..cfg.num_layers)
        .map(|layer| {
            if !cfg.is_moe(layer) {
                return Ok(None);
            }
            let mut sum = 0.0;
            for e in 0..cfg.moe.num_experts {
                for p in Proj::ALL {
                    let (dtype, bytes) = ckpt.expert_bytes(layer, e, p)?;
                    sum += rms(&decode_f32(dtype, bytes));
                }
            }
            Ok(Some(sum / (3 * cfg.moe.num_experts) as f64))
        })
        .collect()
}

/// How far two models' logits on the same tokens are apart.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LogitComparison {
    pub max_abs_diff: f32,
    /// Mean over positions of KL(softmax(a) ‖ softmax(b)).
    pub mean_kl: f64,
    /// Share of positions whose arg-max token agrees.
    pub top1_agreement: f64,
}

pub fn compare_logits(a: &Mat, b: &Mat) -> LogitComparison {
    let log_softmax = |row: &[f32]| -> Vec<f64> {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|x| (*x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        row.iter().map(|x| *x as f64 - lse).collect()
    };
    let argmax = |row: &[f32]| crate::reference::routing::top_k(row, 1)[0];
    let mut kl = 0.0;
    let mut agree = 0usize;
    let mut max = 0.0f32;
    for t in 0..a.rows {
        let (ra, rb) = (a.row(t), b.row(t));
        let (la, lb) = (log_softmax(ra), log_softmax(rb));
        kl += la
            .iter()
            .zip(&lb)
            .map(|(p, q)| p.exp() * (p - q))
            .sum::<f64>();
        agree += (argmax(ra) == argmax(rb)) as usize;
        max = ra
            .iter()
            .zip(rb)
            .map(|(x, y)| (x - y).abs())
            .fold(max, f32::max);
    }
    LogitComparison {
        max_abs_diff: max,
        mean_kl: kl / a.rows.max(1) as f64,
        top1_agreement: agree as f64 / a.rows.max(1) as f64,
    }
}
