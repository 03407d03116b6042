//! GLM-4.5 / 4.6 / 4.5-Air (`model_type: glm4_moe`): grouped-query attention with q/k/v biases
//! (`attention_bias`), optional per-head q/k RMSNorm (`use_qk_norm`), RoPE on the first
//! `partial_rotary_factor · head_dim` dimensions of each head (rotate_half pairs; the factor is
//! 0.5 when the config does not say), and DeepSeek-V3's MoE: sigmoid scores, selection on score
//! + `e_score_correction_bias` with group-limited top-k (group score = sum of its top-2),
//! weights = unbiased scores, renormalised iff `norm_topk_prob` (default true), × `routed_scaling_factor`;
//! `n_shared_experts` shared experts merged into one MLP; the first `first_k_dense_replace`
//! layers dense; `num_nextn_predict_layers` multi-token-prediction blocks after the decoder
//! layers, stored as DeepSeek-V3 stores them (transformers ignores them).
//! The router weight and correction bias are kept in float32 (`_keep_in_fp32_modules_strict`).
//! Reference: transformers `models/glm4_moe/modeling_glm4_moe.py` (`Glm4MoeTopkRouter`,
//! `Glm4MoeAttention`, `apply_rotary_pos_emb` with `rotary_dim = cos.shape[-1]`).

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "mlp.shared_experts.",
    router_bias: "gate.e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let mut c = Common::parse(raw, 1e-5)?;
    let rotary = c.rotary_dim(raw, 0.5)?;
    for (key, computed) in [("scoring_func", "sigmoid"), ("topk_method", "noaux_tc")] {
        let v = raw.str_or(key, computed)?;
        if v != computed {
            c.not_computed
                .push(format!("`{key}` `{v}` (GLM-4.5 computes `{computed}`)"));
        }
    }
    let num_experts = raw.usize_any(&["n_routed_experts", "num_local_experts"])?;
    let n_group = raw.opt_usize("n_group")?.unwrap_or(1);
    let topk_group = raw.opt_usize("topk_group")?.unwrap_or(1);
    if n_group == 0 || !num_experts.is_multiple_of(n_group) || num_experts / n_group < 2 {
        return Err(Error::config(format!(
            "GLM-4.5 routing needs `n_group` ({n_group}) to divide `n_routed_experts` ({num_experts}) into groups of at least two experts"
        )));
    }
    let first_dense = raw.opt_usize("first_k_dense_replace")?.unwrap_or(1);
    let moe_intermediate = raw.usize("moe_intermediate_size")?;
    let n_shared = raw.opt_usize("n_shared_experts")?.unwrap_or(1);
    let bias = raw.bool_or("attention_bias", false)?;
    let layers = c.num_layers;
    let mut cfg = c.finish(
        Family::Glm4Moe,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: false,
                qk_norm: if raw.bool_or("use_qk_norm", false)? {
                    QkNorm::PerHead
                } else {
                    QkNorm::None
                },
                clip_qkv: None,
            },
            mlp: super::dense_first(layers, first_dense),
            dense_intermediate: raw.usize("intermediate_size")?,
            moe: MoeConfig {
                num_experts,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate: moe_intermediate,
                router: RouterConfig {
                    scoring: Scoring::Sigmoid,
                    normalize: raw.bool_or("norm_topk_prob", true)?,
                    routed_scaling_factor: raw.f32_or("routed_scaling_factor", 1.0)?,
                    group_limit: Some(GroupLimit {
                        n_group,
                        topk_group,
                        score: GroupScore::SumTop2,
                    }),
                    correction_bias: true,
                },
                // Built whatever `n_shared_experts` is (0: an empty MLP with empty tensors).
                shared: Some(SharedExperts {
                    intermediate: moe_intermediate * n_shared,
                    gated: false,
                }),
            },
            sliding_window: vec![None; layers],
            mtp_layers: raw.opt_usize("num_nextn_predict_layers")?.unwrap_or(0),
        },
    );
    cfg.rotary_dim = rotary;
    Ok(cfg)
}
