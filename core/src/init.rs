//! Freshly initialised checkpoints, so that every feature has a model to start from on a
//! fresh machine.
//!
//! Presets use the Qwen3-MoE layout — GQA, per-head q/k norm, SwiGLU experts, every layer MoE,
//! untied embeddings, softmax top-k with renormalisation — which is as close to the paper's
//! architecture as a family transformers loads gets. Weights are drawn from N(0, 0.02²) like
//! transformers' `initializer_range`, norms start at 1; each tensor has its own seeded stream,
//! so the output depends only on the preset and the seed.

use crate::checkpoint::OutputTensor;
use crate::config::ModelConfig;
use crate::dtype::{encode_f32, DType};
use crate::error::{Error, Result};
use crate::roles::Role;
use crate::schema::layout::{self, disk_tensors};
use crate::schema::{Kind, TensorSource};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::borrow::Cow;
use std::collections::HashMap;

/// Architecture sizes of a preset.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub expert_intermediate: usize,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tiny",
        vocab_size: 512,
        hidden_size: 64,
        num_layers: 4,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        num_experts: 8,
        top_k: 2,
        expert_intermediate: 64,
    },
    Preset {
        name: "small",
        vocab_size: 4096,
        hidden_size: 256,
        num_layers: 8,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 32,
        num_experts: 16,
        top_k: 2,
        expert_intermediate: 256,
    },
    Preset {
        name: "base100m",
        vocab_size: 16384,
        hidden_size: 512,
        num_layers: 8,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 64,
        num_experts: 16,
        top_k: 2,
        expert_intermediate: 384,
    },
    // The paper's 3B base architecture (20 layers, hidden 1024, 64 experts top-4, FFN 768).
    Preset {
        name: "paper3b",
        vocab_size: 151936,
        hidden_size: 1024,
        num_layers: 20,
        num_heads: 16,
        num_kv_heads: 4,
        head_dim: 128,
        num_experts: 64,
        top_k: 4,
        expert_intermediate: 768,
    },
];

pub fn preset(name: &str) -> Result<Preset> {
    PRESETS
        .iter()
        .copied()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown preset `{name}`; choose one of {}",
                PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

impl Preset {
    /// The Qwen3-MoE `config.json` for this preset, in transformers 5's spelling.
    pub fn config_json(&self, dtype: DType) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.expert_intermediate * self.top_k,
            "moe_intermediate_size": self.expert_intermediate,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "attention_bias": false,
            "attention_dropout": 0.0,
            "use_sliding_window": false,
            "tie_word_embeddings": false,
            "num_experts": self.num_experts,
            "num_experts_per_tok": self.top_k,
            "norm_topk_prob": true,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "output_router_logits": false,
            "router_aux_loss_coef": 0.001,
            "initializer_range": 0.02,
            "bos_token_id": null,
            "eos_token_id": null,
            "dtype": dtype.torch_name(),
        })
    }
}

/// A freshly initialised model, as a [`TensorSource`]. Norm weights are ones, biases zeros;
/// every other tensor is N(0, std²) from a ChaCha8 stream selected by the tensor's index in the
/// per-expert layout, so tensors can be produced in any order (and in parallel) with identical
/// bytes, and the trainer's `--preset` start equals `moegrow init`'s output.
pub struct Initialiser {
    config: ModelConfig,
    dtype: DType,
    seed: u64,
    std: f32,
    /// Per stored tensor (per-expert layout): its stream, kind and size.
    tensors: HashMap<Role, (u64, Kind, usize)>,
}

impl Initialiser {
    pub fn new(config: &ModelConfig, dtype: DType, seed: u64, std: f32) -> Initialiser {
        let tensors = disk_tensors(config, config.family.native_layout())
            .into_iter()
            .enumerate()
            .map(|(i, d)| (d.role, (i as u64, d.kind, d.shape.iter().product())))
            .collect();
        Initialiser {
            config: config.clone(),
            dtype,
            seed,
            std,
            tensors,
        }
    }

    /// The tensors `moegrow init` writes (per-expert layout).
    pub fn tensors(&self) -> Vec<OutputTensor<'_>> {
        layout::output_tensors(self, self.config.family.native_layout(), layout::Storage::AsSource)
            .expect("an initialiser knows every tensor of its schema")
    }

    fn values(&self, role: Role) -> Result<Vec<f32>> {
        let &(stream, kind, numel) = self.tensors.get(&role).ok_or_else(|| {
            Error::Invalid(format!("internal: {role:?} is not a tensor of this model"))
        })?;
        Ok(match kind {
            Kind::Norm => vec![1.0; numel],
            Kind::Bias | Kind::Buffer => vec![0.0; numel],
            Kind::Carried => {
                return Err(Error::Invalid(format!(
                    "{} lies outside the language model; a fresh initialisation has no values for it",
                    layout::display_name(&self.config, role)
                )))
            }
            Kind::Matrix | Kind::Experts => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(stream);
                let normal = Normal::new(0.0f32, self.std).map_err(|_| {
                    Error::Invalid(format!(
                        "--init-std must be a non-negative number, not {}",
                        self.std
                    ))
                })?;
                (0..numel).map(|_| normal.sample(&mut rng)).collect()
            }
        })
    }
}

impl TensorSource for Initialiser {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, _: Role) -> Result<DType> {
        Ok(self.dtype)
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        // Stacked experts drawn whole when the layout stores them so (gpt-oss).
        if self.tensors.contains_key(&role) {
            return Ok(Cow::Owned(encode_f32(self.dtype, &self.values(role)?)));
        }
        layout::assemble(&self.config, role, |r| {
            Ok(Cow::Owned(encode_f32(self.dtype, &self.values(r)?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_gives_a_valid_config() {
        for p in PRESETS {
            let cfg = ModelConfig::from_json(p.config_json(DType::F32)).unwrap();
            assert_eq!(cfg.moe.num_experts, p.num_experts, "{}", p.name);
            assert!(cfg.moe.router.normalize);
        }
    }

    #[test]
    fn init_is_deterministic_and_seed_dependent() {
        let cfg = ModelConfig::from_json(preset("tiny").unwrap().config_json(DType::F32)).unwrap();
        let (ia, ib, ic) = (
            Initialiser::new(&cfg, DType::F32, 7, 0.02),
            Initialiser::new(&cfg, DType::F32, 7, 0.02),
            Initialiser::new(&cfg, DType::F32, 8, 0.02),
        );
        let (a, b, c) = (ia.tensors(), ib.tensors(), ic.tensors());
        let last = a.len() - 1;
        assert_eq!((a[last].data)().unwrap(), (b[last].data)().unwrap());
        assert_ne!((a[last].data)().unwrap(), (c[last].data)().unwrap());
        assert_ne!(
            (a[0].data)().unwrap(),
            (a[last].data)().unwrap(),
            "streams differ per tensor"
        );
        let v = crate::dtype::decode_f32(DType::F32, &(a[0].data)().unwrap());
        let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.001, "std {std}");
    }
}
