//! DeepSeek-V2 and -V3 (`model_type: deepseek_v2 | deepseek_v3`): multi-head latent attention
//! (MLA), the first `first_k_dense_replace` layers dense, `n_shared_experts` shared experts
//! merged into one MLP of `n_shared_experts · moe_intermediate_size`, routed scaling.
//! - V2: softmax scores; `topk_method` greedy or group-limited (group score = its best
//!   probability, masked experts set to 0); weights are *never* renormalised, always ×
//!   `routed_scaling_factor` (transformers 5 ignores `norm_topk_prob` here). RoPE on the
//!   interleaved pairs (complex multiplication).
//! - V3: sigmoid scores; selection on score + `e_score_correction_bias`, group score = sum of the
//!   top-2 per group, masked to −∞; weights are the unbiased scores, renormalised iff
//!   `norm_topk_prob`, then × `routed_scaling_factor`. RoPE interleaved iff `rope_interleave`
//!   (default true).
//!
//! - V3.2 (`deepseek_v32`): V3's weights and routing plus a sparse-attention indexer in every
//!   layer (`self_attn.indexer.*`: `wq_b` from the q latent, `wk`, a LayerNorm `k_norm`,
//!   `weights_proj`); RoPE always interleaved, q LoRA required. The indexer picks `index_topk`
//!   keys per query, so up to that many tokens attention is exactly dense MLA, which is what
//!   moegrow computes (longer inputs are refused, [`crate::ModelConfig::max_exact_tokens`]).
//!
//! Reference: transformers `models/deepseek_v2/modeling_deepseek_v2.py`, `models/deepseek_v3/…`,
//! `models/deepseek_v32/modeling_deepseek_v32.py` (`DeepseekV32Indexer`).

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

/// Which DeepSeek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V2,
    V3,
    V32,
    /// GLM-4.7-Flash (`glm4_moe_lite`): DeepSeek-V3's MLA and routing under GLM's defaults, its
    /// dense/MoE pattern from `mlp_layer_types` (default: layer 0 dense, whatever
    /// `first_k_dense_replace` says, as transformers).
    Glm47Flash,
}

pub(crate) fn parse_config(raw: RawConfig, version: Version) -> Result<ModelConfig> {
    let v3 = version != Version::V2;
    let mut c = Common::parse(raw, 1e-6)?;
    // The routing transformers implements for each version; the original code's other options
    // change the math, so computing refuses them (growth does not depend on them).
    let (scoring, topk): (&str, &[&str]) = if v3 {
        ("sigmoid", &["noaux_tc"])
    } else {
        ("softmax", &["greedy", "group_limited_greedy"])
    };
    let s = raw.str_or("scoring_func", scoring)?;
    if s != scoring {
        c.not_computed
            .push(format!("`scoring_func` `{s}` (this family computes `{scoring}`)"));
    }
    let num_experts = raw.usize_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let first_dense = raw.opt_usize("first_k_dense_replace")?.unwrap_or(0);
    if raw.opt_usize("moe_layer_freq")?.unwrap_or(1) != 1 {
        return Err(Error::config(
            "`moe_layer_freq` other than 1 is not supported (transformers ignores it too)",
        ));
    }
    let moe_intermediate = raw.usize("moe_intermediate_size")?;
    let n_shared = raw.opt_usize("n_shared_experts")?.unwrap_or(0);
    let n_group = raw.opt_usize("n_group")?.unwrap_or(1);
    let topk_group = raw.opt_usize("topk_group")?.unwrap_or(n_group);
    let group_limit = if v3 {
        Some(GroupLimit {
            n_group,
            topk_group,
            score: GroupScore::SumTop2,
        })
    } else {
        match raw.str_or("topk_method", "greedy")? {
            "group_limited_greedy" => Some(GroupLimit {
                n_group,
                topk_group,
                score: GroupScore::Max,
            }),
            _ => None,
        }
    };
    let method = raw.str_or("topk_method", topk[0])?;
    if !topk.contains(&method) {
        c.not_computed.push(format!(
            "`topk_method` `{method}` (this family computes {})",
            topk.join(", ")
        ));
    }
    if v3 && num_experts / n_group.max(1) < 2 {
        return Err(Error::config(
            "DeepSeek-V3 routing needs at least two experts per group",
        ));
    }
    let indexer = if version == Version::V32 {
        if raw.opt_usize("q_lora_rank")?.is_none() {
            return Err(Error::config(
                "DeepSeek-V3.2 needs `q_lora_rank`: its indexer reads the query latent",
            ));
        }
        Some(IndexerConfig {
            heads: raw.opt_usize("index_n_heads")?.unwrap_or(64),
            head_dim: raw.opt_usize("index_head_dim")?.unwrap_or(128),
            topk: raw.opt_usize("index_topk")?.unwrap_or(2048),
        })
    } else {
        None
    };
    let mla = MlaConfig {
        indexer,
        q_lora_rank: raw.opt_usize("q_lora_rank")?,
        kv_lora_rank: raw.usize("kv_lora_rank")?,
        qk_nope_head_dim: raw.usize("qk_nope_head_dim")?,
        qk_rope_head_dim: raw.usize("qk_rope_head_dim")?,
        v_head_dim: raw.usize("v_head_dim")?,
        rope_interleave: if matches!(version, Version::V3 | Version::Glm47Flash) {
            raw.bool_or("rope_interleave", true)?
        } else {
            true
        },
        bias: raw.bool_or("attention_bias", false)?,
    };
    let layers = c.num_layers;
    let head_dim = mla.qk_head_dim();
    let mut cfg = c.finish(
        match version {
            Version::V2 => Family::DeepseekV2,
            Version::V3 => Family::DeepseekV3,
            Version::V32 => Family::DeepseekV32,
            Version::Glm47Flash => Family::Glm4MoeLite,
        },
        raw,
        Specific {
            attention: Attention::Mla(mla),
            mlp: match version {
                Version::V32 => super::mlp_layer_types(raw, layers, first_dense)?,
                Version::Glm47Flash => super::mlp_layer_types(raw, layers, 1)?,
                _ => super::dense_first(layers, first_dense),
            },
            dense_intermediate: raw.usize("intermediate_size")?,
            moe: MoeConfig {
                num_experts,
                top_k: raw.usize("num_experts_per_tok")?,
                intermediate: moe_intermediate,
                router: RouterConfig {
                    scoring: if v3 {
                        Scoring::Sigmoid
                    } else {
                        Scoring::Softmax
                    },
                    normalize: v3 && raw.bool_or("norm_topk_prob", false)?,
                    routed_scaling_factor: raw.f32_or("routed_scaling_factor", 1.0)?,
                    group_limit,
                    correction_bias: v3,
                },
                // transformers always builds the shared MLP; with n_shared_experts = 0 it has
                // intermediate size 0 and contributes nothing, but its (empty) tensors exist.
                shared: Some(SharedExperts {
                    intermediate: moe_intermediate * n_shared,
                    gated: false,
                }),
            },
            sliding_window: vec![None; layers],
            mtp_layers: if v3 {
                raw.opt_usize("num_nextn_predict_layers")?.unwrap_or(0)
            } else {
                0
            },
        },
    );
    // MLA has no single head size; `head_dim` records the q/k head size for reporting.
    cfg.head_dim = head_dim;
    Ok(cfg)
}
