//! MiniMax-M2 / M2.1 / M2.5 (`model_type: minimax_m2`): GQA without biases, RMSNorm over the
//! whole q and k projections before the split into heads (`q_norm [heads · head_dim]`, as
//! OLMoE), RoPE on the first `rotary_dim` dimensions of each head (rotate_half; the legacy
//! `rotary_dim` key, or `partial_rotary_factor`), every layer MoE with no shared expert:
//! sigmoid scores, selection on score + `e_score_correction_bias` (stored on the MoE block,
//! not under its gate), weights the unbiased scores always renormalised, no routed scaling.
//! On disk the experts are Mixtral's `block_sparse_moe.experts.{e}.w1/w3/w2`.
//! transformers ignores several hub keys and so does moegrow's math (q/k norm and the routing
//! bias are always on, `scoring_func` is always sigmoid, `attn_type_list` is all full
//! attention); they are carried verbatim, and `attn_type_list` follows depth growth's layer map.
//! Reference: transformers `models/minimax_m2/modeling_minimax_m2.py` (`MiniMaxM2TopKRouter`,
//! `MiniMaxM2Attention`), `convert_rope_params_to_dict` for `rotary_dim`.

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "block_sparse_moe.",
    expert_proj: ["w1", "w3", "w2"],
    shared_prefix: "",
    router_bias: "e_score_correction_bias",
    router: "gate",
    ffn_prefix: "mlp.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-6)?;
    let rotary = match raw.opt_usize("rotary_dim")? {
        Some(d) if d == 0 || d > c.head_dim || d % 2 != 0 => {
            return Err(Error::config(format!(
                "`rotary_dim` {d} must be even and at most head_dim {}",
                c.head_dim
            )))
        }
        Some(d) => d,
        None => c.rotary_dim(raw, 1.0)?,
    };
    let num_experts = raw.usize_any(&["num_local_experts", "num_experts"])?;
    let layers = c.num_layers;
    let mut cfg = c.finish(
        Family::MinimaxM2,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: false,
                o_bias: false,
                qk_norm: QkNorm::FullWidth,
                clip_qkv: None,
            },
            mlp: vec![MlpKind::Moe; layers],
            dense_intermediate: 0,
            moe: MoeConfig {
                num_experts,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate: raw.usize("intermediate_size")?,
                router: RouterConfig {
                    scoring: Scoring::Sigmoid,
                    normalize: true,
                    routed_scaling_factor: 1.0,
                    group_limit: None,
                    correction_bias: true,
                },
                shared: None,
            },
            sliding_window: vec![None; layers],
            mtp_layers: 0,
        },
    );
    cfg.rotary_dim = rotary;
    Ok(cfg)
}
