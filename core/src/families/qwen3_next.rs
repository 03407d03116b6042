//! Qwen3-Next (`model_type: qwen3_next`): hybrid layers by `layer_types` (default: every
//! `full_attention_interval`-th layer, 4, softmax attention, the rest Gated DeltaNet linear
//! attention). The softmax layers are GQA with per-head q/k RMSNorm, RoPE on the first
//! `partial_rotary_factor` (0.25) of each head and an output gate: `q_proj` yields each head's
//! query and a gate, and the attention output is multiplied by `sigmoid(gate)` before `o_proj`.
//! The DeltaNet layers project q, k, v, z and b, a, run a causal depthwise convolution (SiLU)
//! over q, k, v, L2-normalise q and k, and keep a delta-rule state per value head
//! (`S ← e^g S`, `S ← S + k (β (v − Sᵀk))ᵀ`, `o = Sᵀq / √d_k`, `g = −e^{A_log} softplus(a + dt_bias)`,
//! `β = σ(b)`), then a gated RMSNorm (`norm(o) · silu(z)`) and `out_proj`. Every other RMSNorm
//! scales by `1 + w` (zero-centred weights). MoE as Qwen2-MoE: softmax, top-k, renormalised iff
//! `norm_topk_prob`, a shared expert with a sigmoid gate; dense layers by `mlp_only_layers` /
//! `decoder_sparse_step`.
//! Reference: transformers `models/qwen3_next/modeling_qwen3_next.py` (`Qwen3NextGatedDeltaNet`,
//! `torch_recurrent_gated_delta_rule`, `Qwen3NextAttention`, `Qwen3NextRMSNorm`).

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};

pub(crate) const NAMES: NameScheme = super::qwen2_moe::NAMES;

/// Which of the two: Qwen3-Next, or Qwen3.5-MoE's language model (`qwen3_5_moe_text`, inside
/// the multimodal `qwen3_5_moe` wrapper), the same layers with split DeltaNet projections, the
/// output gate by `attn_output_gate` and multimodal RoPE sections that equal plain RoPE on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Next,
    V35,
}

pub(crate) fn parse_config(raw: RawConfig, version: Version) -> Result<ModelConfig> {
    let mut c = Common::parse(raw, 1e-6)?;
    let layers = c.num_layers;
    let rotary = c.rotary_dim(raw, 0.25)?;
    let linear = match super::layer_types(raw, layers, &[("linear_attention", true), ("full_attention", false)])? {
        Some(l) => l,
        None => {
            let every = raw.opt_usize("full_attention_interval")?.unwrap_or(4);
            if every == 0 {
                return Err(Error::config("`full_attention_interval` must be positive"));
            }
            (0..layers).map(|i| (i + 1) % every != 0).collect()
        }
    };
    let la = LinearAttention {
        key_heads: raw.opt_usize("linear_num_key_heads")?.unwrap_or(16),
        value_heads: raw.opt_usize("linear_num_value_heads")?.unwrap_or(32),
        key_head_dim: raw.opt_usize("linear_key_head_dim")?.unwrap_or(128),
        value_head_dim: raw.opt_usize("linear_value_head_dim")?.unwrap_or(128),
        conv_kernel: raw.opt_usize("linear_conv_kernel_dim")?.unwrap_or(4),
        split_projections: version == Version::V35,
    };
    if la.key_heads == 0 || la.value_heads % la.key_heads != 0 || la.conv_kernel == 0 {
        return Err(Error::config(format!(
            "Gated DeltaNet needs linear_num_value_heads ({}) a multiple of linear_num_key_heads ({}) and a positive linear_conv_kernel_dim",
            la.value_heads, la.key_heads
        )));
    }
    if raw.bool_or("use_sliding_window", false)? {
        c.not_computed
            .push("`use_sliding_window` (transformers' Qwen3-Next attends to everything)".into());
    }
    let bias = raw.bool_or("attention_bias", false)?;
    let moe = super::qwen2_moe::moe_config(raw, true)?;
    let mut cfg = c.finish(
        match version {
            Version::Next => Family::Qwen3Next,
            Version::V35 => Family::Qwen35Moe,
        },
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: bias,
                qk_norm: QkNorm::PerHead,
                clip_qkv: None,
            },
            mlp: super::qwen_layer_kinds(raw, layers, moe.num_experts)?,
            dense_intermediate: raw.opt_usize("intermediate_size")?.unwrap_or(0),
            moe,
            sliding_window: vec![None; layers],
            mtp_layers: 0,
        },
    );
    cfg.rotary_dim = rotary;
    cfg.linear_attention = Some(la);
    cfg.linear_layers = linear;
    cfg.zero_centered_norms = true;
    cfg.attn_output_gate = match version {
        Version::Next => true,
        Version::V35 => raw.bool_or("attn_output_gate", true)?,
    };
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use crate::config::ModelConfig;
    use serde_json::json;

    fn parse(extra: serde_json::Value) -> crate::error::Result<ModelConfig> {
        let mut c = json!({
            "model_type": "qwen3_next", "vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 6,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_experts": 4,
            "num_experts_per_tok": 2, "moe_intermediate_size": 16, "linear_num_key_heads": 2,
            "linear_num_value_heads": 4, "linear_key_head_dim": 8, "linear_value_head_dim": 8,
        });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ModelConfig::from_json(c)
    }

    #[test]
    fn the_hybrid_pattern_from_the_interval_or_the_list() {
        assert_eq!(parse(json!({})).unwrap().linear_layers, [true, true, true, false, true, true]);
        assert_eq!(
            parse(json!({"full_attention_interval": 2})).unwrap().linear_layers,
            [true, false, true, false, true, false]
        );
        let listed = json!({"layer_types": ["full_attention", "linear_attention", "linear_attention",
                                            "full_attention", "linear_attention", "full_attention"]});
        assert_eq!(parse(listed).unwrap().linear_layers, [false, true, true, false, true, false]);
        for (bad, why) in [
            (json!({"layer_types": ["full_attention"]}), "must list 6 layers"),
            (json!({"layer_types": vec!["sliding_attention"; 6]}), "\"linear_attention\" or \"full_attention\""),
            (json!({"linear_num_value_heads": 3}), "a multiple of"),
            (json!({"full_attention_interval": 0}), "must be positive"),
        ] {
            let e = parse(bad.clone()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
