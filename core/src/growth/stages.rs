//! Growth as a chain of lazy stages. Each stage answers "what are the bytes of tensor R?" in
//! terms of the stage before it, so a plan composes depth and width in either order and every
//! output tensor is computed once, on demand, straight from the source's memory map.
//!
//! Every stage is a [`TensorSource`]: it answers for schema leaves and for single expert
//! matrices, whatever the source's or the output's layout. Growth itself works expert by
//! expert; a stacked leaf is assembled from its experts.

use super::depth::LayerMap;
use super::noise::{add_scaled_normals, normals, stream_id};
use super::width::{NewExperts, NoiseOn, WidthStep};
use crate::config::ModelConfig;
use crate::dtype::{decode_f32, encode_f32, DType};
use crate::error::Result;
use crate::roles::{AttnRole, LayerRole, LayerSlot, Proj, Role};
use crate::schema::{layout, TensorSource};
use std::borrow::Cow;

/// Population standard deviation.
pub fn std_dev(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    // Two passes (mean, then squared deviations) for accuracy; f32 partial sums over blocks of
    // 1024 values keep the loops vectorisable, f64 totals keep large tensors exact enough.
    let n = v.len() as f64;
    let block_sum = |f: &dyn Fn(f32) -> f32| -> f64 {
        v.chunks(1024)
            .map(|c| c.iter().map(|x| f(*x)).sum::<f32>() as f64)
            .sum()
    };
    let mean = (block_sum(&|x| x) / n) as f32;
    (block_sum(&|x| (x - mean) * (x - mean)) / n).sqrt() as f32
}

/// Tensors that write into the residual stream: zeroing them makes a layer an identity.
fn writes_residual(r: LayerRole) -> bool {
    matches!(
        r,
        LayerRole::Attn(AttnRole::O | AttnRole::OBias)
            | LayerRole::Expert(_, Proj::Down)
            | LayerRole::SharedExpert(Proj::Down)
            | LayerRole::DenseMlp(Proj::Down)
    )
}

pub struct DepthStage<'a> {
    pub prev: Box<dyn TensorSource + 'a>,
    pub map: LayerMap,
    pub zero_init_copies: bool,
    pub config: ModelConfig,
}

impl DepthStage<'_> {
    /// The source tensor a tensor of the deeper model copies. Multi-token-prediction blocks
    /// stay after the last layer: their roles do not change, only their on-disk numbering.
    fn source(&self, role: Role) -> Role {
        match role {
            Role::Layer(i, r) => Role::Layer(self.map.0[i].source, r),
            r => r,
        }
    }
}

impl TensorSource for DepthStage<'_> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, role: Role) -> Result<DType> {
        self.prev.dtype_of(self.source(role))
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        let bytes = self.prev.read(self.source(role))?;
        if let Role::Layer(i, r) = role {
            if self.zero_init_copies && self.map.0[i].repeat && writes_residual(r) {
                return Ok(Cow::Owned(vec![0u8; bytes.len()]));
            }
        }
        Ok(bytes)
    }
}

pub struct WidthStage<'a> {
    pub prev: Box<dyn TensorSource + 'a>,
    pub step: WidthStep,
    /// Source experts per layer before widening.
    pub experts_before: usize,
    pub seed: u64,
    /// Position of this stage in the plan (keeps the noise of two width steps independent).
    pub index: u64,
    pub down_scale: f32,
    pub config: ModelConfig,
}

const TAG_EXPERT: u64 = 1;
const TAG_ROUTER: u64 = 2;
const TAG_BIAS: u64 = 3;
const TAG_RANDOM: u64 = 4;

impl WidthStage<'_> {
    /// Signed noise multiplier for copy `c`: `None` when it gets no noise.
    fn noise_sign(&self, copy: usize) -> Option<f32> {
        if self.step.noise == 0.0 {
            return None;
        }
        match (self.step.noise_on, copy) {
            (NoiseOn::Copies, 0) => None,
            (NoiseOn::Copies, _) => Some(1.0),
            (NoiseOn::Both, 0) => Some(1.0),
            (NoiseOn::Both, _) => Some(-1.0),
        }
    }

    fn expert(&self, slot: LayerSlot, j: usize, p: Proj) -> Result<Cow<'_, [u8]>> {
        let (src, copy) = self.step.source(j, self.experts_before);
        let role = slot.role(LayerRole::Expert(src, p));
        let (dtype, bytes) = (self.prev.dtype_of(role)?, self.prev.read(role)?);
        let layer = stream_layer(slot);
        let scale = if p == Proj::Down {
            self.down_scale
        } else {
            1.0
        };
        let random = self.step.new_experts == NewExperts::Random && copy > 0;
        let sign = self.noise_sign(copy);
        if !random && sign.is_none() && scale == 1.0 {
            return Ok(bytes);
        }
        let mut v = decode_f32(dtype, &bytes);
        let sigma = std_dev(&v);
        if random {
            let z = normals(
                self.seed,
                stream_id(&[self.index, TAG_RANDOM, layer, j as u64, p as u64]),
                v.len(),
            );
            v.iter_mut().zip(z).for_each(|(x, z)| *x = sigma * z);
        } else if let Some(sign) = sign {
            // The pair (original, copy) shares one ε: the noise stream is keyed by the source.
            let key = if self.step.noise_on == NoiseOn::Both {
                src
            } else {
                j
            };
            let stream = stream_id(&[self.index, TAG_EXPERT, layer, key as u64, p as u64]);
            add_scaled_normals(self.seed, stream, sign * self.step.noise * sigma, &mut v);
        }
        if scale != 1.0 {
            v.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(Cow::Owned(encode_f32(dtype, &v)))
    }

    /// Router rows (`row_len` = hidden size) or the bias (`row_len` = 1), copied with the experts.
    fn rows(
        &self,
        slot: LayerSlot,
        role: LayerRole,
        row_len: usize,
        tag: u64,
    ) -> Result<Cow<'_, [u8]>> {
        let role = slot.role(role);
        let (dtype, bytes) = (self.prev.dtype_of(role)?, self.prev.read(role)?);
        let layer = stream_layer(slot);
        let old = decode_f32(dtype, &bytes);
        let sigma = std_dev(&old);
        let e = self.experts_before;
        let mut out = Vec::with_capacity(old.len() * self.step.factor);
        for j in 0..e * self.step.factor {
            let (src, copy) = self.step.source(j, e);
            let mut row = old[src * row_len..(src + 1) * row_len].to_vec();
            let random =
                self.step.new_experts == NewExperts::Random && copy > 0 && tag == TAG_ROUTER;
            if random {
                let z = normals(
                    self.seed,
                    stream_id(&[self.index, TAG_RANDOM, layer, j as u64, tag]),
                    row_len,
                );
                row.iter_mut().zip(z).for_each(|(x, z)| *x = sigma * z);
            } else if let (true, Some(sign)) = (self.step.router_noise, self.noise_sign(copy)) {
                let key = if self.step.noise_on == NoiseOn::Both {
                    src
                } else {
                    j
                };
                let z = normals(
                    self.seed,
                    stream_id(&[self.index, tag, layer, key as u64]),
                    row_len,
                );
                let s = sign * self.step.noise * sigma;
                row.iter_mut().zip(z).for_each(|(x, z)| *x += s * z);
            }
            out.extend(row);
        }
        Ok(Cow::Owned(encode_f32(dtype, &out)))
    }

    /// The source role a tensor of the wider model is made from (for its dtype).
    fn source(&self, role: Role) -> Role {
        match role.layer_part() {
            Some((slot, LayerRole::Expert(j, p))) => {
                slot.role(LayerRole::Expert(self.step.source(j, self.experts_before).0, p))
            }
            _ => role,
        }
    }
}

/// The layer number growth's noise streams are keyed by: a decoder layer's index, and for the
/// layer of multi-token-prediction block `i` a number no decoder layer has.
fn stream_layer(slot: LayerSlot) -> u64 {
    match slot {
        LayerSlot::Decoder(l) => l as u64,
        LayerSlot::Mtp(i) => (1 << 32) + i as u64,
    }
}

impl TensorSource for WidthStage<'_> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, role: Role) -> Result<DType> {
        self.prev.dtype_of(self.source(role))
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        let Some((slot, lr)) = role
            .layer_part()
            .filter(|(slot, _)| self.config.slot_is_moe(*slot))
        else {
            return self.prev.read(role);
        };
        match lr {
            LayerRole::Expert(j, p) => self.expert(slot, j, p),
            LayerRole::ExpertsGateUp | LayerRole::ExpertsDown => {
                layout::assemble(&self.config, role, |part| self.read(part))
            }
            LayerRole::Router => self.rows(slot, lr, self.config.hidden_size, TAG_ROUTER),
            LayerRole::RouterBias => self.rows(slot, lr, 1, TAG_BIAS),
            _ => self.prev.read(role),
        }
    }
}
