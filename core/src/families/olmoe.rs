//! OLMoE (`model_type: olmoe`): q/k RMSNorm over the *whole* projection width (heads·head_dim)
//! before splitting into heads, optional `clip_qkv`, every layer MoE, softmax → top-k →
//! renormalised iff `norm_topk_prob` (false in the released models).
//! Reference: transformers `models/olmoe/modeling_olmoe.py`.

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
    let c = Common::parse(raw, 1e-5)?;
    let intermediate = raw.usize("intermediate_size")?;
    let bias = raw.bool_or("attention_bias", false)?;
    let layers = c.num_layers;
    Ok(c.finish(
        Family::Olmoe,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: bias,
                qk_norm: QkNorm::FullWidth,
                clip_qkv: raw.opt_f32("clip_qkv")?,
            },
            mlp: vec![MlpKind::Moe; layers],
            dense_intermediate: intermediate,
            moe: MoeConfig {
                num_experts: raw.usize_any(&["num_experts", "num_local_experts"])?,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate,
                router: RouterConfig::softmax(raw.bool_or("norm_topk_prob", false)?),
                shared: None,
            },
            sliding_window: vec![None; layers],
            mtp_layers: 0,
        },
    ))
}
