//! OLMoE (`model_type: olmoe`): q/k RMSNorm over the *whole* projection width (heads·head_dim)
//! before splitting into heads, optional `clip_qkv`, every layer MoE, softmax → top-k →
//! renormalised iff `norm_topk_prob` (false in the released models).
//! Reference: transformers `models/olmoe/modeling_olmoe.py`.

use super::{Common, Family, NameScheme};
use crate::config::*;
use crate::error::Result;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-5)?;
    let intermediate = raw.usize("intermediate_size")?;
    Ok(ModelConfig {
        family: Family::Olmoe,
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        num_layers: c.num_layers,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        rms_norm_eps: c.rms_norm_eps,
        rope_theta: c.rope_theta,
        tie_word_embeddings: c.tie_word_embeddings,
        attention: Attention::Standard {
            qkv_bias: raw.bool_or("attention_bias", false)?,
            o_bias: raw.bool_or("attention_bias", false)?,
            qk_norm: QkNorm::FullWidth,
            clip_qkv: raw.opt_f32("clip_qkv")?,
        },
        mlp: vec![MlpKind::Moe; c.num_layers],
        dense_intermediate: intermediate,
        moe: MoeConfig {
            num_experts: raw.usize_any(&["num_experts", "num_local_experts"])?,
            top_k: raw.usize("num_experts_per_tok")?,
            intermediate,
            router: RouterConfig {
                scoring: Scoring::Softmax,
                normalize: raw.bool_or("norm_topk_prob", false)?,
                routed_scaling_factor: 1.0,
                group_limit: None,
                correction_bias: false,
            },
            shared: None,
        },
        sliding_window: vec![None; c.num_layers],
        raw: raw.0.clone(),
    })
}
