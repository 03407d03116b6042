//! Qwen3-MoE (`model_type: qwen3_moe`): GQA without biases, RMSNorm on each head's q and k
//! (`q_norm`/`k_norm` of size `head_dim`), softmax → top-k → renormalised iff `norm_topk_prob`,
//! dense layers by `mlp_only_layers` / `decoder_sparse_step`, no shared expert. The expert count
//! is `num_experts` on the hub and `num_local_experts` when transformers 5 writes the config.
//! This is also the layout `moegrow init` writes: the paper's architecture choices.
//! Reference: transformers `models/qwen3_moe/modeling_qwen3_moe.py`.

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::Result;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "",
    router_bias: "gate.e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-6)?;
    let num_experts = raw.usize_any(&["num_experts", "num_local_experts"])?;
    let bias = raw.bool_or("attention_bias", false)?;
    let layers = c.num_layers;
    Ok(c.finish(
        Family::Qwen3Moe,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: bias,
                qk_norm: QkNorm::PerHead,
                clip_qkv: None,
            },
            mlp: super::qwen_layer_kinds(raw, layers, num_experts)?,
            dense_intermediate: raw.opt_usize("intermediate_size")?.unwrap_or(0),
            moe: MoeConfig {
                num_experts,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate: raw.usize("moe_intermediate_size")?,
                router: RouterConfig::softmax(raw.bool_or("norm_topk_prob", false)?),
                shared: None,
            },
            sliding_window: super::uniform_window(raw, layers, Some("use_sliding_window"))?,
            mtp_layers: 0,
        },
    ))
}
