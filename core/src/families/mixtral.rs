//! Mixtral (`model_type: mixtral`): standard GQA attention without biases, every layer MoE,
//! softmax → top-k → always renormalised. Per-expert tensors live under `block_sparse_moe` and
//! are called `w1` (gate), `w3` (up) and `w2` (down).
//! Reference: transformers `models/mixtral/modeling_mixtral.py`.

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::Result;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "block_sparse_moe.",
    expert_proj: ["w1", "w3", "w2"],
    shared_prefix: "",
    router_bias: "gate.e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-5)?;
    let intermediate = raw.usize("intermediate_size")?;
    let layers = c.num_layers;
    Ok(c.finish(
        Family::Mixtral,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: false,
                o_bias: false,
                qk_norm: QkNorm::None,
                clip_qkv: None,
            },
            mlp: vec![MlpKind::Moe; layers],
            dense_intermediate: intermediate,
            moe: MoeConfig {
                num_experts: raw.usize_any(&["num_local_experts", "num_experts"])?,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate,
                router: RouterConfig::softmax(true),
                shared: None,
            },
            sliding_window: super::uniform_window(raw, layers, None)?,
            mtp_layers: 0,
        },
    ))
}
