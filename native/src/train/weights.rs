//! A model's tensors in f32 on the host, keyed by [`Role`], with the dtype each one is written
//! back in. The bridge between Hugging Face checkpoints (read and written by `core`) and the
//! burn model: loading goes checkpoint → host → device, saving device → host → checkpoint, so a
//! load/save round trip is exact for f32, bf16 and f16 alike.

use anyhow::Context;
use moegrow_core::checkpoint::OutputTensor;
use moegrow_core::dtype::encode_f32;
use moegrow_core::init::init_tensors;
use moegrow_core::roles::{expected_roles, role_shape};
use moegrow_core::{Checkpoint, DType, ExpertLayout, LayerRole, ModelConfig, Proj, Role};
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct HostWeights {
    pub config: ModelConfig,
    /// The expert layout to write back in (the one the model was read in).
    pub layout: ExpertLayout,
    /// Per-expert layout roles (experts as `Expert(e, proj)`), whatever the file layout.
    pub tensors: BTreeMap<Role, HostTensor>,
}

impl HostWeights {
    pub fn from_checkpoint(ckpt: &Checkpoint) -> anyhow::Result<HostWeights> {
        let cfg = &ckpt.config;
        let mut tensors = BTreeMap::new();
        for role in expected_roles(cfg, ExpertLayout::PerExpert) {
            let (dtype, values) = match role {
                Role::Layer(l, LayerRole::Expert(e, p)) => {
                    (ckpt.expert_bytes(l, e, p)?.0, ckpt.expert_f32(l, e, p)?)
                }
                r => (ckpt.entry(r)?.dtype, ckpt.f32(r)?),
            };
            let shape = role_shape(cfg, role);
            tensors.insert(
                role,
                HostTensor {
                    shape,
                    dtype,
                    values,
                },
            );
        }
        Ok(HostWeights {
            config: cfg.clone(),
            layout: ckpt.layout,
            tensors,
        })
    }

    /// Freshly initialised weights, identical to what `moegrow init` writes for the same
    /// config, seed and std (so `train --preset` equals `init` followed by `train --init`).
    pub fn initialised(config: &ModelConfig, seed: u64, std: f32) -> anyhow::Result<HostWeights> {
        let roles = expected_roles(config, ExpertLayout::PerExpert);
        let produced = init_tensors(config, DType::F32, seed, std);
        let mut tensors = BTreeMap::new();
        for (role, t) in roles.into_iter().zip(produced) {
            let bytes = (t.data)().with_context(|| format!("initialising {}", t.name))?;
            tensors.insert(
                role,
                HostTensor {
                    shape: t.shape.clone(),
                    dtype: DType::F32,
                    values: moegrow_core::dtype::decode_f32(DType::F32, &bytes),
                },
            );
        }
        Ok(HostWeights {
            config: config.clone(),
            layout: ExpertLayout::PerExpert,
            tensors,
        })
    }

    pub fn get(&self, role: Role) -> anyhow::Result<&HostTensor> {
        self.tensors
            .get(&role)
            .with_context(|| format!("internal: no host tensor for {role:?}"))
    }

    /// Tensors to write with `core`'s checkpoint writer, in this model's layout and dtypes.
    pub fn export(&self) -> Vec<OutputTensor<'_>> {
        let cfg = &self.config;
        let family = cfg.family;
        let experts = cfg.moe.num_experts;
        expected_roles(cfg, self.layout)
            .into_iter()
            .map(|role| {
                let name = family.tensor_name(role, self.layout);
                let shape = role_shape(cfg, role);
                let parts: Vec<Role> = match role {
                    Role::Layer(l, LayerRole::ExpertsGateUp) => (0..experts)
                        .flat_map(|e| {
                            [
                                Role::Layer(l, LayerRole::Expert(e, Proj::Gate)),
                                Role::Layer(l, LayerRole::Expert(e, Proj::Up)),
                            ]
                        })
                        .collect(),
                    Role::Layer(l, LayerRole::ExpertsDown) => (0..experts)
                        .map(|e| Role::Layer(l, LayerRole::Expert(e, Proj::Down)))
                        .collect(),
                    r => vec![r],
                };
                let dtype = self.tensors.get(&parts[0]).map_or(DType::F32, |t| t.dtype);
                OutputTensor {
                    name,
                    dtype,
                    shape,
                    data: Box::new(move || {
                        let mut bytes = Vec::new();
                        for p in &parts {
                            let t = self.tensors.get(p).ok_or_else(|| {
                                moegrow_core::Error::Invalid(format!("no tensor for {p:?}"))
                            })?;
                            bytes.extend_from_slice(&encode_f32(dtype, &t.values));
                        }
                        Ok(Cow::Owned(bytes))
                    }),
                }
            })
            .collect()
    }
}
