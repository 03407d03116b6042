//! Mixtral (`model_type: mixtral`): standard GQA attention without biases, every layer MoE,
//! softmax → top-k → always renormalised. Per-expert tensors live under `block_sparse_moe` and
//! are called `w1` (gate), `w3` (up) and `w2` (down).
//! Reference: transformers `models/mixtral/modeling_mixtral.py`.

use super::{Common, Family, NameScheme};
use crate::config::*;
use crate::error::Result;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "block_sparse_moe.",
    expert_proj: ["w1", "w3", "w2"],
    shared_prefix: "",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-5)?;
    let intermediate = raw.usize("intermediate_size")?;
    Ok(ModelConfig {
        family: Family::Mixtral,
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
            qkv_bias: false,
            o_bias: false,
            qk_norm: QkNorm::None,
            clip_qkv: None,
        },
        mlp: vec![MlpKind::Moe; c.num_layers],
        dense_intermediate: intermediate,
        moe: MoeConfig {
            num_experts: raw.usize_any(&["num_local_experts", "num_experts"])?,
            top_k: raw.usize("num_experts_per_tok")?,
            intermediate,
            router: RouterConfig {
                scoring: Scoring::Softmax,
                normalize: true,
                routed_scaling_factor: 1.0,
                group_limit: None,
                correction_bias: false,
            },
            shared: None,
        },
        sliding_window: super::uniform_window(raw, c.num_layers, None)?,
        raw: raw.0.clone(),
    })
}
