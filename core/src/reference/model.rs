//! The whole reference model: weights in f32 and a forward pass that returns everything the
//! other parts of moegrow check against (logits, per-layer hidden states, router logits and
//! the experts each token chose).

use super::attention::{LatentAttention, StandardAttention};
use super::ops::{linear, rms_norm_rows, sigmoid, swiglu, Mat, Rope};
use super::routing::{route, Choice};
use crate::checkpoint::Checkpoint;
use crate::config::{Attention, MlpKind, ModelConfig};
use crate::error::{Error, Result};
use crate::roles::{AttnRole as A, LayerRole as L, Proj, Role};

pub struct Ffn {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    pub intermediate: usize,
}

impl Ffn {
    pub fn forward(&self, x: &Mat) -> Mat {
        swiglu(x, &self.gate, &self.up, &self.down, self.intermediate)
    }
}

pub struct MoeBlock {
    pub router: Vec<f32>,
    pub correction_bias: Option<Vec<f32>>,
    pub experts: Vec<Ffn>,
    pub shared: Option<Ffn>,
    pub shared_gate: Option<Vec<f32>>,
}

pub enum Mlp {
    Dense(Ffn),
    Moe(MoeBlock),
}

pub enum AttentionWeights {
    Standard(StandardAttention),
    Latent(LatentAttention),
}

pub struct Layer {
    pub input_norm: Vec<f32>,
    pub attention: AttentionWeights,
    pub post_attn_norm: Vec<f32>,
    pub mlp: Mlp,
}

pub struct ReferenceModel {
    pub config: ModelConfig,
    pub embed: Vec<f32>,
    pub layers: Vec<Layer>,
    pub final_norm: Vec<f32>,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Vec<f32>>,
}

/// What one forward pass produces.
pub struct ForwardOutput {
    /// `[T, vocab]`.
    pub logits: Mat,
    /// `num_layers + 1` entries as transformers returns them: the input of each layer, then the
    /// output of the final norm.
    pub hidden_states: Vec<Mat>,
    /// Per layer: `[T, E]` router logits for MoE layers, `None` for dense ones.
    pub router_logits: Vec<Option<Mat>>,
    /// Per layer: each token's chosen experts and weights (MoE layers only).
    pub choices: Vec<Option<Vec<Choice>>>,
}

impl ReferenceModel {
    /// Convert a checkpoint's weights to f32.
    pub fn load(ckpt: &Checkpoint) -> Result<ReferenceModel> {
        let cfg = ckpt.config.clone();
        let get = |r: Role| ckpt.f32(r);
        let opt = |r: Role| -> Result<Option<Vec<f32>>> {
            if ckpt.has(r) {
                Ok(Some(ckpt.f32(r)?))
            } else {
                Ok(None)
            }
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let lr = |r: L| Role::Layer(i, r);
            let attention = match &cfg.attention {
                Attention::Standard {
                    qk_norm, clip_qkv, ..
                } => AttentionWeights::Standard(StandardAttention {
                    num_heads: cfg.num_heads,
                    num_kv_heads: cfg.num_kv_heads,
                    head_dim: cfg.head_dim,
                    q: get(lr(L::Attn(A::Q)))?,
                    k: get(lr(L::Attn(A::K)))?,
                    v: get(lr(L::Attn(A::V)))?,
                    o: get(lr(L::Attn(A::O)))?,
                    q_bias: opt(lr(L::Attn(A::QBias)))?,
                    k_bias: opt(lr(L::Attn(A::KBias)))?,
                    v_bias: opt(lr(L::Attn(A::VBias)))?,
                    o_bias: opt(lr(L::Attn(A::OBias)))?,
                    qk_norm: *qk_norm,
                    q_norm: opt(lr(L::Attn(A::QNorm)))?,
                    k_norm: opt(lr(L::Attn(A::KNorm)))?,
                    clip_qkv: *clip_qkv,
                    eps: cfg.rms_norm_eps,
                }),
                Attention::Mla(m) => AttentionWeights::Latent(LatentAttention {
                    cfg: m.clone(),
                    num_heads: cfg.num_heads,
                    q: opt(lr(L::Attn(A::Q)))?,
                    q_a: opt(lr(L::Attn(A::QA)))?,
                    q_a_bias: opt(lr(L::Attn(A::QABias)))?,
                    q_a_norm: opt(lr(L::Attn(A::QANorm)))?,
                    q_b: opt(lr(L::Attn(A::QB)))?,
                    kv_a: get(lr(L::Attn(A::KvA)))?,
                    kv_a_bias: opt(lr(L::Attn(A::KvABias)))?,
                    kv_a_norm: get(lr(L::Attn(A::KvANorm)))?,
                    kv_b: get(lr(L::Attn(A::KvB)))?,
                    o: get(lr(L::Attn(A::O)))?,
                    o_bias: opt(lr(L::Attn(A::OBias)))?,
                }),
            };
            let mlp = match cfg.mlp[i] {
                MlpKind::Dense => Mlp::Dense(Ffn {
                    gate: get(lr(L::DenseMlp(Proj::Gate)))?,
                    up: get(lr(L::DenseMlp(Proj::Up)))?,
                    down: get(lr(L::DenseMlp(Proj::Down)))?,
                    intermediate: cfg.dense_intermediate,
                }),
                MlpKind::Moe => {
                    let experts = (0..cfg.moe.num_experts)
                        .map(|e| {
                            Ok(Ffn {
                                gate: ckpt.expert_f32(i, e, Proj::Gate)?,
                                up: ckpt.expert_f32(i, e, Proj::Up)?,
                                down: ckpt.expert_f32(i, e, Proj::Down)?,
                                intermediate: cfg.moe.intermediate,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let shared = match &cfg.moe.shared {
                        Some(s) => Some(Ffn {
                            gate: get(lr(L::SharedExpert(Proj::Gate)))?,
                            up: get(lr(L::SharedExpert(Proj::Up)))?,
                            down: get(lr(L::SharedExpert(Proj::Down)))?,
                            intermediate: s.intermediate,
                        }),
                        None => None,
                    };
                    Mlp::Moe(MoeBlock {
                        router: get(lr(L::Router))?,
                        correction_bias: opt(lr(L::RouterBias))?,
                        experts,
                        shared,
                        shared_gate: opt(lr(L::SharedExpertGate))?,
                    })
                }
            };
            layers.push(Layer {
                input_norm: get(lr(L::InputNorm))?,
                attention,
                post_attn_norm: get(lr(L::PostAttnNorm))?,
                mlp,
            });
        }
        Ok(ReferenceModel {
            embed: get(Role::Embed)?,
            final_norm: get(Role::FinalNorm)?,
            lm_head: opt(Role::LmHead)?,
            layers,
            config: cfg,
        })
    }

    pub fn forward(&self, tokens: &[u32]) -> Result<ForwardOutput> {
        let cfg = &self.config;
        let (h, t_len) = (cfg.hidden_size, tokens.len());
        if t_len == 0 {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        let mut x = Mat::zeros(t_len, h);
        for (t, &tok) in tokens.iter().enumerate() {
            let tok = tok as usize;
            if tok >= cfg.vocab_size {
                return Err(Error::Invalid(format!(
                    "token id {tok} at position {t} is outside the vocabulary (size {})",
                    cfg.vocab_size
                )));
            }
            x.row_mut(t)
                .copy_from_slice(&self.embed[tok * h..(tok + 1) * h]);
        }
        let rope_dim = match &cfg.attention {
            Attention::Standard { .. } => cfg.head_dim,
            Attention::Mla(m) => m.qk_rope_head_dim,
        };
        let rope = Rope::new(rope_dim, cfg.rope_theta, t_len);
        let mut hidden_states = Vec::with_capacity(cfg.num_layers + 1);
        let mut router_logits = Vec::with_capacity(cfg.num_layers);
        let mut choices = Vec::with_capacity(cfg.num_layers);
        for (i, layer) in self.layers.iter().enumerate() {
            hidden_states.push(x.clone());
            let normed = rms_norm_rows(&x, &layer.input_norm, cfg.rms_norm_eps);
            let attn = match &layer.attention {
                AttentionWeights::Standard(a) => a.forward(&normed, &rope, cfg.sliding_window[i]),
                AttentionWeights::Latent(a) => a.forward(&normed, &rope),
            };
            x.add_assign(&attn);
            let normed = rms_norm_rows(&x, &layer.post_attn_norm, cfg.rms_norm_eps);
            let (out, logits, chosen) = match &layer.mlp {
                Mlp::Dense(f) => (f.forward(&normed), None, None),
                Mlp::Moe(m) => {
                    let (out, logits, chosen) = self.moe_forward(m, &normed);
                    (out, Some(logits), Some(chosen))
                }
            };
            x.add_assign(&out);
            router_logits.push(logits);
            choices.push(chosen);
        }
        let normed = rms_norm_rows(&x, &self.final_norm, cfg.rms_norm_eps);
        let logits = linear(
            &normed,
            self.lm_head.as_deref().unwrap_or(&self.embed),
            cfg.vocab_size,
        );
        hidden_states.push(normed);
        Ok(ForwardOutput {
            logits,
            hidden_states,
            router_logits,
            choices,
        })
    }

    /// Router, then each expert over the tokens routed to it (gathered into one matrix), then a
    /// weighted scatter back; plus the shared expert.
    fn moe_forward(&self, m: &MoeBlock, x: &Mat) -> (Mat, Mat, Vec<Choice>) {
        let moe = &self.config.moe;
        let logits = linear(x, &m.router, moe.num_experts);
        let chosen: Vec<Choice> = (0..x.rows)
            .map(|t| {
                route(
                    logits.row(t),
                    &moe.router,
                    moe.top_k,
                    m.correction_bias.as_deref(),
                )
            })
            .collect();
        let mut out = Mat::zeros(x.rows, x.cols);
        for (e, expert) in m.experts.iter().enumerate() {
            let routed: Vec<(usize, f32)> = chosen
                .iter()
                .enumerate()
                .filter_map(|(t, c)| {
                    c.experts
                        .iter()
                        .position(|&x| x == e)
                        .map(|k| (t, c.weights[k]))
                })
                .collect();
            if routed.is_empty() {
                continue;
            }
            let mut xs = Mat::zeros(routed.len(), x.cols);
            for (r, (t, _)) in routed.iter().enumerate() {
                xs.row_mut(r).copy_from_slice(x.row(*t));
            }
            let ys = expert.forward(&xs);
            for (r, (t, w)) in routed.iter().enumerate() {
                out.row_mut(*t)
                    .iter_mut()
                    .zip(ys.row(r))
                    .for_each(|(o, y)| *o += w * y);
            }
        }
        if let Some(shared) = &m.shared {
            let mut ys = shared.forward(x);
            if let Some(g) = &m.shared_gate {
                let gates = linear(x, g, 1);
                for t in 0..x.rows {
                    let s = sigmoid(gates.data[t]);
                    ys.row_mut(t).iter_mut().for_each(|v| *v *= s);
                }
            }
            out.add_assign(&ys);
        }
        (out, logits, chosen)
    }
}
