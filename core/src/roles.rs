//! What each tensor of a checkpoint *is*, independent of how a family spells its name.
//!
//! Growth, analysis, the GPU runtime and training all address tensors by [`Role`]; only the
//! family modules know the Hugging Face names. [`expected_roles`] and [`role_shape`] derive the
//! full tensor list of a checkpoint from its config, which is what lets the loader refuse both
//! missing and unknown tensors.

use crate::config::{Attention, MlpKind, ModelConfig, QkNorm};

/// One of the three matrices of a SwiGLU feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 3] = [Proj::Gate, Proj::Up, Proj::Down];
}

/// Attention tensors of standard (GQA) and latent (MLA) attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttnRole {
    Q,
    QBias,
    K,
    KBias,
    V,
    VBias,
    O,
    OBias,
    QNorm,
    KNorm,
    /// MLA: low-rank query down-projection, its bias and norm, and the up-projection.
    QA,
    QABias,
    QANorm,
    QB,
    /// MLA: joint KV latent plus shared RoPE key, its bias and norm, and the KV up-projection.
    KvA,
    KvABias,
    KvANorm,
    KvB,
}

/// Tensors that belong to one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerRole {
    InputNorm,
    Attn(AttnRole),
    PostAttnNorm,
    Router,
    /// DeepSeek-V3 `e_score_correction_bias` (used for expert selection only).
    RouterBias,
    /// Per-expert layout: one matrix of one expert.
    Expert(usize, Proj),
    /// Fused layout: `[E, 2I, H]`, gate rows then up rows.
    ExpertsGateUp,
    /// Fused layout: `[E, H, I]`.
    ExpertsDown,
    SharedExpert(Proj),
    /// Qwen2-MoE's `[1, H]` sigmoid gate on the shared expert.
    SharedExpertGate,
    DenseMlp(Proj),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Embed,
    Layer(usize, LayerRole),
    FinalNorm,
    LmHead,
}

/// How routed experts are stored on disk. transformers 5 reads both; checkpoints in the wild
/// come in both, and we write back what we read unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExpertLayout {
    /// `experts.{e}.{gate,up,down}` (or Mixtral's `w1/w3/w2`), one tensor per matrix.
    PerExpert,
    /// `experts.gate_up_proj [E,2I,H]` and `experts.down_proj [E,H,I]`.
    Fused,
}

impl ExpertLayout {
    pub fn name(self) -> &'static str {
        match self {
            ExpertLayout::PerExpert => "per-expert",
            ExpertLayout::Fused => "fused",
        }
    }
}

/// Every tensor a checkpoint with this config and layout must contain, in a stable order
/// (embedding, layers in order, final norm, head).
pub fn expected_roles(cfg: &ModelConfig, layout: ExpertLayout) -> Vec<Role> {
    let mut out = vec![Role::Embed];
    for layer in 0..cfg.num_layers {
        let mut push = |r: LayerRole| out.push(Role::Layer(layer, r));
        push(LayerRole::InputNorm);
        for a in attention_roles(&cfg.attention) {
            push(LayerRole::Attn(a));
        }
        push(LayerRole::PostAttnNorm);
        match cfg.mlp[layer] {
            MlpKind::Dense => Proj::ALL.iter().for_each(|p| push(LayerRole::DenseMlp(*p))),
            MlpKind::Moe => {
                push(LayerRole::Router);
                if cfg.moe.router.correction_bias {
                    push(LayerRole::RouterBias);
                }
                match layout {
                    ExpertLayout::PerExpert => {
                        for e in 0..cfg.moe.num_experts {
                            Proj::ALL
                                .iter()
                                .for_each(|p| push(LayerRole::Expert(e, *p)));
                        }
                    }
                    ExpertLayout::Fused => {
                        push(LayerRole::ExpertsGateUp);
                        push(LayerRole::ExpertsDown);
                    }
                }
                if let Some(shared) = &cfg.moe.shared {
                    Proj::ALL
                        .iter()
                        .for_each(|p| push(LayerRole::SharedExpert(*p)));
                    if shared.gated {
                        push(LayerRole::SharedExpertGate);
                    }
                }
            }
        }
    }
    out.push(Role::FinalNorm);
    if !cfg.tie_word_embeddings {
        out.push(Role::LmHead);
    }
    out
}

fn attention_roles(attn: &Attention) -> Vec<AttnRole> {
    use AttnRole::*;
    match attn {
        Attention::Standard {
            qkv_bias,
            o_bias,
            qk_norm,
            ..
        } => {
            let mut v = vec![Q, K, V, O];
            if *qkv_bias {
                v.extend([QBias, KBias, VBias]);
            }
            if *o_bias {
                v.push(OBias);
            }
            if *qk_norm != QkNorm::None {
                v.extend([QNorm, KNorm]);
            }
            v
        }
        Attention::Mla(m) => {
            let mut v = match m.q_lora_rank {
                None => vec![Q],
                Some(_) => vec![QA, QANorm, QB],
            };
            if m.bias && m.q_lora_rank.is_some() {
                v.push(QABias);
            }
            v.extend([KvA, KvANorm, KvB, O]);
            if m.bias {
                v.extend([KvABias, OBias]);
            }
            v
        }
    }
}

/// The shape `config.json` implies for a role (linear weights are `[out, in]`).
pub fn role_shape(cfg: &ModelConfig, role: Role) -> Vec<usize> {
    let h = cfg.hidden_size;
    let m = &cfg.moe;
    match role {
        Role::Embed | Role::LmHead => vec![cfg.vocab_size, h],
        Role::FinalNorm => vec![h],
        Role::Layer(_, lr) => match lr {
            LayerRole::InputNorm | LayerRole::PostAttnNorm => vec![h],
            LayerRole::Attn(a) => attention_shape(cfg, a),
            LayerRole::Router => vec![m.num_experts, h],
            LayerRole::RouterBias => vec![m.num_experts],
            LayerRole::Expert(_, p) => ffn_shape(h, m.intermediate, p),
            LayerRole::ExpertsGateUp => vec![m.num_experts, 2 * m.intermediate, h],
            LayerRole::ExpertsDown => vec![m.num_experts, h, m.intermediate],
            LayerRole::SharedExpert(p) => {
                ffn_shape(h, m.shared.as_ref().map_or(0, |s| s.intermediate), p)
            }
            LayerRole::SharedExpertGate => vec![1, h],
            LayerRole::DenseMlp(p) => ffn_shape(h, cfg.dense_intermediate, p),
        },
    }
}

fn ffn_shape(h: usize, i: usize, p: Proj) -> Vec<usize> {
    match p {
        Proj::Gate | Proj::Up => vec![i, h],
        Proj::Down => vec![h, i],
    }
}

fn attention_shape(cfg: &ModelConfig, a: AttnRole) -> Vec<usize> {
    use AttnRole::*;
    let h = cfg.hidden_size;
    match &cfg.attention {
        Attention::Standard { qk_norm, .. } => {
            let q = cfg.num_heads * cfg.head_dim;
            let kv = cfg.num_kv_heads * cfg.head_dim;
            match a {
                Q => vec![q, h],
                K | V => vec![kv, h],
                O => vec![h, q],
                QBias => vec![q],
                KBias | VBias => vec![kv],
                OBias => vec![h],
                QNorm => vec![if *qk_norm == QkNorm::FullWidth {
                    q
                } else {
                    cfg.head_dim
                }],
                KNorm => vec![if *qk_norm == QkNorm::FullWidth {
                    kv
                } else {
                    cfg.head_dim
                }],
                _ => vec![0],
            }
        }
        Attention::Mla(m) => {
            let nh = cfg.num_heads;
            let r = m.q_lora_rank.unwrap_or(0);
            match a {
                Q => vec![nh * m.qk_head_dim(), h],
                QA => vec![r, h],
                QABias | QANorm => vec![r],
                QB => vec![nh * m.qk_head_dim(), r],
                KvA => vec![m.kv_lora_rank + m.qk_rope_head_dim, h],
                KvABias => vec![m.kv_lora_rank + m.qk_rope_head_dim],
                KvANorm => vec![m.kv_lora_rank],
                KvB => vec![nh * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank],
                O => vec![h, nh * m.v_head_dim],
                OBias => vec![h],
                _ => vec![0],
            }
        }
    }
}

/// True for the routed-expert tensors (what width growth duplicates and what only `top_k / E`
/// of activates per token).
pub fn is_routed_expert(role: Role) -> bool {
    matches!(
        role,
        Role::Layer(
            _,
            LayerRole::Expert(..) | LayerRole::ExpertsGateUp | LayerRole::ExpertsDown
        )
    )
}
