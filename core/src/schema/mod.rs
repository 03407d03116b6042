//! The weight schema: the one place that decides which tensors a model has.
//!
//! [`schema`] turns a config into a [`Weights`] tree of [`Spec`]s — every tensor's role, shape
//! and kind. Everything else is derived from that tree: the on-disk names and the two expert
//! layouts ([`layout`]), what the checkpoint loader expects and refuses, the CPU reference, GPU
//! and trainer models (each maps the tree to its own leaves), parameter counts, initialisation
//! and the dtype rules of conversions. Adding a tensor to a family means adding it here, and to
//! the math that uses it.

pub mod layout;
mod source;
mod tree;

pub use source::{decode_or_dequantize, read_f32, TensorSource};
pub use tree::{Attention, DeltaNet, Experts, Ffn, Gqa, Indexer, Layer, Mla, Mlp, Moe, Mtp, Weights};

use crate::config::{self, ModelConfig, QkNorm};
use crate::roles::{AttnRole, LayerRole, LayerSlot, MtpRole, Role};

/// What a tensor is for, beyond its name: initialisation, parameter counting and the trainer
/// treat the kinds differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A weight matrix (embeddings and heads included).
    Matrix,
    /// A normalisation weight (initialised to ones).
    Norm,
    /// A bias (initialised to zeros).
    Bias,
    /// Routed experts, stacked (`[E, …]`).
    Experts,
    /// State that is not a trainable parameter: DeepSeek-V3's routing correction bias, which
    /// transformers registers as a buffer and the balancing rule updates.
    Buffer,
    /// A tensor outside the language model (a vision tower's), carried verbatim: not in the
    /// schema's tree, only on disk ([`layout::disk_tensors`]).
    Carried,
}

/// One tensor of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub role: Role,
    pub shape: Vec<usize>,
    pub kind: Kind,
    /// A linear weight of a decoder layer: what a block-quantised (FP8) checkpoint may store
    /// as float8 with block scales. Embeddings, heads, norms, biases and routers never are.
    pub quantizable: bool,
}

impl Spec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor a model with this config has, as a tree.
pub fn schema(cfg: &ModelConfig) -> Weights<Spec> {
    let h = cfg.hidden_size;
    let v = cfg.vocab_size;
    let spec = |role, shape: Vec<usize>, kind| Spec {
        role,
        shape,
        kind,
        quantizable: matches!(role, Role::Mtp(_, MtpRole::EhProj)),
    };
    Weights {
        embed: spec(Role::Embed, vec![v, h], Kind::Matrix),
        layers: (0..cfg.num_layers)
            .map(|l| layer(cfg, LayerSlot::Decoder(l)))
            .collect(),
        final_norm: spec(Role::FinalNorm, vec![h], Kind::Norm),
        lm_head: (!cfg.tie_word_embeddings).then(|| spec(Role::LmHead, vec![v, h], Kind::Matrix)),
        mtp: (0..cfg.mtp_layers)
            .map(|i| {
                let m = |r, shape, kind| spec(Role::Mtp(i, r), shape, kind);
                Mtp {
                    embed: m(MtpRole::Embed, vec![v, h], Kind::Matrix),
                    enorm: m(MtpRole::ENorm, vec![h], Kind::Norm),
                    hnorm: m(MtpRole::HNorm, vec![h], Kind::Norm),
                    eh_proj: m(MtpRole::EhProj, vec![h, 2 * h], Kind::Matrix),
                    layer: layer(cfg, LayerSlot::Mtp(i)),
                    head_norm: m(MtpRole::HeadNorm, vec![h], Kind::Norm),
                    head: m(MtpRole::Head, vec![v, h], Kind::Matrix),
                }
            })
            .collect(),
    }
}

/// The schema of one layer slot (a decoder layer or the layer inside an MTP block).
pub fn layer(cfg: &ModelConfig, slot: LayerSlot) -> Layer<Spec> {
    let h = cfg.hidden_size;
    let spec = |r: LayerRole, shape: Vec<usize>, kind| Spec {
        role: slot.role(r),
        shape,
        kind,
        // gpt-oss quantises its routed experts only (MXFP4).
        quantizable: matches!(kind, Kind::Matrix | Kind::Experts)
            && !matches!(r, LayerRole::Router | LayerRole::SharedExpertGate)
            && (kind == Kind::Experts || cfg.family != crate::families::Family::GptOss),
    };
    let ffn = |role: fn(crate::Proj) -> LayerRole, inter: usize| Ffn {
        gate: spec(role(crate::Proj::Gate), vec![inter, h], Kind::Matrix),
        up: spec(role(crate::Proj::Up), vec![inter, h], Kind::Matrix),
        down: spec(role(crate::Proj::Down), vec![h, inter], Kind::Matrix),
    };
    let mlp = if cfg.slot_is_moe(slot) {
        let m = &cfg.moe;
        let (e, i) = (m.num_experts, m.intermediate);
        Mlp::Moe(Moe {
            router: spec(LayerRole::Router, vec![e, h], Kind::Matrix),
            router_bias: m
                .router
                .correction_bias
                // ERNIE-4.5 stores its correction bias as one row per expert group: [1, E].
                .then(|| {
                    let shape = if cfg.family == crate::families::Family::Ernie45Moe { vec![1, e] } else { vec![e] };
                    spec(LayerRole::RouterBias, shape, Kind::Buffer)
                }),
            router_logit_bias: cfg
                .router_logit_bias
                .then(|| spec(LayerRole::RouterLogitBias, vec![e], Kind::Bias)),
            experts: Experts {
                gate_up: spec(LayerRole::ExpertsGateUp, vec![e, 2 * i, h], Kind::Experts),
                down: spec(LayerRole::ExpertsDown, vec![e, h, i], Kind::Experts),
                gate_up_bias: cfg
                    .expert_bias
                    .then(|| spec(LayerRole::ExpertsGateUpBias, vec![e, 2 * i], Kind::Bias)),
                down_bias: cfg
                    .expert_bias
                    .then(|| spec(LayerRole::ExpertsDownBias, vec![e, h], Kind::Bias)),
            },
            shared: m
                .shared
                .as_ref()
                .map(|s| ffn(LayerRole::SharedExpert, s.intermediate)),
            shared_gate: m
                .shared
                .as_ref()
                .filter(|s| s.gated)
                .map(|_| spec(LayerRole::SharedExpertGate, vec![1, h], Kind::Matrix)),
        })
    } else {
        Mlp::Dense(ffn(LayerRole::DenseMlp, cfg.dense_intermediate))
    };
    let attn = |a: AttnRole, shape: Vec<usize>, kind| spec(LayerRole::Attn(a), shape, kind);
    let linear = match (slot, &cfg.linear_attention) {
        (LayerSlot::Decoder(l), Some(la)) if cfg.linear_layers[l] => Some(*la),
        _ => None,
    };
    let attention = match (linear, &cfg.attention) {
        (Some(la), _) => {
            use AttnRole::*;
            let conv = Spec {
                quantizable: false,
                ..attn(LinConv, vec![la.conv_dim(), 1, la.conv_kernel], Kind::Matrix)
            };
            let (grouped, split) = (!la.split_projections, la.split_projections);
            Attention::Linear(DeltaNet {
                in_qkvz: grouped
                    .then(|| attn(LinQkvz, vec![2 * la.key_dim() + 2 * la.value_dim(), h], Kind::Matrix)),
                in_ba: grouped.then(|| attn(LinBa, vec![2 * la.value_heads, h], Kind::Matrix)),
                in_qkv: split.then(|| attn(LinQkv, vec![la.conv_dim(), h], Kind::Matrix)),
                in_z: split.then(|| attn(LinZ, vec![la.value_dim(), h], Kind::Matrix)),
                in_b: split.then(|| attn(LinB, vec![la.value_heads, h], Kind::Matrix)),
                in_a: split.then(|| attn(LinA, vec![la.value_heads, h], Kind::Matrix)),
                conv,
                dt_bias: attn(LinDtBias, vec![la.value_heads], Kind::Bias),
                a_log: attn(LinALog, vec![la.value_heads], Kind::Bias),
                norm: attn(LinNorm, vec![la.value_head_dim], Kind::Norm),
                out: attn(LinOut, vec![h, la.value_dim()], Kind::Matrix),
            })
        }
        (None, config::Attention::Standard {
            qkv_bias,
            o_bias,
            qk_norm,
            ..
        }) => {
            use AttnRole::*;
            let q = cfg.num_heads * cfg.head_dim;
            let kv = cfg.num_kv_heads * cfg.head_dim;
            // Qwen3-Next's q_proj also yields each head's output gate.
            let q_out = if cfg.attn_output_gate { 2 * q } else { q };
            let norm = |full: usize| match qk_norm {
                QkNorm::FullWidth => full,
                _ => cfg.head_dim,
            };
            // Llama-4's L2 norm has no weight.
            let has_norm = matches!(qk_norm, QkNorm::PerHead | QkNorm::FullWidth);
            Attention::Standard(Gqa {
                q: attn(Q, vec![q_out, h], Kind::Matrix),
                k: attn(K, vec![kv, h], Kind::Matrix),
                v: attn(V, vec![kv, h], Kind::Matrix),
                o: attn(O, vec![h, q], Kind::Matrix),
                q_bias: qkv_bias.then(|| attn(QBias, vec![q], Kind::Bias)),
                k_bias: qkv_bias.then(|| attn(KBias, vec![kv], Kind::Bias)),
                v_bias: qkv_bias.then(|| attn(VBias, vec![kv], Kind::Bias)),
                o_bias: o_bias.then(|| attn(OBias, vec![h], Kind::Bias)),
                q_norm: has_norm.then(|| attn(QNorm, vec![norm(q)], Kind::Norm)),
                k_norm: has_norm.then(|| attn(KNorm, vec![norm(kv)], Kind::Norm)),
                sinks: cfg
                    .attention_sinks
                    .then(|| attn(Sinks, vec![cfg.num_heads], Kind::Bias)),
            })
        }
        (None, config::Attention::Mla(m)) => {
            use AttnRole::*;
            let nh = cfg.num_heads;
            let q_out = nh * m.qk_head_dim();
            let kv_a = m.kv_lora_rank + m.qk_rope_head_dim;
            let lora = m.q_lora_rank;
            Attention::Latent(Mla {
                q: lora
                    .is_none()
                    .then(|| attn(Q, vec![q_out, h], Kind::Matrix)),
                q_a: lora.map(|r| attn(QA, vec![r, h], Kind::Matrix)),
                q_a_norm: lora.map(|r| attn(QANorm, vec![r], Kind::Norm)),
                q_b: lora.map(|r| attn(QB, vec![q_out, r], Kind::Matrix)),
                q_a_bias: lora
                    .filter(|_| m.bias)
                    .map(|r| attn(QABias, vec![r], Kind::Bias)),
                kv_a: attn(KvA, vec![kv_a, h], Kind::Matrix),
                kv_a_norm: attn(KvANorm, vec![m.kv_lora_rank], Kind::Norm),
                kv_b: attn(
                    KvB,
                    vec![nh * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank],
                    Kind::Matrix,
                ),
                o: attn(O, vec![h, nh * m.v_head_dim], Kind::Matrix),
                kv_a_bias: m.bias.then(|| attn(KvABias, vec![kv_a], Kind::Bias)),
                o_bias: m.bias.then(|| attn(OBias, vec![h], Kind::Bias)),
                indexer: m.indexer.as_ref().map(|ix| {
                    let r = lora.unwrap_or(0);
                    let d = ix.head_dim;
                    // The score weights stay in float32 in transformers
                    // (`_keep_in_fp32_modules`), so never block-quantised.
                    let mut weights = attn(IndexerWeights, vec![ix.heads, h], Kind::Matrix);
                    weights.quantizable = false;
                    tree::Indexer {
                        wq_b: attn(IndexerQB, vec![ix.heads * d, r], Kind::Matrix),
                        wk: attn(IndexerK, vec![d, h], Kind::Matrix),
                        k_norm: attn(IndexerKNorm, vec![d], Kind::Norm),
                        k_norm_bias: attn(IndexerKNormBias, vec![d], Kind::Bias),
                        weights_proj: weights,
                    }
                }),
            })
        }
    };
    Layer {
        input_norm: spec(LayerRole::InputNorm, vec![h], Kind::Norm),
        attention,
        post_attn_norm: spec(LayerRole::PostAttnNorm, vec![h], Kind::Norm),
        mlp,
    }
}

/// The schema's leaves, in canonical order.
pub fn specs(cfg: &ModelConfig) -> Vec<Spec> {
    let mut out = Vec::new();
    schema(cfg).visit(&mut |s| out.push(s.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deepseek_v3(mtp: usize) -> ModelConfig {
        let mut cfg = ModelConfig::from_json_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/deepseek_v3_experts_f32/config.json"
            ))
            .unwrap(),
        )
        .unwrap();
        cfg.mtp_layers = mtp;
        cfg
    }

    #[test]
    fn leaves_come_in_canonical_order_and_map_one_to_one() {
        let cfg = deepseek_v3(1);
        let tree = schema(&cfg);
        let roles: Vec<Role> = tree.leaves().iter().map(|s| s.role).collect();
        assert_eq!(roles[0], Role::Embed);
        // layer 0 is dense (first_k_dense_replace 1), layer 1 MoE with the correction bias
        assert!(roles.contains(&Role::Layer(0, LayerRole::DenseMlp(crate::Proj::Down))));
        assert!(roles.contains(&Role::Layer(1, LayerRole::RouterBias)));
        assert!(roles.contains(&Role::Mtp(0, MtpRole::Layer(LayerRole::ExpertsGateUp))));
        let lens = tree.try_map(&mut |s| Ok::<_, ()>(s.numel())).unwrap();
        assert_eq!(lens.leaves().len(), roles.len());
        let mut seen = std::collections::HashSet::new();
        assert!(roles.iter().all(|r| seen.insert(*r)), "every role once");
        // the MTP block's layer is a MoE layer with the model's expert count
        let Mlp::Moe(m) = &tree.mtp[0].layer.mlp else {
            panic!("MTP layer is MoE")
        };
        assert_eq!(m.experts.gate_up.shape, vec![8, 32, 32]);
        assert_eq!(tree.mtp[0].eh_proj.shape, vec![32, 64]);
        assert!(schema(&deepseek_v3(0)).mtp.is_empty());
    }

    #[test]
    fn visit_mut_reaches_every_leaf() {
        let cfg = deepseek_v3(1);
        let mut tree = schema(&cfg).try_map(&mut |_| Ok::<_, ()>(0usize)).unwrap();
        let mut n = 0;
        tree.visit_mut(&mut |x| {
            n += 1;
            *x = n
        });
        let got: Vec<usize> = tree.leaves().into_iter().copied().collect();
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
    }
}
