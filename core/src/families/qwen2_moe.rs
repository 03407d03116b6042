//! Qwen2-MoE (`model_type: qwen2_moe`): q/k/v projections with biases, a shared expert whose
//! output is scaled by `sigmoid(shared_expert_gate · x)`, dense layers by `mlp_only_layers` /
//! `decoder_sparse_step`, softmax → top-k → renormalised iff `norm_topk_prob`, optional
//! sliding-window layers listed in `layer_types`.
//! Reference: transformers `models/qwen2_moe/modeling_qwen2_moe.py`.

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};
use serde_json::Value;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "mlp.shared_expert.",
    router_bias: "gate.e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-6)?;
    let layers = c.num_layers;
    let moe = moe_config(raw, false)?;
    Ok(c.finish(
        Family::Qwen2Moe,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: raw.bool_or("qkv_bias", true)?,
                o_bias: false,
                qk_norm: QkNorm::None,
                clip_qkv: None,
            },
            mlp: super::qwen_layer_kinds(raw, layers, moe.num_experts)?,
            dense_intermediate: raw.opt_usize("intermediate_size")?.unwrap_or(0),
            moe,
            sliding_window: windows(raw, layers)?,
            mtp_layers: 0,
        },
    ))
}

/// Qwen2-MoE's experts, which Qwen3-Next keeps: softmax, top-k, renormalised iff
/// `norm_topk_prob` (default `normalize`), a shared expert with a sigmoid gate when
/// `shared_expert_intermediate_size` is positive.
pub(crate) fn moe_config(raw: RawConfig, normalize: bool) -> Result<MoeConfig> {
    let shared = raw
        .opt_usize("shared_expert_intermediate_size")?
        .filter(|s| *s > 0);
    Ok(MoeConfig {
        num_experts: raw.usize_any(&["num_experts", "num_local_experts"])?,
        top_k: raw.usize("num_experts_per_tok")?,
        intermediate: raw.usize("moe_intermediate_size")?,
        router: RouterConfig::softmax(raw.bool_or("norm_topk_prob", normalize)?),
        shared: shared.map(|intermediate| SharedExperts {
            intermediate,
            gated: true,
        }),
    })
}

/// Sliding-window layers: `layer_types` when present (transformers 5 writes it), else the
/// rule transformers derives it from (`use_sliding_window`, odd layers below
/// `max_window_layers`).
fn windows(raw: RawConfig, layers: usize) -> Result<Vec<Option<usize>>> {
    if !raw.bool_or("use_sliding_window", false)? {
        return Ok(vec![None; layers]);
    }
    let w = raw.opt_usize("sliding_window")?.filter(|w| *w > 0);
    if let Some(Value::Array(types)) = raw.get("layer_types") {
        if types.len() != layers {
            return Err(Error::config(format!(
                "`layer_types` has {} entries for {layers} layers",
                types.len()
            )));
        }
        return Ok(types
            .iter()
            .map(|t| {
                if t.as_str() == Some("sliding_attention") {
                    w
                } else {
                    None
                }
            })
            .collect());
    }
    let max_window = raw.opt_usize("max_window_layers")?.unwrap_or(layers);
    Ok((0..layers)
        .map(|i| {
            if (i + 1) % 2 == 1 && i < max_window {
                w
            } else {
                None
            }
        })
        .collect())
}
