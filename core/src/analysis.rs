//! Numbers about a checkpoint: parameter counts, training FLOPs per token, bytes by dtype, and
//! the paper's per-layer expert weight-norm profile.

use crate::checkpoint::Checkpoint;
use crate::config::{Attention, ModelConfig, QkNorm};
use crate::error::Result;
use crate::reference::Mat;
use crate::roles::{Proj, Role};
use crate::schema::{specs, Kind};
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
    /// Parameters of the multi-token-prediction blocks, not included above (transformers does
    /// not load them; they serve training and speculative decoding).
    #[serde(skip_serializing_if = "is_zero")]
    pub mtp: u64,
    /// Parameters outside the language model (a vision tower and its projector, carried
    /// verbatim): in `total`, as transformers counts them, but not in `activated` (a text
    /// token does not use them).
    #[serde(skip_serializing_if = "is_zero")]
    pub towers: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ParamCounts {
    /// Training FLOPs per token, `6 · N_activated`, the paper's accounting.
    pub fn train_flops_per_token(&self) -> u64 {
        6 * self.activated
    }
}

pub fn param_counts(ckpt: &Checkpoint) -> ParamCounts {
    param_counts_for(&ckpt.config)
}

/// Parameter counts implied by a config alone (a checkpoint's tensors always match its config;
/// the loader checks every shape), e.g. for a growth plan's result before it is written.
pub fn param_counts_for(cfg: &ModelConfig) -> ParamCounts {
    let moe = &cfg.moe;
    let (mut total, mut routed, mut embedding, mut mtp) = (0u64, 0u64, 0u64, 0u64);
    for s in specs(cfg) {
        let n = s.numel() as u64;
        match (s.kind, s.role) {
            // transformers makes ERNIE-4.5's correction bias a parameter (DeepSeek's is a buffer).
            (Kind::Buffer, Role::Layer(_, crate::roles::LayerRole::RouterBias))
                if cfg.family == crate::Family::Ernie45Moe =>
            {
                total += n
            }
            (Kind::Buffer, _) => {}
            (_, Role::Mtp(..)) => mtp += n,
            (kind, role) => {
                total += n;
                if kind == Kind::Experts {
                    routed += n;
                }
                if role == Role::Embed {
                    embedding = n;
                }
            }
        }
    }
    let active_routed = if moe.num_experts == 0 {
        0
    } else {
        routed * moe.top_k as u64 / moe.num_experts as u64
    };
    // A carried multi-token-prediction block (Qwen3.5's `mtp.*`, ERNIE-4.5's `model.mtp_*`)
    // counts with the MTP blocks,
    // outside the total, as transformers (which ignores it) counts; other towers in the total.
    let (mut towers, mut carried_mtp) = (0u64, 0u64);
    for c in &cfg.carried {
        let n = c.shape.iter().product::<usize>() as u64;
        if c.name.starts_with("mtp.") || c.name.starts_with("model.mtp_") {
            carried_mtp += n;
        } else {
            towers += n;
        }
    }
    ParamCounts {
        total: total + towers,
        activated: total - routed + active_routed,
        routed_experts: routed,
        embedding,
        mtp: mtp + carried_mtp,
        towers,
    }
}

/// Tensor count and bytes per dtype.
pub fn bytes_by_dtype(ckpt: &Checkpoint) -> BTreeMap<&'static str, (usize, u64)> {
    let mut out = BTreeMap::new();
    for e in ckpt.entries() {
        let slot = out.entry(e.dtype.name()).or_insert((0usize, 0u64));
        slot.0 += 1;
        slot.1 += e.nbytes() as u64;
        if let Some(s) = &e.scale {
            let slot = out.entry(s.dtype.name()).or_insert((0usize, 0u64));
            slot.0 += 1;
            slot.1 += s.range.len() as u64;
            // compressed-tensors int4's `weight_shape`: two integers beside each weight.
            if s.format == crate::quant::QuantFormat::Int4 {
                let slot = out.entry(s.shape_dtype.name()).or_insert((0usize, 0u64));
                slot.0 += 1;
                slot.1 += 2 * s.shape_dtype.size().unwrap_or(4) as u64;
            }
        }
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
    (0..ckpt.config.num_layers)
        .map(|layer| layer_expert_norm(ckpt, layer))
        .collect()
}

/// One layer of [`expert_norm_profile`]; needs only that layer's expert tensors resident, so a
/// lazy reader (the browser) can fetch, compute and drop one layer at a time.
pub fn layer_expert_norm(ckpt: &Checkpoint, layer: usize) -> Result<Option<f64>> {
    let cfg = &ckpt.config;
    if !cfg.is_moe(layer) {
        return Ok(None);
    }
    let mut sum = 0.0;
    for e in 0..cfg.moe.num_experts {
        for p in Proj::ALL {
            // Decoded, or dequantised with its block scales for float8 checkpoints.
            sum += rms(&ckpt.expert_f32(layer, e, p)?);
        }
    }
    Ok(Some(sum / (3 * cfg.moe.num_experts) as f64))
}

/// Every stored tensor of one layer slot (what growth and the per-layer statistics read).
pub fn slot_roles(ckpt: &Checkpoint, slot: crate::roles::LayerSlot) -> Vec<Role> {
    ckpt.entries()
        .iter()
        .filter(|e| e.role.layer_part().is_some_and(|(s, _)| s == slot))
        .map(|e| e.role)
        .collect()
}

/// Expert × expert cosine similarity of one MoE layer, row-major `[E, E]`: each expert is the
/// concatenation of its gate, up and down matrices. Copies made by width growth show as
/// off-diagonal entries near 1 (exactly 1 without noise).
pub fn expert_similarity(ckpt: &Checkpoint, layer: usize) -> Result<Vec<f32>> {
    let n = ckpt.config.moe.num_experts;
    let mut gram = vec![0.0f64; n * n];
    for p in Proj::ALL {
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|e| ckpt.expert_f32(layer, e, p))
            .collect::<Result<_>>()?;
        for i in 0..n {
            for j in i..n {
                let d: f64 = rows[i]
                    .iter()
                    .zip(&rows[j])
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                gram[i * n + j] += d;
                if i != j {
                    gram[j * n + i] += d;
                }
            }
        }
    }
    Ok((0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            let den = (gram[i * n + i] * gram[j * n + j]).sqrt();
            if den > 0.0 {
                (gram[ij] / den) as f32
            } else {
                0.0
            }
        })
        .collect())
}

/// Summary statistics of a tensor, accumulated chunk by chunk (a tensor larger than memory is
/// read in slices).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TensorStats {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub rms: f64,
    pub min: f64,
    pub max: f64,
    pub zeros: u64,
    /// NaN and ±inf entries (excluded from the moments).
    pub non_finite: u64,
}

#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    n: u64,
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
    zeros: u64,
    non_finite: u64,
}

impl Default for StatsAccumulator {
    fn default() -> Self {
        StatsAccumulator {
            n: 0,
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zeros: 0,
            non_finite: 0,
        }
    }
}

impl StatsAccumulator {
    pub fn push(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                self.non_finite += 1;
                continue;
            }
            let v = v as f64;
            self.n += 1;
            self.sum += v;
            self.sumsq += v * v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.zeros += (v == 0.0) as u64;
        }
    }

    pub fn finish(&self) -> TensorStats {
        if self.n == 0 {
            return TensorStats {
                non_finite: self.non_finite,
                ..Default::default()
            };
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        TensorStats {
            count: self.n,
            mean,
            std: (self.sumsq / n - mean * mean).max(0.0).sqrt(),
            rms: (self.sumsq / n).sqrt(),
            min: self.min,
            max: self.max,
            zeros: self.zeros,
            non_finite: self.non_finite,
        }
    }
}

/// Equal-width histogram over `[lo, hi]`; values outside land in the end bins, non-finite
/// values are skipped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(lo: f64, hi: f64, bins: usize) -> Histogram {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        Histogram {
            lo,
            hi,
            counts: vec![0; bins.max(1)],
        }
    }

    pub fn push(&mut self, values: &[f32]) {
        let bins = self.counts.len();
        let scale = bins as f64 / (self.hi - self.lo);
        for &v in values {
            if v.is_finite() {
                let b = (((v as f64) - self.lo) * scale).floor();
                self.counts[b.clamp(0.0, (bins - 1) as f64) as usize] += 1;
            }
        }
    }
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

/// RoPE base, scaling and rotary dimension, in words.
pub fn rope_words(c: &ModelConfig) -> String {
    use crate::rope::RopeScaling::*;
    let scaling = match &c.rope.scaling {
        Default => "plain".to_string(),
        Linear { factor } => format!("linear ×{factor}"),
        Dynamic { factor, max_positions } => format!("dynamic NTK ×{factor} past {max_positions}"),
        Yarn {
            factor,
            original_max_positions,
            ..
        } => format!(
            "yarn ×{factor} from {original_max_positions}, attention factor {}",
            c.rope.attention_factor()
        ),
        Llama3 { factor, .. } => format!("llama3 ×{factor}"),
        Unsupported(t) => format!("{t} (not computed)"),
    };
    format!(
        "base {}, {scaling}, {} rotary dimensions per head",
        c.rope.theta,
        crate::rope::rotary_dim(c)
    )
}

/// The routing formula and what the experts compute, in words.
pub fn routing_words(c: &crate::ModelConfig) -> String {
    let mut s = if c.router_logit_bias {
        // gpt-oss: top-k on the biased logits, softmax over the chosen — the same weights as
        // a softmax over all experts renormalised over the chosen.
        format!(
            "router logits + bias, top-{} on the logits, softmax over the chosen",
            c.moe.top_k
        )
    } else {
        c.moe.router.describe(c.moe.top_k)
    };
    if c.expert_input_scaling {
        s.push_str("; the weight scales each chosen expert's input (expert(w·x)), not its output");
    }
    if c.expert_bias {
        s.push_str("; experts with biases");
    }
    if let crate::config::ExpertAct::ClampedSwiglu { alpha, limit } = c.expert_act {
        s.push_str(&format!(
            "; clamped SwiGLU (gate ≤ {limit}, |up| ≤ {limit}, (up + 1)·gate·σ({alpha}·gate))"
        ));
    }
    if let Some(q) = &c.quant {
        if q.format == crate::quant::QuantFormat::Mxfp4 {
            s.push_str("; routed experts stored MXFP4 (fp4 e2m1, an E8M0 scale per 32)");
        }
        if q.format == crate::quant::QuantFormat::Int4 {
            s.push_str(&format!(
                "; routed experts stored compressed-tensors int4 (symmetric, a scale per {} values of a row)",
                q.block[1]
            ));
        }
    }
    s
}

/// How attention is set up, in words (`inspect` and the browser's summary).
pub fn attention_words(c: &crate::ModelConfig) -> String {
    match &c.attention {
        Attention::Standard {
            qkv_bias,
            o_bias,
            qk_norm,
            clip_qkv,
        } => {
            let mut s = format!(
                "{} heads, {} KV heads (GQA), head dim {}",
                c.num_heads, c.num_kv_heads, c.head_dim
            );
            match qk_norm {
                QkNorm::PerHead => s.push_str(", per-head q/k RMSNorm"),
                QkNorm::FullWidth => s.push_str(", full-width q/k RMSNorm"),
                QkNorm::L2AfterRope => s.push_str(", weightless q/k L2 norm after RoPE on the RoPE layers"),
                QkNorm::None => {}
            }
            match (qkv_bias, o_bias) {
                (true, true) => s.push_str(", q/k/v/o biases"),
                (true, false) => s.push_str(", q/k/v biases"),
                (false, true) => s.push_str(", o bias"),
                (false, false) => {}
            }
            if let Some(c) = clip_qkv {
                s.push_str(&format!(", q/k/v clipped to ±{c}"));
            }
            if c.attention_sinks {
                s.push_str(", a learned sink logit per head in every softmax");
            }
            let windowed: Vec<usize> = c.sliding_window.iter().flatten().copied().collect();
            if let Some(w) = windowed.first() {
                if windowed.len() == c.num_layers {
                    s.push_str(&format!(", sliding window {w} on every layer"));
                } else {
                    s.push_str(&format!(
                        ", sliding window {w} on {} of {} layers (the rest full)",
                        windowed.len(),
                        c.num_layers
                    ));
                }
            }
            if c.rope_interleave {
                s.push_str(", RoPE on interleaved pairs");
            }
            if let Some(la) = c.linear_attention {
                let n = c.linear_layers.iter().filter(|l| **l).count();
                s.push_str(&format!(
                    ", Gated DeltaNet on {n} of {} layers ({} key heads × {}, {} value heads × {}, conv {})",
                    c.num_layers, la.key_heads, la.key_head_dim, la.value_heads, la.value_head_dim, la.conv_kernel
                ));
            }
            if c.attn_output_gate {
                s.push_str(", sigmoid output gate from q_proj");
            }
            if c.zero_centered_norms {
                s.push_str(", zero-centred RMSNorm weights (× (1 + w))");
            }
            let nope = c.rope_layers.iter().filter(|r| !**r).count();
            if nope > 0 {
                s.push_str(&format!(", no RoPE on {nope} of {} layers", c.num_layers));
                if let Some(t) = c.attn_temperature {
                    s.push_str(&format!(
                        " (their queries × 1 + {}·ln(1 + ⌊(pos+1)/{}⌋))",
                        t.attn_scale, t.floor_scale
                    ));
                }
            }
            let chunked: Vec<usize> = c.attention_chunk.iter().flatten().copied().collect();
            if let Some(w) = chunked.first() {
                s.push_str(&format!(
                    ", chunked attention (blocks of {w}) on {} of {} layers",
                    chunked.len(),
                    c.num_layers
                ));
            }
            s
        }
        Attention::Mla(m) => format!(
            "MLA: {} heads, q {}, kv latent {}, qk dims {} nope + {} rope{}, v dim {}{}",
            c.num_heads,
            m.q_lora_rank
                .map_or("full rank".to_string(), |r| format!("rank {r}")),
            m.kv_lora_rank,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            if m.rope_interleave {
                " (interleaved)"
            } else {
                ""
            },
            m.v_head_dim,
            m.indexer.as_ref().map_or(String::new(), |i| format!(
                "; sparse-attention indexer {} heads × {}, top {} keys (computed as dense attention, exact up to {} tokens)",
                i.heads, i.head_dim, i.topk, i.topk
            ))
        ),
    }
}

/// Tensors and bytes stored in one dtype.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DtypeBytes {
    pub tensors: usize,
    pub bytes: u64,
}

/// The header-only facts about a checkpoint that `moegrow inspect` and the browser explorer
/// both show: architecture, parameter counts, FLOPs per token, tensors and bytes per dtype.
/// Nothing here reads a tensor, so it is instant even for a remote 70B checkpoint. Serialised
/// as `inspect --json` prints it and the page reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub family: &'static str,
    /// As `config.json` spells it (an alias such as `kimi_k2` included).
    pub model_type: String,
    pub layout: &'static str,
    pub files: Vec<String>,
    pub layers: usize,
    pub moe_layers: Vec<usize>,
    /// Multi-token-prediction blocks stored after the decoder layers.
    pub mtp_layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub attention: String,
    pub experts: usize,
    pub top_k: usize,
    pub expert_intermediate: usize,
    pub shared_expert_intermediate: Option<usize>,
    pub dense_intermediate: usize,
    pub routing: String,
    pub tie_word_embeddings: bool,
    pub parameters: ParamCounts,
    pub train_flops_per_token: u64,
    pub tensors: usize,
    pub bytes_by_dtype: BTreeMap<String, DtypeBytes>,
    /// RoPE, in words.
    pub rope: String,
    /// Settings the computing commands refuse (the checkpoint still opens, grows and
    /// converts).
    pub not_computed: Vec<String>,
    /// What the files do that the `safetensors` library would refuse.
    pub warnings: Vec<String>,
    /// The towers outside the language model, carried verbatim: each name prefix with its
    /// tensor count (empty for a plain language model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub towers: Vec<String>,
}

/// A wrapped model's towers in words: `vision_model.* 38 tensors`.
pub fn tower_words(c: &ModelConfig) -> Vec<String> {
    let Some(w) = &c.wrapper else {
        return Vec::new();
    };
    w.towers
        .iter()
        .map(|p| {
            let n = c.carried.iter().filter(|t| t.name.starts_with(p)).count();
            format!("{p}* {n} tensor{}", if n == 1 { "" } else { "s" })
        })
        .collect()
}

pub fn summary(ckpt: &Checkpoint) -> Summary {
    let c = &ckpt.config;
    let p = param_counts(ckpt);
    Summary {
        family: c.family.name(),
        model_type: {
            let t = |m: &serde_json::Map<String, serde_json::Value>| {
                m.get("model_type").and_then(|v| v.as_str()).unwrap_or(c.family.model_type()).to_string()
            };
            match &c.wrapper {
                Some(w) => format!("{}, text_config {}", t(&w.outer), t(&c.raw)),
                None => t(&c.raw),
            }
        },
        layout: ckpt.layout.name(),
        files: ckpt.shards.iter().map(|s| s.name.clone()).collect(),
        layers: c.num_layers,
        moe_layers: c.moe_layers().collect(),
        mtp_layers: c.mtp_layers,
        hidden_size: c.hidden_size,
        vocab_size: c.vocab_size,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        attention: attention_words(c),
        experts: c.moe.num_experts,
        top_k: c.moe.top_k,
        expert_intermediate: c.moe.intermediate,
        shared_expert_intermediate: c.moe.shared.as_ref().map(|s| s.intermediate),
        dense_intermediate: c.dense_intermediate,
        routing: routing_words(c),
        tie_word_embeddings: c.tie_word_embeddings,
        train_flops_per_token: p.train_flops_per_token(),
        parameters: p,
        tensors: ckpt.entries().len() + ckpt.entries().iter().filter(|e| e.scale.is_some()).count(),
        bytes_by_dtype: bytes_by_dtype(ckpt)
            .into_iter()
            .map(|(d, (tensors, bytes))| (d.to_string(), DtypeBytes { tensors, bytes }))
            .collect(),
        rope: rope_words(c),
        not_computed: c.not_computed.clone(),
        warnings: ckpt.warnings(),
        towers: tower_words(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_in_chunks_equal_stats_at_once() {
        let v: Vec<f32> = (0..1001)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut whole = StatsAccumulator::default();
        whole.push(&v);
        let mut parts = StatsAccumulator::default();
        for c in v.chunks(97) {
            parts.push(c);
        }
        let (a, b) = (whole.finish(), parts.finish());
        assert_eq!(a.count, 1001);
        assert!((a.mean - b.mean).abs() < 1e-12 && (a.std - b.std).abs() < 1e-12);
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / 1001.0;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / 1001.0;
        assert!((a.mean - mean).abs() < 1e-9 && (a.std - var.sqrt()).abs() < 1e-9);
        assert_eq!(
            (a.min, a.max),
            ((-50.0f32 / 7.0) as f64, (50.0f32 / 7.0) as f64)
        );
        let mut s = StatsAccumulator::default();
        s.push(&[0.0, f32::NAN, 2.0, f32::INFINITY]);
        let s = s.finish();
        assert_eq!((s.count, s.zeros, s.non_finite, s.mean), (2, 1, 2, 1.0));
    }

    #[test]
    fn histogram_bins_and_clamps() {
        let mut h = Histogram::new(0.0, 4.0, 4);
        h.push(&[-1.0, 0.0, 0.5, 1.0, 2.5, 3.99, 4.0, 9.0, f32::NAN]);
        assert_eq!(h.counts, vec![3, 1, 1, 3]);
        let flat = Histogram::new(2.0, 2.0, 3);
        assert!(flat.hi > flat.lo, "a constant tensor still gets a range");
    }
}
