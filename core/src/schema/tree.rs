//! The weight tree: a model's tensors arranged as the model is (layers → attention, norms,
//! router, experts, shared experts), generic over what each leaf holds. The schema fills it
//! with [`Spec`](super::Spec)s; the CPU reference holds `Vec<f32>` leaves, the GPU model device
//! buffers, the trainer parameter slots, and every one of them is built by mapping over the
//! schema's tree rather than by naming tensors again.
//!
//! Routed experts are one leaf per projection, stacked over experts: `gate_up [E, 2I, H]` (each
//! expert's gate rows, then its up rows) and `down [E, H, I]`, transformers 5's in-memory form.
//! How the per-expert on-disk layout maps onto them lives in [`super::layout`] and nowhere else.

/// Generates the traversals of a struct whose fields are leaves (`leaf`), optional leaves
/// (`opt`), subtrees (`node`), optional subtrees (`opt_node`) or lists of subtrees (`nodes`).
/// Fields are visited in the order listed, which is the canonical tensor order.
macro_rules! traverse {
    ($name:ident { $($kind:ident $field:ident),* $(,)? }) => {
        impl<T> $name<T> {
            /// The same tree with every leaf mapped by `f`, in canonical order; the first error
            /// stops the walk.
            pub fn try_map<U, E>(
                &self,
                f: &mut dyn FnMut(&T) -> Result<U, E>,
            ) -> Result<$name<U>, E> {
                Ok($name { $($field: traverse!(@map $kind self.$field, f)),* })
            }

            /// Every leaf, in canonical order.
            pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a T)) {
                $(traverse!(@visit $kind self.$field, f);)*
            }

            /// Every leaf, mutably, in canonical order.
            pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut T)) {
                $(traverse!(@visit_mut $kind self.$field, f);)*
            }
        }
    };
    (@map leaf $x:expr, $f:ident) => { $f(&$x)? };
    (@map opt $x:expr, $f:ident) => { match &$x { Some(v) => Some($f(v)?), None => None } };
    (@map node $x:expr, $f:ident) => { $x.try_map($f)? };
    (@map opt_node $x:expr, $f:ident) => {
        match &$x { Some(v) => Some(v.try_map($f)?), None => None }
    };
    (@map nodes $x:expr, $f:ident) => {
        $x.iter().map(|v| v.try_map($f)).collect::<Result<Vec<_>, E>>()?
    };
    (@visit leaf $x:expr, $f:ident) => { $f(&$x) };
    (@visit opt $x:expr, $f:ident) => { if let Some(v) = &$x { $f(v) } };
    (@visit node $x:expr, $f:ident) => { $x.visit($f) };
    (@visit opt_node $x:expr, $f:ident) => { if let Some(v) = &$x { v.visit($f) } };
    (@visit nodes $x:expr, $f:ident) => { $x.iter().for_each(|v| v.visit($f)) };
    (@visit_mut leaf $x:expr, $f:ident) => { $f(&mut $x) };
    (@visit_mut opt $x:expr, $f:ident) => { if let Some(v) = &mut $x { $f(v) } };
    (@visit_mut node $x:expr, $f:ident) => { $x.visit_mut($f) };
    (@visit_mut opt_node $x:expr, $f:ident) => { if let Some(v) = &mut $x { v.visit_mut($f) } };
    (@visit_mut nodes $x:expr, $f:ident) => { $x.iter_mut().for_each(|v| v.visit_mut($f)) };
}

/// A whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<T> {
    pub embed: T,
    pub layers: Vec<Layer<T>>,
    pub final_norm: T,
    /// `None` when the head is tied to the embedding.
    pub lm_head: Option<T>,
    /// Multi-token-prediction blocks stored after the last decoder layer (DeepSeek-V3's
    /// `num_nextn_predict_layers`); empty when the checkpoint has none.
    pub mtp: Vec<Mtp<T>>,
}
traverse!(Weights { leaf embed, nodes layers, leaf final_norm, opt lm_head, nodes mtp });

/// One decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer<T> {
    pub input_norm: T,
    pub attention: Attention<T>,
    pub post_attn_norm: T,
    pub mlp: Mlp<T>,
}
traverse!(Layer { leaf input_norm, node attention, leaf post_attn_norm, node mlp });

#[derive(Debug, Clone, PartialEq)]
pub enum Attention<T> {
    Standard(Gqa<T>),
    Latent(Mla<T>),
    /// Qwen3-Next's Gated DeltaNet layers.
    Linear(DeltaNet<T>),
}

impl<T> Attention<T> {
    pub fn try_map<U, E>(&self, f: &mut dyn FnMut(&T) -> Result<U, E>) -> Result<Attention<U>, E> {
        Ok(match self {
            Attention::Standard(a) => Attention::Standard(a.try_map(f)?),
            Attention::Latent(a) => Attention::Latent(a.try_map(f)?),
            Attention::Linear(a) => Attention::Linear(a.try_map(f)?),
        })
    }
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a T)) {
        match self {
            Attention::Standard(a) => a.visit(f),
            Attention::Latent(a) => a.visit(f),
            Attention::Linear(a) => a.visit(f),
        }
    }
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut T)) {
        match self {
            Attention::Standard(a) => a.visit_mut(f),
            Attention::Latent(a) => a.visit_mut(f),
            Attention::Linear(a) => a.visit_mut(f),
        }
    }
}

/// Multi-head / grouped-query attention.
#[derive(Debug, Clone, PartialEq)]
pub struct Gqa<T> {
    pub q: T,
    pub k: T,
    pub v: T,
    pub o: T,
    pub q_bias: Option<T>,
    pub k_bias: Option<T>,
    pub v_bias: Option<T>,
    pub o_bias: Option<T>,
    /// Per head (`[head_dim]`) or over the whole projection, as the config says.
    pub q_norm: Option<T>,
    pub k_norm: Option<T>,
    /// gpt-oss's per-head sink logits `[heads]`.
    pub sinks: Option<T>,
}
traverse!(Gqa {
    leaf q, leaf k, leaf v, leaf o,
    opt q_bias, opt k_bias, opt v_bias, opt o_bias,
    opt q_norm, opt k_norm, opt sinks,
});

/// Qwen3-Next's Gated DeltaNet, linear attention with a delta-rule state per value head:
/// `in_qkvz [2·key_dim + 2·value_dim, H]` (per key head: q, k, then its value heads' v and z),
/// `in_ba [2·value_heads, H]` (per key head: its value heads' b, then a), a causal depthwise
/// convolution `conv [conv_dim, 1, kernel]` over q, k, v, the decay's `dt_bias` and `A_log`
/// `[value_heads]`, the gated RMSNorm `norm [value_head_dim]` and `out [H, value_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaNet<T> {
    /// Qwen3-Next's grouped projections.
    pub in_qkvz: Option<T>,
    pub in_ba: Option<T>,
    /// Qwen3.5's split ones: `in_qkv [2·key_dim + value_dim, H]` (q, k, v in order),
    /// `in_z [value_dim, H]`, `in_b`, `in_a [value_heads, H]`.
    pub in_qkv: Option<T>,
    pub in_z: Option<T>,
    pub in_b: Option<T>,
    pub in_a: Option<T>,
    pub conv: T,
    pub dt_bias: T,
    pub a_log: T,
    pub norm: T,
    pub out: T,
}
traverse!(DeltaNet {
    opt in_qkvz, opt in_ba, opt in_qkv, opt in_z, opt in_b, opt in_a,
    leaf conv, leaf dt_bias, leaf a_log, leaf norm, leaf out,
});

/// DeepSeek's multi-head latent attention: a full-rank `q` or the low-rank `q_a → norm → q_b`,
/// the joint KV latent (plus the shared RoPE key) `kv_a → norm → kv_b`, and `o`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mla<T> {
    pub q: Option<T>,
    pub q_a: Option<T>,
    pub q_a_norm: Option<T>,
    pub q_b: Option<T>,
    pub q_a_bias: Option<T>,
    pub kv_a: T,
    pub kv_a_norm: T,
    pub kv_b: T,
    pub o: T,
    pub kv_a_bias: Option<T>,
    pub o_bias: Option<T>,
    /// DeepSeek-V3.2's sparse-attention indexer.
    pub indexer: Option<Indexer<T>>,
}
traverse!(Mla {
    opt q, opt q_a, opt q_a_norm, opt q_b, opt q_a_bias,
    leaf kv_a, leaf kv_a_norm, leaf kv_b, leaf o,
    opt kv_a_bias, opt o_bias, opt_node indexer,
});

/// DeepSeek-V3.2's lightning indexer: it scores every earlier key per query
/// (`Σ_h w_h · relu(q_h · k)`, `q = wq_b(q latent)`, `k = LayerNorm(wk(x))`) and lets attention
/// see only the `index_topk` best. Up to `index_topk` tokens it selects every key, so the
/// attention is exactly dense attention; moegrow computes that and refuses longer inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexer<T> {
    /// `[heads · head_dim, q_lora_rank]`.
    pub wq_b: T,
    /// `[head_dim, H]`.
    pub wk: T,
    pub k_norm: T,
    pub k_norm_bias: T,
    /// `[heads, H]`.
    pub weights_proj: T,
}
traverse!(Indexer { leaf wq_b, leaf wk, leaf k_norm, leaf k_norm_bias, leaf weights_proj });

#[derive(Debug, Clone, PartialEq)]
pub enum Mlp<T> {
    Dense(Ffn<T>),
    Moe(Moe<T>),
}

impl<T> Mlp<T> {
    pub fn try_map<U, E>(&self, f: &mut dyn FnMut(&T) -> Result<U, E>) -> Result<Mlp<U>, E> {
        Ok(match self {
            Mlp::Dense(d) => Mlp::Dense(d.try_map(f)?),
            Mlp::Moe(m) => Mlp::Moe(m.try_map(f)?),
        })
    }
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a T)) {
        match self {
            Mlp::Dense(d) => d.visit(f),
            Mlp::Moe(m) => m.visit(f),
        }
    }
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut T)) {
        match self {
            Mlp::Dense(d) => d.visit_mut(f),
            Mlp::Moe(m) => m.visit_mut(f),
        }
    }

    pub fn moe(&self) -> Option<&Moe<T>> {
        match self {
            Mlp::Moe(m) => Some(m),
            Mlp::Dense(_) => None,
        }
    }
}

/// A SwiGLU feed-forward block (a dense MLP or the merged shared experts).
#[derive(Debug, Clone, PartialEq)]
pub struct Ffn<T> {
    pub gate: T,
    pub up: T,
    pub down: T,
}
traverse!(Ffn { leaf gate, leaf up, leaf down });

/// The routed experts of one layer, stacked.
#[derive(Debug, Clone, PartialEq)]
pub struct Experts<T> {
    /// `[E, 2I, H]`: expert `e`'s gate rows, then its up rows.
    pub gate_up: T,
    /// `[E, H, I]`.
    pub down: T,
    /// gpt-oss: `[E, 2I]`, each expert's gate biases then its up biases.
    pub gate_up_bias: Option<T>,
    /// gpt-oss: `[E, H]`.
    pub down_bias: Option<T>,
}
traverse!(Experts { leaf gate_up, leaf down, opt gate_up_bias, opt down_bias });

#[derive(Debug, Clone, PartialEq)]
pub struct Moe<T> {
    /// `[E, H]`.
    pub router: T,
    /// DeepSeek-V3's `e_score_correction_bias` `[E]` (selection only).
    pub router_bias: Option<T>,
    /// gpt-oss's router bias `[E]`, added to the logits.
    pub router_logit_bias: Option<T>,
    pub experts: Experts<T>,
    pub shared: Option<Ffn<T>>,
    /// Qwen2-MoE's `[1, H]` sigmoid gate on the shared expert.
    pub shared_gate: Option<T>,
}
traverse!(Moe { leaf router, opt router_bias, opt router_logit_bias, node experts, opt_node shared, opt shared_gate });

/// One multi-token-prediction block (DeepSeek-V3): the next token's embedding and the main
/// model's last hidden state are normalised (`enorm`, `hnorm`), concatenated and projected
/// (`eh_proj [H, 2H]`), run through a full decoder layer, normalised and fed to a head. On disk
/// it is `model.layers.{num_hidden_layers + i}.*`. transformers drops these tensors when it
/// loads a checkpoint; moegrow carries them through every operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Mtp<T> {
    pub enorm: T,
    pub hnorm: T,
    pub eh_proj: T,
    pub layer: Layer<T>,
    pub head_norm: T,
    /// DeepSeek-V3 stores its own copies of the embedding and the head in each block.
    pub embed: T,
    pub head: T,
}
traverse!(Mtp { leaf embed, leaf enorm, leaf hnorm, leaf eh_proj, node layer, leaf head_norm, leaf head });

impl<T> Weights<T> {
    /// Every leaf in canonical order.
    pub fn leaves(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.visit(&mut |t| out.push(t));
        out
    }
}
