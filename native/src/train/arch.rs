//! What the burn model needs to know about an architecture, checked once up front so that an
//! unsupported checkpoint fails before any weights are read.

use anyhow::bail;
use moegrow_core::config::{Attention, MlpKind, QkNorm, RouterConfig};
use moegrow_core::schema::{schema, Kind, Weights};
use moegrow_core::ModelConfig;

/// Where a parameter lives: its index in the model's parameter list and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub index: usize,
    pub shape: Vec<usize>,
}

/// The architecture of a trainable model: the families with standard (GQA) attention —
/// Qwen3-MoE, Qwen2-MoE, Mixtral, OLMoE, MiniMax-M2, GLM-4.5, ERNIE-4.5 and Llama-4 (interleaved RoPE,
/// NoPE layers with their temperature, chunked attention, the weightless q/k norm,
/// input-scaled experts) — and every routing variant `core` parses.
#[derive(Debug, Clone)]
pub struct Arch {
    pub config: ModelConfig,
    pub qk_norm: QkNorm,
    pub clip_qkv: Option<f32>,
    /// The schema's tree with each tensor's parameter slot, in canonical order: the one record
    /// of which parameter holds which tensor, for loading, the forward pass and saving.
    pub slots: Weights<Slot>,
}

impl Arch {
    pub fn new(config: &ModelConfig) -> anyhow::Result<Arch> {
        // Attention biases (Qwen2-MoE) are optional tensors the model picks up when present.
        let (qk_norm, clip_qkv) = match &config.attention {
            Attention::Standard {
                qk_norm, clip_qkv, ..
            } => (*qk_norm, *clip_qkv),
            Attention::Mla(_) => bail!(
                "training supports {} checkpoints with standard attention only; multi-head latent attention (DeepSeek) is not implemented in the trainer",
                config.family.name()
            ),
        };
        config.check_computable()?;
        if config.attention_sinks || config.expert_bias || config.router_logit_bias {
            bail!(
                "training does not support {} checkpoints: the trainer's blocks have no attention sinks, router bias, expert biases or clamped SwiGLU (forward, grow and convert do)",
                config.family.name()
            );
        }
        if config.linear_attention.is_some() {
            bail!(
                "training does not support {} checkpoints: the trainer has no Gated DeltaNet layers, output-gated attention or zero-centred norms (forward on the CPU, grow and convert do)",
                config.family.name()
            );
        }
        if config.head_dim % 2 != 0 {
            bail!(
                "head_dim {} must be even for rotary embeddings",
                config.head_dim
            );
        }
        if config.num_heads % config.num_kv_heads != 0 {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                config.num_heads,
                config.num_kv_heads
            );
        }
        let specs = schema(config);
        let mut next = 0;
        let slots = specs.try_map(&mut |s| {
            next += 1;
            Ok::<_, anyhow::Error>(Slot {
                index: next - 1,
                shape: s.shape.clone(),
            })
        })?;
        Ok(Arch {
            config: config.clone(),
            qk_norm,
            clip_qkv,
            slots,
        })
    }

    /// Each MoE layer's routing correction bias slot (GLM-4.5's `e_score_correction_bias`), in
    /// MoE-layer order; empty when the family has none.
    pub fn correction_bias_slots(&self) -> Vec<Slot> {
        self.slots
            .layers
            .iter()
            .filter_map(|l| l.mlp.moe().and_then(|m| m.router_bias.clone()))
            .collect()
    }

    /// Whether the parameter at `index` is held fixed: a buffer (the correction bias, which
    /// the balancing rule moves, not the optimizer) or a multi-token-prediction block, which
    /// the next-token loss does not reach (transformers does not train them either); both are
    /// carried through to the output unchanged.
    pub fn is_frozen(&self, index: usize) -> bool {
        schema(&self.config).leaves().get(index).is_some_and(|s| {
            s.kind == Kind::Buffer || matches!(s.role, moegrow_core::Role::Mtp(..))
        })
    }

    pub fn router(&self) -> &RouterConfig {
        &self.config.moe.router
    }

    pub fn is_moe(&self, layer: usize) -> bool {
        self.config.mlp[layer] == MlpKind::Moe
    }

    /// The number of MoE layers (the aux loss averages over them).
    pub fn moe_layers(&self) -> usize {
        (0..self.config.num_layers)
            .filter(|&l| self.is_moe(l))
            .count()
    }
}
