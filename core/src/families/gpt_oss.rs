//! OpenAI gpt-oss (`model_type: gpt_oss`): GQA with biases on q, k, v and o and a learned
//! per-head attention sink (a logit that joins every softmax and carries no value),
//! alternating sliding-window and full attention by `layer_types`, YaRN RoPE (rotate_half, the
//! ramp not truncated). Every layer MoE with no shared expert: a router with a bias, top-k on
//! its logits, softmax over the chosen (the same weights as softmax over all then
//! renormalising, which is what moegrow computes), experts with biases and a clamped SwiGLU
//! (`gate = min(g, limit)`, `up = clamp(u, ±limit)`, `(up + 1) · gate · σ(α · gate)`).
//!
//! On disk the experts are stacked only (transformers reads no per-expert layout): in bf16
//! `gate_up_proj [E, H, 2I]` input-major with gate and up *interleaved* (even columns gate),
//! `down_proj [E, I, H]`; in the hub's MXFP4, `*_blocks`/`*_scales` output-major with the same
//! interleave. [`crate::schema::layout`] maps both onto the schema's `[E, 2I, H]` (gate rows,
//! then up rows) and back, so the math and growth see one form.
//! Reference: transformers `models/gpt_oss/modeling_gpt_oss.py` (`GptOssExperts`,
//! `GptOssTopKRouter`, `eager_attention_forward`), `integrations/mxfp4.py`.

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "mlp.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "",
    router_bias: "router.e_score_correction_bias",
    router: "router",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-5)?;
    let layers = c.num_layers;
    let window = raw.opt_usize("sliding_window")?.filter(|w| *w > 0);
    // transformers' default: even layers sliding, odd layers full.
    let sliding = super::layer_types(raw, layers, &[("sliding_attention", true), ("full_attention", false)])?
        .unwrap_or_else(|| (0..layers).map(|i| i % 2 == 0).collect());
    if sliding.contains(&true) && window.is_none() {
        return Err(Error::config(
            "`layer_types` has sliding-attention layers but `sliding_window` is not set",
        ));
    }
    let bias = raw.bool_or("attention_bias", true)?;
    let intermediate = raw.usize("intermediate_size")?;
    if !intermediate.is_multiple_of(2) {
        return Err(Error::config("`intermediate_size` must be even"));
    }
    let mut cfg = c.finish(
        Family::GptOss,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: bias,
                qk_norm: QkNorm::None,
                clip_qkv: None,
            },
            mlp: vec![MlpKind::Moe; layers],
            dense_intermediate: 0,
            moe: MoeConfig {
                num_experts: raw.usize_any(&["num_local_experts", "num_experts"])?,
                top_k: raw.usize_any(&["num_experts_per_tok", "experts_per_token"])?,
                intermediate,
                router: RouterConfig::softmax(true),
                shared: None,
            },
            sliding_window: sliding.iter().map(|s| window.filter(|_| *s)).collect(),
            mtp_layers: 0,
        },
    );
    cfg.attention_sinks = true;
    cfg.expert_bias = true;
    cfg.router_logit_bias = true;
    cfg.expert_act = ExpertAct::ClampedSwiglu {
        alpha: raw.f32_or("swiglu_alpha", 1.702)?,
        limit: raw.f32_or("swiglu_limit", 7.0)?,
    };
    Ok(cfg)
}
