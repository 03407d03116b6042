//! Model families: how each Hugging Face MoE family spells its config and tensor names.
//!
//! Each family module turns its `config.json` into a [`ModelConfig`] and says how it names
//! the tensors that differ between families (the MoE block, expert matrices, shared experts).
//! Everything else is named the same way by all of them and lives here.

mod deepseek;
mod ernie4_5_moe;
mod glm4_moe;
mod gpt_oss;
mod llama4;
mod minimax_m2;
mod mixtral;
mod olmoe;
mod qwen2_moe;
mod qwen3_moe;
mod qwen3_next;

use crate::config::{ModelConfig, RawConfig};
use crate::error::{Error, Result};
use crate::roles::{AttnRole, ExpertLayout, LayerRole, Proj, Role};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Family {
    Mixtral,
    Qwen2Moe,
    Qwen3Moe,
    Olmoe,
    DeepseekV2,
    DeepseekV3,
    DeepseekV32,
    Glm4Moe,
    MinimaxM2,
    GptOss,
    Llama4,
    Qwen3Next,
    Qwen35Moe,
    Glm4MoeLite,
    Ernie45Moe,
}

const SUPPORTED: &str =
    "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3 (and kimi_k2, its alias), deepseek_v32, glm4_moe, minimax_m2, gpt_oss, llama4_text (and llama4, its multimodal wrapper), qwen3_next, qwen3_5_moe_text (in qwen3_5_moe, its multimodal wrapper), glm4_moe_lite, kimi_k25 (DeepSeek-V3 in a multimodal wrapper), ernie4_5_moe";

/// A multimodal `model_type` whose language model is one of the families.
pub(crate) struct WrapperKind {
    pub text_family: Family,
    pub text_model: &'static str,
    pub head: &'static str,
    pub towers: &'static [&'static str],
}

/// The wrapper a `model_type` names, if it is one: Llama-4's `Llama4ForConditionalGeneration`
/// (`language_model.model.*`, `language_model.lm_head.weight`, next to `vision_model.*` and
/// `multi_modal_projector.*`).
pub(crate) fn wrapper(model_type: &str) -> Option<WrapperKind> {
    match model_type {
        "llama4" => Some(WrapperKind {
            text_family: Family::Llama4,
            text_model: "language_model.model.",
            head: "language_model.lm_head.weight",
            towers: &["vision_model.", "multi_modal_projector."],
        }),
        // Qwen3_5MoeForConditionalGeneration: `model.language_model.*` and `lm_head.weight`,
        // next to the vision tower and the multi-token-prediction block transformers ignores.
        "qwen3_5_moe" => Some(WrapperKind {
            text_family: Family::Qwen35Moe,
            text_model: "model.language_model.",
            head: "lm_head.weight",
            towers: &["model.visual.", "mtp."],
        }),
        // Kimi-K2.5's `KimiK25ForConditionalGeneration` (remote code): DeepSeek-V3 (as
        // `kimi_k2`) under `language_model.`, beside the MoonViT tower and its projector.
        "kimi_k25" => Some(WrapperKind {
            text_family: Family::DeepseekV3,
            text_model: "language_model.model.",
            head: "language_model.lm_head.weight",
            towers: &["vision_tower.", "mm_projector."],
        }),
        _ => None,
    }
}

/// `model_type`s that are another family's architecture under a new name: Moonshot's Kimi-K2
/// is DeepSeek-V3's (transformers has no `kimi_k2` of its own; Kimi-K2.5 rewrites it to
/// `deepseek_v3`).
const ALIASES: &[(&str, Family)] = &[("kimi_k2", Family::DeepseekV3)];

pub(crate) use ernie4_5_moe::layer_keys as ernie_layer_keys;

/// The family-specific parts of tensor names.
pub(crate) struct NameScheme {
    /// Prefix of the MoE block in the per-expert layout (`block_sparse_moe.` for Mixtral).
    pub moe_prefix: &'static str,
    /// Names of the gate, up and down matrices of one routed expert.
    pub expert_proj: [&'static str; 3],
    /// Prefix of the shared expert(s), if the family has them.
    pub shared_prefix: &'static str,
    /// The routing correction bias after the MoE block's prefix (`gate.e_score_correction_bias`;
    /// MiniMax-M2 keeps it on the block itself).
    pub router_bias: &'static str,
    /// The router module after the MoE block's prefix (`gate`; gpt-oss's `router`).
    pub router: &'static str,
    /// The feed-forward block's module (`mlp.`; Llama-4's `feed_forward.`): the dense MLP, the
    /// stacked experts and their biases, the shared expert's gate, the MoE block in the fused
    /// layout.
    pub ffn_prefix: &'static str,
}

impl Family {
    pub const ALL: [Family; 15] = [
        Family::Mixtral,
        Family::Qwen2Moe,
        Family::Qwen3Moe,
        Family::Olmoe,
        Family::DeepseekV2,
        Family::DeepseekV3,
        Family::DeepseekV32,
        Family::Glm4Moe,
        Family::MinimaxM2,
        Family::GptOss,
        Family::Llama4,
        Family::Qwen3Next,
        Family::Qwen35Moe,
        Family::Glm4MoeLite,
        Family::Ernie45Moe,
    ];

    pub fn from_model_type(model_type: &str) -> Result<Family> {
        if let Some((_, f)) = ALIASES.iter().find(|(t, _)| *t == model_type) {
            return Ok(*f);
        }
        Family::ALL
            .into_iter()
            .find(|f| f.model_type() == model_type)
            .ok_or_else(|| Error::UnsupportedFamily {
                model_type: model_type.to_string(),
                supported: SUPPORTED,
            })
    }

    /// `model_type` in config.json.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Mixtral => "mixtral",
            Family::Qwen2Moe => "qwen2_moe",
            Family::Qwen3Moe => "qwen3_moe",
            Family::Olmoe => "olmoe",
            Family::DeepseekV2 => "deepseek_v2",
            Family::DeepseekV3 => "deepseek_v3",
            Family::DeepseekV32 => "deepseek_v32",
            Family::Glm4Moe => "glm4_moe",
            Family::MinimaxM2 => "minimax_m2",
            Family::GptOss => "gpt_oss",
            Family::Llama4 => "llama4_text",
            Family::Qwen3Next => "qwen3_next",
            Family::Qwen35Moe => "qwen3_5_moe_text",
            Family::Glm4MoeLite => "glm4_moe_lite",
            Family::Ernie45Moe => "ernie4_5_moe",
        }
    }

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Mixtral => "Mixtral",
            Family::Qwen2Moe => "Qwen2-MoE",
            Family::Qwen3Moe => "Qwen3-MoE",
            Family::Olmoe => "OLMoE",
            Family::DeepseekV2 => "DeepSeek-V2",
            Family::DeepseekV3 => "DeepSeek-V3",
            Family::DeepseekV32 => "DeepSeek-V3.2",
            Family::Glm4Moe => "GLM-4.5",
            Family::MinimaxM2 => "MiniMax-M2",
            Family::GptOss => "gpt-oss",
            Family::Llama4 => "Llama-4",
            Family::Qwen3Next => "Qwen3-Next",
            Family::Qwen35Moe => "Qwen3.5-MoE",
            Family::Glm4MoeLite => "GLM-4.7-Flash",
            Family::Ernie45Moe => "ERNIE-4.5-MoE",
        }
    }

    pub(crate) fn parse_config(self, raw: RawConfig) -> Result<ModelConfig> {
        match self {
            Family::Mixtral => mixtral::parse_config(raw),
            Family::Qwen2Moe => qwen2_moe::parse_config(raw),
            Family::Qwen3Moe => qwen3_moe::parse_config(raw),
            Family::Olmoe => olmoe::parse_config(raw),
            Family::DeepseekV2 => deepseek::parse_config(raw, deepseek::Version::V2),
            Family::DeepseekV3 => deepseek::parse_config(raw, deepseek::Version::V3),
            Family::DeepseekV32 => deepseek::parse_config(raw, deepseek::Version::V32),
            Family::Glm4Moe => glm4_moe::parse_config(raw),
            Family::MinimaxM2 => minimax_m2::parse_config(raw),
            Family::GptOss => gpt_oss::parse_config(raw),
            Family::Llama4 => llama4::parse_config(raw),
            Family::Qwen3Next => qwen3_next::parse_config(raw, qwen3_next::Version::Next),
            Family::Qwen35Moe => qwen3_next::parse_config(raw, qwen3_next::Version::V35),
            Family::Glm4MoeLite => deepseek::parse_config(raw, deepseek::Version::Glm47Flash),
            Family::Ernie45Moe => ernie4_5_moe::parse_config(raw),
        }
    }

    fn names(self) -> NameScheme {
        match self {
            Family::Mixtral => mixtral::NAMES,
            Family::Qwen2Moe => qwen2_moe::NAMES,
            Family::Qwen3Moe => qwen3_moe::NAMES,
            Family::Olmoe => olmoe::NAMES,
            Family::DeepseekV2 | Family::DeepseekV3 | Family::DeepseekV32 | Family::Glm4MoeLite => {
                deepseek::NAMES
            }
            Family::Glm4Moe => glm4_moe::NAMES,
            Family::MinimaxM2 => minimax_m2::NAMES,
            Family::GptOss => gpt_oss::NAMES,
            Family::Llama4 => llama4::NAMES,
            Family::Qwen3Next | Family::Qwen35Moe => qwen3_next::NAMES,
            Family::Ernie45Moe => ernie4_5_moe::NAMES,
        }
    }

    /// The expert layout a fresh checkpoint of this family is written in: per expert (what the
    /// hub ships for most), or stacked for gpt-oss and Llama-4, which transformers reads in no
    /// other.
    pub fn native_layout(self) -> ExpertLayout {
        if self.stacked_only() {
            ExpertLayout::Fused
        } else {
            ExpertLayout::PerExpert
        }
    }

    /// Name prefixes of tensors the family's checkpoints ship beside the language model and
    /// transformers ignores (ERNIE-4.5's multi-token-prediction block): carried verbatim, as a
    /// multimodal wrapper's towers are.
    pub fn carried_prefixes(self) -> &'static [&'static str] {
        match self {
            Family::Ernie45Moe => ernie4_5_moe::CARRIED,
            _ => &[],
        }
    }

    /// transformers reads this family's experts stacked only (it has no conversion from a
    /// per-expert layout for it).
    pub fn stacked_only(self) -> bool {
        matches!(self, Family::GptOss | Family::Llama4)
    }

    /// Tensors transformers keeps in float32 whatever the model dtype
    /// (`_keep_in_fp32_modules_strict`): DeepSeek's and GLM's router weight and correction bias. A dtype
    /// conversion leaves them alone so that the result matches what transformers would save.
    pub fn keeps_f32(self, role: Role) -> bool {
        matches!(
            self,
            Family::DeepseekV2
                | Family::DeepseekV3
                | Family::DeepseekV32
                | Family::Glm4Moe
                | Family::Glm4MoeLite
                | Family::Ernie45Moe
        ) && matches!(
            role.layer_part(),
            Some((_, LayerRole::Router | LayerRole::RouterBias))
        )
    }

    /// The Hugging Face name of a tensor of a model with `num_layers` decoder layers (the
    /// multi-token-prediction blocks are numbered after them), before a multimodal wrapper's
    /// renaming: callers use [`ModelConfig::tensor_name`], which applies it.
    pub(crate) fn tensor_name(self, role: Role, layout: ExpertLayout, num_layers: usize) -> String {
        use crate::roles::MtpRole;
        match role {
            Role::Embed => "model.embed_tokens.weight".into(),
            Role::FinalNorm => "model.norm.weight".into(),
            Role::LmHead => "lm_head.weight".into(),
            Role::Layer(i, lr) => format!("model.layers.{i}.{}", self.layer_suffix(lr, layout)),
            // Carried tensors keep their own names (`ModelConfig::tensor_name`).
            Role::Carried(i) => format!("<carried tensor {i}>"),
            Role::Mtp(i, r) => {
                let suffix = match r {
                    MtpRole::Embed => "embed_tokens.weight".to_string(),
                    MtpRole::ENorm => "enorm.weight".to_string(),
                    MtpRole::HNorm => "hnorm.weight".to_string(),
                    MtpRole::EhProj => "eh_proj.weight".to_string(),
                    MtpRole::HeadNorm => "shared_head.norm.weight".to_string(),
                    MtpRole::Head => "shared_head.head.weight".to_string(),
                    MtpRole::Layer(lr) => self.layer_suffix(lr, layout),
                };
                format!("model.layers.{}.{suffix}", num_layers + i)
            }
        }
    }

    /// A decoder-layer tensor's name after `model.layers.{i}.`.
    fn layer_suffix(self, lr: LayerRole, layout: ExpertLayout) -> String {
        let n = self.names();
        // transformers 5 renames Mixtral's `block_sparse_moe` to `mlp` in the fused layout.
        let moe = match layout {
            ExpertLayout::PerExpert => n.moe_prefix,
            ExpertLayout::Fused => n.ffn_prefix,
        };
        let ffn = n.ffn_prefix;
        let proj = |p: Proj| match p {
            Proj::Gate => 0,
            Proj::Up => 1,
            Proj::Down => 2,
        };
        let std = ["gate_proj", "up_proj", "down_proj"];
        match lr {
            LayerRole::InputNorm => "input_layernorm.weight".to_string(),
            LayerRole::PostAttnNorm => "post_attention_layernorm.weight".to_string(),
            LayerRole::Attn(a) => match linear_attention_suffix(a) {
                Some(s) => format!("linear_attn.{s}"),
                None => format!("self_attn.{}", attention_suffix(a)),
            },
            LayerRole::Router => format!("{moe}{}.weight", n.router),
            LayerRole::RouterBias => format!("{moe}{}", n.router_bias),
            LayerRole::RouterLogitBias => format!("{moe}{}.bias", n.router),
            LayerRole::ExpertsGateUpBias => format!("{ffn}experts.gate_up_proj_bias"),
            LayerRole::ExpertsDownBias => format!("{ffn}experts.down_proj_bias"),
            LayerRole::Expert(e, p) => {
                format!("{moe}experts.{e}.{}.weight", n.expert_proj[proj(p)])
            }
            LayerRole::ExpertsGateUp => format!("{ffn}experts.gate_up_proj"),
            LayerRole::ExpertsDown => format!("{ffn}experts.down_proj"),
            LayerRole::SharedExpert(p) => format!("{}{}.weight", n.shared_prefix, std[proj(p)]),
            LayerRole::SharedExpertGate => format!("{ffn}shared_expert_gate.weight"),
            LayerRole::DenseMlp(p) => format!("{ffn}{}.weight", std[proj(p)]),
        }
    }
}

/// A Gated DeltaNet tensor's name after `linear_attn.`.
fn linear_attention_suffix(a: AttnRole) -> Option<&'static str> {
    use AttnRole::*;
    Some(match a {
        LinQkvz => "in_proj_qkvz.weight",
        LinBa => "in_proj_ba.weight",
        LinQkv => "in_proj_qkv.weight",
        LinZ => "in_proj_z.weight",
        LinB => "in_proj_b.weight",
        LinA => "in_proj_a.weight",
        LinConv => "conv1d.weight",
        LinDtBias => "dt_bias",
        LinALog => "A_log",
        LinNorm => "norm.weight",
        LinOut => "out_proj.weight",
        _ => return None,
    })
}

fn attention_suffix(a: AttnRole) -> &'static str {
    use AttnRole::*;
    match a {
        Q => "q_proj.weight",
        QBias => "q_proj.bias",
        K => "k_proj.weight",
        KBias => "k_proj.bias",
        V => "v_proj.weight",
        VBias => "v_proj.bias",
        O => "o_proj.weight",
        OBias => "o_proj.bias",
        QNorm => "q_norm.weight",
        KNorm => "k_norm.weight",
        QA => "q_a_proj.weight",
        QABias => "q_a_proj.bias",
        QANorm => "q_a_layernorm.weight",
        QB => "q_b_proj.weight",
        KvA => "kv_a_proj_with_mqa.weight",
        KvABias => "kv_a_proj_with_mqa.bias",
        KvANorm => "kv_a_layernorm.weight",
        KvB => "kv_b_proj.weight",
        IndexerQB => "indexer.wq_b.weight",
        IndexerK => "indexer.wk.weight",
        IndexerKNorm => "indexer.k_norm.weight",
        IndexerKNormBias => "indexer.k_norm.bias",
        IndexerWeights => "indexer.weights_proj.weight",
        Sinks => "sinks",
        LinQkvz | LinBa | LinQkv | LinZ | LinB | LinA | LinConv | LinDtBias | LinALog | LinNorm
        | LinOut => {
            unreachable!("Gated DeltaNet tensors are named by linear_attention_suffix")
        }
    }
}

/// The fields every family spells the same way.
pub(crate) struct Common {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope: crate::rope::RopeConfig,
    pub tie_word_embeddings: bool,
    /// Settings that change the math and that moegrow does not compute.
    pub not_computed: Vec<String>,
    pub quant: Option<crate::quant::Fp8Block>,
}

/// The parts of a config that differ between families, completed by [`Common::finish`].
pub(crate) struct Specific {
    pub attention: crate::config::Attention,
    pub mlp: Vec<crate::config::MlpKind>,
    pub dense_intermediate: usize,
    pub moe: crate::config::MoeConfig,
    pub sliding_window: Vec<Option<usize>>,
    pub mtp_layers: usize,
}

impl Common {
    pub fn finish(self, family: Family, raw: RawConfig, s: Specific) -> ModelConfig {
        ModelConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope.theta,
            rope: self.rope,
            rotary_dim: self.head_dim,
            tie_word_embeddings: self.tie_word_embeddings,
            not_computed: self.not_computed,
            attention_sinks: false,
            expert_bias: false,
            router_logit_bias: false,
            expert_act: crate::config::ExpertAct::Silu,
            rope_interleave: false,
            rope_layers: vec![true; self.num_layers],
            attention_chunk: vec![None; self.num_layers],
            attn_temperature: None,
            expert_input_scaling: false,
            linear_attention: None,
            linear_layers: vec![false; self.num_layers],
            zero_centered_norms: false,
            attn_output_gate: false,
            wrapper: None,
            carried: Vec::new(),
            attention: s.attention,
            mlp: s.mlp,
            dense_intermediate: s.dense_intermediate,
            moe: s.moe,
            sliding_window: s.sliding_window,
            mtp_layers: s.mtp_layers,
            quant: self.quant,
            raw: raw.0.clone(),
        }
    }

    /// The rotary dimension of a family that rotates part of each head:
    /// `int(head_dim · partial_rotary_factor)`, the factor from `rope_parameters` (transformers
    /// 5), else the top-level key, else the family's default.
    pub fn rotary_dim(&self, raw: RawConfig, default: f64) -> Result<usize> {
        let in_params = raw
            .get("rope_parameters")
            .and_then(|p| p.get("partial_rotary_factor"))
            .filter(|v| !v.is_null());
        let factor =
            match in_params.or_else(|| raw.get("partial_rotary_factor").filter(|v| !v.is_null())) {
                None => default,
                Some(v) => v.as_f64().ok_or_else(|| {
                    Error::config(format!(
                        "`partial_rotary_factor` must be a number, found {v}"
                    ))
                })?,
            };
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::config(format!(
                "`partial_rotary_factor` must be in (0, 1], found {factor}"
            )));
        }
        let dim = (self.head_dim as f64 * factor) as usize;
        if dim == 0 || dim % 2 != 0 {
            return Err(Error::config(format!(
                "`partial_rotary_factor` {factor} of head_dim {} gives {dim} rotary dimensions; RoPE needs a positive even number",
                self.head_dim
            )));
        }
        Ok(dim)
    }

    pub fn parse(raw: RawConfig, eps_default: f32) -> Result<Common> {
        let hidden_size = raw.usize("hidden_size")?;
        let num_heads = raw.usize("num_attention_heads")?;
        if num_heads == 0 {
            return Err(Error::config("`num_attention_heads` must be positive"));
        }
        let num_kv_heads = raw.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = raw
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_heads);
        let rope = crate::rope::RopeConfig::parse(raw)?;
        let mut not_computed = Vec::new();
        if let crate::rope::RopeScaling::Unsupported(t) = &rope.scaling {
            not_computed.push(format!(
                "rope type `{t}` (moegrow computes default, linear, dynamic, yarn and llama3)"
            ));
        }
        for key in ["hidden_act", "hidden_activation"] {
            let act = raw.str_or(key, "silu")?;
            if act != "silu" {
                not_computed.push(format!("`{key}` `{act}` (moegrow computes SiLU)"));
            }
        }
        Ok(Common {
            vocab_size: raw.usize("vocab_size")?,
            hidden_size,
            num_layers: raw.usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.f32_or("rms_norm_eps", eps_default)?,
            rope,
            tie_word_embeddings: raw.bool_or("tie_word_embeddings", false)?,
            not_computed,
            quant: crate::quant::Fp8Block::parse(raw.0)?,
        })
    }
}

/// Qwen's rule for which layers are MoE: not listed in `mlp_only_layers` and
/// `(i + 1) % decoder_sparse_step == 0`.
pub(crate) fn qwen_layer_kinds(
    raw: RawConfig,
    layers: usize,
    experts: usize,
) -> Result<Vec<crate::config::MlpKind>> {
    use crate::config::MlpKind;
    let dense = raw.usize_list("mlp_only_layers")?;
    let step = raw.opt_usize("decoder_sparse_step")?.unwrap_or(1);
    if step == 0 {
        return Err(Error::config("`decoder_sparse_step` must be positive"));
    }
    if let Some(bad) = dense.iter().find(|&&l| l >= layers) {
        return Err(Error::config(format!(
            "`mlp_only_layers` names layer {bad}, but there are only {layers} layers"
        )));
    }
    Ok((0..layers)
        .map(|i| {
            if !dense.contains(&i) && experts > 0 && (i + 1) % step == 0 {
                MlpKind::Moe
            } else {
                MlpKind::Dense
            }
        })
        .collect())
}

/// Per-layer kinds from `layer_types` (transformers 5's list), each entry one of `kinds`
/// (its spelling, its value); `None` when the config has no such list.
pub(crate) fn layer_types<T: Copy>(
    raw: RawConfig,
    layers: usize,
    kinds: &[(&str, T)],
) -> Result<Option<Vec<T>>> {
    let Some(v) = raw.get("layer_types") else {
        return Ok(None);
    };
    let list = v
        .as_array()
        .filter(|a| a.len() == layers)
        .ok_or_else(|| Error::config(format!("`layer_types` must list {layers} layers, found {v}")))?;
    let names: Vec<String> = kinds.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    list.iter()
        .map(|t| {
            kinds
                .iter()
                .find(|(n, _)| t.as_str() == Some(n))
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    Error::config(format!(
                        "`layer_types` entries are {}, found {t}",
                        names.join(" or ")
                    ))
                })
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// DeepSeek's rule (`first_k_dense_replace`), kept by its descendants: the first `first_dense`
/// layers dense, the rest MoE.
pub(crate) fn dense_first(layers: usize, first_dense: usize) -> Vec<crate::config::MlpKind> {
    use crate::config::MlpKind;
    (0..layers)
        .map(|i| if i >= first_dense { MlpKind::Moe } else { MlpKind::Dense })
        .collect()
}

/// Dense or MoE per layer from `mlp_layer_types` (`"dense"` / `"sparse"`, transformers 5's
/// spelling for DeepSeek-V3.2 and GLM-4.7-Flash), or, when absent, the first `first_dense`
/// layers dense.
pub(crate) fn mlp_layer_types(
    raw: RawConfig,
    layers: usize,
    first_dense: usize,
) -> Result<Vec<crate::config::MlpKind>> {
    use crate::config::MlpKind;
    let Some(v) = raw.get("mlp_layer_types").filter(|v| !v.is_null()) else {
        return Ok(dense_first(layers, first_dense));
    };
    let list = v
        .as_array()
        .filter(|a| a.len() == layers)
        .ok_or_else(|| Error::config(format!("`mlp_layer_types` must list {layers} layers, found {v}")))?;
    list.iter()
        .map(|t| match t.as_str() {
            Some("dense") => Ok(MlpKind::Dense),
            Some("sparse") => Ok(MlpKind::Moe),
            _ => Err(Error::config(format!(
                "`mlp_layer_types` entries are \"dense\" or \"sparse\", found {t}"
            ))),
        })
        .collect()
}

/// Sliding window for all layers when `use_sliding_window` is set (Qwen3-MoE).
pub(crate) fn uniform_window(
    raw: RawConfig,
    layers: usize,
    flag: Option<&str>,
) -> Result<Vec<Option<usize>>> {
    let on = match flag {
        Some(f) => raw.bool_or(f, false)?,
        None => true,
    };
    let w = if on {
        raw.opt_usize("sliding_window")?
    } else {
        None
    };
    Ok(vec![w.filter(|w| *w > 0); layers])
}
