//! ERNIE-4.5 MoE (`model_type: ernie4_5_moe`, Baidu's ERNIE-4.5-21B-A3B and -300B-A47B):
//! grouped-query attention with RoPE on interleaved pairs over the whole head (GPT-J style), and
//! a MoE whose router is a softmax over all experts in float32, with the experts *chosen* on
//! probability + `moe_statics.e_score_correction_bias` (stored `[1, E]`) and weighted by the
//! unbiased probabilities renormalised (`/ max(sum, moe_norm_min)`), no routed scaling; an
//! ungated shared MLP of `moe_num_shared_experts · moe_intermediate_size` added to every MoE
//! layer's output. Layer `i` is MoE iff `(i + 1) % moe_layer_interval == 0` and
//! `moe_layer_start_index ≤ i ≤ moe_layer_end_index` (−1 or absent: the last layer); the rest
//! are dense MLPs of `intermediate_size`. The head is tied unless the config says otherwise.
//! Baidu's keys transformers does not read (`moe_use_aux_free`, `moe_gate`, `moe_capacity`,
//! `use_rmsnorm`, `num_nextn_predict_layers`) are carried; the multi-token-prediction tensors
//! the hub ships (`model.mtp_block.*`, `model.mtp_emb_norm.*`, `model.mtp_hidden_norm.*`,
//! `model.mtp_linear_proj.*`), which transformers drops on load, are carried byte for byte.
//! Reference: transformers `models/ernie4_5_moe/modeling_ernie4_5_moe.py`
//! (`Ernie4_5_MoeTopKRouter`, `Ernie4_5_MoeStatics`, `apply_rotary_pos_emb`, `is_moe_layer`).

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "mlp.shared_experts.",
    router_bias: "moe_statics.e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

/// The hub's multi-token-prediction tensors, which transformers ignores: carried verbatim.
pub(crate) const CARRIED: &[&str] = &["model.mtp_"];

/// The MoE layers of a `layers`-layer model: `(start, end, interval)` as the config gives them,
/// `end` already resolved.
pub(crate) fn moe_layers(layers: usize, start: usize, end: usize, interval: usize) -> Vec<MlpKind> {
    (0..layers)
        .map(|i| {
            if (i + 1).is_multiple_of(interval) && i >= start && i <= end {
                MlpKind::Moe
            } else {
                MlpKind::Dense
            }
        })
        .collect()
}

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let mut c = Common::parse(raw, 1e-5)?;
    // transformers' defaults where the hub file is silent.
    c.tie_word_embeddings = raw.bool_or("tie_word_embeddings", true)?;
    let has_theta = raw.get("rope_theta").is_some_and(|v| !v.is_null())
        || raw.get("rope_parameters").and_then(|p| p.get("rope_theta")).is_some_and(|v| !v.is_null());
    if !has_theta {
        c.rope.theta = 500000.0;
    }
    if raw.bool_or("use_bias", false)? {
        return Err(Error::config(
            "`use_bias: true` (biases on every projection, MLP and the head) is not supported: moegrow maps ERNIE-4.5 without them, as the hub ships it",
        ));
    }
    let layers = c.num_layers;
    let interval = raw.opt_usize("moe_layer_interval")?.unwrap_or(1);
    if interval == 0 {
        return Err(Error::config("`moe_layer_interval` must be positive"));
    }
    let start = raw.opt_usize("moe_layer_start_index")?.unwrap_or(1);
    let end = match raw.get("moe_layer_end_index").and_then(|v| v.as_i64()) {
        None | Some(-1) => layers.saturating_sub(1),
        Some(e) if e >= 0 => e as usize,
        Some(e) => {
            return Err(Error::config(format!(
                "`moe_layer_end_index` must be a layer index or -1, found {e}"
            )))
        }
    };
    let num_experts = raw.opt_usize("moe_num_experts")?.unwrap_or(64);
    let moe_intermediate = raw.opt_usize("moe_intermediate_size")?.unwrap_or(1536);
    let shared = raw.opt_usize("moe_num_shared_experts")?.unwrap_or(2);
    let mut cfg = c.finish(
        Family::Ernie45Moe,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: false,
                o_bias: false,
                qk_norm: QkNorm::None,
                clip_qkv: None,
            },
            mlp: moe_layers(layers, start, end, interval),
            dense_intermediate: raw.opt_usize("intermediate_size")?.unwrap_or(12288),
            moe: MoeConfig {
                num_experts,
                top_k: raw.opt_usize("moe_k")?.unwrap_or(6),
                intermediate: moe_intermediate,
                router: RouterConfig {
                    scoring: Scoring::Softmax,
                    normalize: true,
                    routed_scaling_factor: 1.0,
                    group_limit: None,
                    correction_bias: true,
                },
                shared: (shared > 0).then_some(SharedExperts {
                    intermediate: moe_intermediate * shared,
                    gated: false,
                }),
            },
            sliding_window: vec![None; layers],
            mtp_layers: 0,
        },
    );
    cfg.rope_interleave = true;
    Ok(cfg)
}

/// The `moe_layer_*` keys of a grown model whose dense/MoE pattern is `kinds`, if that
/// pattern is ERNIE's rule for some start and end (the interval kept); `None` when no such
/// keys describe it (depth growth is then refused with the reason).
pub(crate) fn layer_keys(kinds: &[MlpKind], interval: usize) -> Option<(usize, usize)> {
    let first = kinds.iter().position(|k| *k == MlpKind::Moe)?;
    let last = kinds.iter().rposition(|k| *k == MlpKind::Moe)?;
    (moe_layers(kinds.len(), first, last, interval) == kinds).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    fn cfg(extra: serde_json::Value) -> ModelConfig {
        let mut v = serde_json::json!({
            "model_type": "ernie4_5_moe", "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 6,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96, "moe_num_experts": 8,
            "moe_k": 2, "moe_intermediate_size": 16
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        ModelConfig::from_json(v).unwrap()
    }

    /// transformers' rule and defaults: MoE from `moe_layer_start_index` (1) to the last layer
    /// (`moe_layer_end_index` −1 or absent) every `moe_layer_interval`-th; two shared experts,
    /// a tied head and θ = 500000 when the file is silent; the 300B's layout (start 3, no shared
    /// experts) and an interval of 2.
    #[test]
    fn layer_pattern_and_defaults_follow_transformers() {
        let kinds = |c: &ModelConfig| c.mlp.iter().map(|k| (*k == MlpKind::Moe) as u8).collect::<Vec<_>>();
        let c = cfg(serde_json::json!({}));
        assert_eq!(kinds(&c), [0, 1, 1, 1, 1, 1]);
        assert!(c.tie_word_embeddings && c.rope_interleave);
        assert_eq!(c.rope.theta, 500000.0);
        assert_eq!(c.moe.shared.map(|s| (s.intermediate, s.gated)), Some((32, false)));
        let big = cfg(serde_json::json!({"moe_layer_start_index": 3, "moe_num_shared_experts": 0, "tie_word_embeddings": false, "rope_theta": 10000}));
        assert_eq!(kinds(&big), [0, 0, 0, 1, 1, 1]);
        assert!(big.moe.shared.is_none() && !big.tie_word_embeddings);
        assert_eq!(big.rope.theta, 10000.0);
        let stepped = cfg(serde_json::json!({"moe_layer_interval": 2, "moe_layer_start_index": 0, "moe_layer_end_index": 4}));
        assert_eq!(kinds(&stepped), [0, 1, 0, 1, 0, 0]);
        assert!(ModelConfig::from_json(serde_json::json!({"model_type": "ernie4_5_moe", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 96, "use_bias": true})).unwrap_err().to_string().contains("use_bias"));
    }

    /// A grown pattern is written back as a start and an end when ERNIE's rule can say it, and
    /// not otherwise.
    #[test]
    fn grown_patterns_map_to_start_and_end_or_are_refused() {
        use MlpKind::{Dense as D, Moe as M};
        assert_eq!(layer_keys(&[D, D, M, M, M, M], 1), Some((2, 5)));
        assert_eq!(layer_keys(&[D, M, M, D], 1), Some((1, 2)), "dense after the end index");
        assert_eq!(layer_keys(&[D, M, D, M], 1), None, "a dense layer between MoE ones");
        assert_eq!(layer_keys(&[D, M, D, M], 2), Some((1, 3)));
        assert_eq!(layer_keys(&[D, D, M, M], 2), None, "interposition of an interval-2 model");
        assert_eq!(layer_keys(&[D, D], 1), None);
    }
}
