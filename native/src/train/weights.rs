//! A model's tensors in f32 on the host, in the schema's canonical order, with the dtype each
//! one is written back in. The bridge between Hugging Face checkpoints (read and written by
//! `core`) and the burn model: loading goes source → host → device, saving device → host →
//! checkpoint, so a load/save round trip is exact for f32, bf16 and f16 alike.
//!
//! The host weights are themselves a [`TensorSource`], so the trainer writes its checkpoints
//! with the same `core` function as every other writer, in the expert layout it read.

use anyhow::Context;
use moegrow_core::checkpoint::OutputTensor;
use moegrow_core::dtype::encode_f32;
use moegrow_core::init::Initialiser;
use moegrow_core::schema::{layout, read_f32, specs};
use moegrow_core::{Checkpoint, DType, ExpertLayout, ModelConfig, Role, TensorSource};
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct HostTensor {
    pub role: Role,
    pub dtype: DType,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct HostWeights {
    pub config: ModelConfig,
    /// The expert layout to write back in (the one the model was read in).
    pub layout: ExpertLayout,
    /// Every schema leaf, in canonical order (stacked experts as one tensor per projection):
    /// parameter `i` of the burn model is tensor `i` ([`super::arch::Arch::slots`]).
    pub tensors: Vec<HostTensor>,
    by_role: HashMap<Role, usize>,
    /// The towers outside the language model (Llama-4's vision model), as stored: not
    /// trained, written back byte for byte.
    carried: Vec<(DType, Vec<u8>)>,
}

impl HostWeights {
    /// Read every tensor of `src` as f32.
    pub fn from_source<S: TensorSource + ?Sized>(
        src: &S,
        layout: ExpertLayout,
    ) -> anyhow::Result<HostWeights> {
        let config = src.config().clone();
        let tensors = specs(&config)
            .into_iter()
            .map(|s| {
                Ok(HostTensor {
                    role: s.role,
                    dtype: src.dtype_of(s.role)?,
                    values: read_f32(src, s.role)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let by_role = tensors.iter().enumerate().map(|(i, t)| (t.role, i)).collect();
        let carried = (0..config.carried.len())
            .map(|i| {
                let r = Role::Carried(i);
                Ok((src.dtype_of(r)?, src.read(r)?.into_owned()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(HostWeights {
            config,
            layout,
            tensors,
            by_role,
            carried,
        })
    }

    pub fn from_checkpoint(ckpt: &Checkpoint) -> anyhow::Result<HostWeights> {
        Self::from_source(ckpt, ckpt.layout)
    }

    /// Freshly initialised weights, identical to what `moegrow init` writes for the same
    /// config, seed and std (so `train --preset` equals `init` followed by `train --init`).
    pub fn initialised(config: &ModelConfig, seed: u64, std: f32) -> anyhow::Result<HostWeights> {
        let init = Initialiser::new(config, DType::F32, seed, std);
        Self::from_source(&init, ExpertLayout::PerExpert).context("initialising the model")
    }

    /// Tensors to write with `core`'s checkpoint writer, in this model's layout and dtypes.
    pub fn export(&self) -> Vec<OutputTensor<'_>> {
        layout::output_tensors(self, self.layout, layout::Storage::AsSource)
            .expect("host weights hold every tensor of their schema")
    }

    fn carried_tensor(&self, role: Role) -> Option<&(DType, Vec<u8>)> {
        match role {
            Role::Carried(i) => self.carried.get(i),
            _ => None,
        }
    }

    /// The leaf `role` is (or is a part of) and the element range it covers.
    fn locate(&self, role: Role) -> moegrow_core::Result<(&HostTensor, std::ops::Range<usize>)> {
        if let Some(&i) = self.by_role.get(&role) {
            let t = &self.tensors[i];
            return Ok((t, 0..t.values.len()));
        }
        if let Some((leaf, range)) = layout::part_location(&self.config, role) {
            if let Some(&i) = self.by_role.get(&leaf) {
                return Ok((&self.tensors[i], range));
            }
        }
        Err(moegrow_core::Error::Invalid(format!(
            "internal: the trainer holds no tensor {role:?}"
        )))
    }
}

impl TensorSource for HostWeights {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, role: Role) -> moegrow_core::Result<DType> {
        if let Some((d, _)) = self.carried_tensor(role) {
            return Ok(*d);
        }
        Ok(self.locate(role)?.0.dtype)
    }
    fn read(&self, role: Role) -> moegrow_core::Result<Cow<'_, [u8]>> {
        if let Some((_, b)) = self.carried_tensor(role) {
            return Ok(Cow::Borrowed(b));
        }
        let (t, range) = self.locate(role)?;
        Ok(Cow::Owned(encode_f32(t.dtype, &t.values[range])))
    }
}
