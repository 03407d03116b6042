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
use crate::dtype::{decode_f32, try_encode_f32, DType};
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
        LayerRole::Attn(AttnRole::O | AttnRole::OBias | AttnRole::LinOut)
            | LayerRole::Expert(_, Proj::Down)
            | LayerRole::ExpertsDown
            | LayerRole::ExpertsDownBias
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
    fn quant_of(&self, role: Role) -> Result<Option<crate::quant::BlockQuant>> {
        self.prev.quant_of(self.source(role))
    }
    fn release(&self, role: Role) {
        self.prev.release(self.source(role))
    }
    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        // A zeroed copy keeps its scales: zero codes (float8 and fp4 zero bytes, int4's
        // code 8) dequantise to zero whatever they are.
        self.prev.read_scales(self.source(role))
    }
    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        if let Role::Layer(i, r) = role {
            if self.zero_init_copies && self.map.0[i].repeat && writes_residual(r) {
                return Ok(vec![0.0; crate::schema::layout::shape_of(&self.config, role)?.iter().product()]);
            }
        }
        self.prev.read_f32(self.source(role))
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        let bytes = self.prev.read(self.source(role))?;
        if let Role::Layer(i, r) = role {
            if self.zero_init_copies && self.map.0[i].repeat && writes_residual(r) {
                let zero = self.dtype_of(role)?.zero_byte();
                return Ok(Cow::Owned(vec![zero; bytes.len()]));
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
    /// The copies' correction biases' scale (see `WidthStep::bias_scale`).
    pub bias_scale: f32,
    pub config: ModelConfig,
    /// The scale grids of requantised copies whose bytes were produced and whose scales the
    /// writer has not asked for yet (see `quantised_copy`).
    pub pending_scales: std::sync::Mutex<std::collections::HashMap<Role, Vec<u8>>>,
    /// ⟨δ, ε⟩ and ⟨ε, ε⟩ of the noise put on float8 experts (see `track_fp8_noise`).
    pub fp8_noise: std::sync::Arc<std::sync::Mutex<(f64, f64, f64)>>,
}

/// A new expert matrix's values, and for a noised copy of a quantised one its values before
/// the noise (to measure what requantising kept).
struct Noised {
    values: Vec<f32>,
    before: Option<Vec<f32>>,
}

const TAG_EXPERT: u64 = 1;
const TAG_ROUTER: u64 = 2;
const TAG_BIAS: u64 = 3;
const TAG_RANDOM: u64 = 4;
const TAG_LOGIT_BIAS: u64 = 5;
const TAG_EXPERT_BIAS: u64 = 6;

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

    /// New expert `j`'s matrix as f32, or `None` when it is an exact copy of its source (no
    /// noise, no rescaling): then its stored bytes (and scales) are copied as they are.
    fn expert_values(&self, slot: LayerSlot, j: usize, p: Proj) -> Result<Option<Noised>> {
        let (src, copy) = self.step.source(j, self.experts_before);
        let role = slot.role(LayerRole::Expert(src, p));
        let layer = stream_layer(slot);
        let random = self.step.new_experts == NewExperts::Random && copy > 0;
        let sign = self.noise_sign(copy);
        if !random && sign.is_none() && self.scale(p) == 1.0 {
            return Ok(None);
        }
        let mut v = self.prev.read_f32(role)?;
        if self.scale(p) != 1.0 && !random && sign.is_none() {
            v.iter_mut().for_each(|x| *x *= self.scale(p));
            return Ok(Some(Noised { values: v, before: None }));
        }
        let sigma = std_dev(&v);
        let before = self.fp8_tracking(role)?.then(|| v.clone());
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
        if self.scale(p) != 1.0 {
            v.iter_mut().for_each(|x| *x *= self.scale(p));
        }
        Ok(Some(Noised { values: v, before: before.filter(|_| !random) }))
    }

    /// A noised copy of a block-quantised expert matrix, quantised once: its bytes, and its
    /// scales kept until the writer asks for them (a stacked tensor's bytes are assembled
    /// before its scales, so each copy would otherwise be noised and quantised twice).
    fn quantised_copy(&self, slot: LayerSlot, j: usize, p: Proj, q: crate::quant::BlockQuant, n: Noised) -> Result<(Vec<u8>, Vec<u8>)> {
        let role = slot.role(LayerRole::Expert(self.step.source(j, self.experts_before).0, p));
        let shape = crate::schema::layout::shape_of(&self.config, role)?;
        let (bytes, scales) = crate::quant::quantize(&n.values, &shape, q)?;
        if let Some(before) = &n.before {
            let back = crate::quant::dequantize(&bytes, &shape, &decode_f32(q.scale_dtype, &scales), q)?;
            self.track_fp8_noise(before, &n.values, &back);
        }
        Ok((bytes, scales))
    }

    /// The down projections' rescaling (sigmoid routing without renormalisation).
    fn scale(&self, p: Proj) -> f32 {
        if p == Proj::Down {
            self.down_scale
        } else {
            1.0
        }
    }

    /// Whether noise on this source matrix is measured against float8 rounding.
    fn fp8_tracking(&self, role: Role) -> Result<bool> {
        Ok(self.prev.quant_of(role)?.is_some())
    }

    /// How much of the noise survives requantisation: ⟨δ, ε⟩, ⟨ε, ε⟩ and ⟨δ, δ⟩ summed over
    /// the noised quantised matrices, with ε the noise added (`after − before`) and δ what the
    /// requantised copy (`back`) differs from the source by.
    fn track_fp8_noise(&self, before: &[f32], after: &[f32], back: &[f32]) {
        let (mut de, mut ee, mut dd) = (0f64, 0f64, 0f64);
        for ((b, a), r) in before.iter().zip(after).zip(back) {
            let eps = (*a - *b) as f64;
            let delta = (*r - *b) as f64;
            de += delta * eps;
            ee += eps * eps;
            dd += delta * delta;
        }
        let mut s = self.fp8_noise.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += de;
        s.1 += ee;
        s.2 += dd;
    }

    /// A float8 copy that is only rescaled (no noise): its bytes stay, its scales are
    /// multiplied — exact for the powers of two width growth uses.
    fn rescaled_fp8(&self, role: Role, j: usize, p: Proj) -> Result<bool> {
        let (_, copy) = self.step.source(j, self.experts_before);
        let random = self.step.new_experts == NewExperts::Random && copy > 0;
        Ok(!random
            && self.noise_sign(copy).is_none()
            && self.scale(p) != 1.0
            && self.prev.quant_of(role)?.is_some())
    }

    fn expert(&self, slot: LayerSlot, j: usize, p: Proj) -> Result<Cow<'_, [u8]>> {
        let src = self.step.source(j, self.experts_before).0;
        let role = slot.role(LayerRole::Expert(src, p));
        if self.rescaled_fp8(role, j, p)? {
            return self.prev.read(role);
        }
        let Some(n) = self.expert_values(slot, j, p)? else {
            return self.prev.read(role);
        };
        match self.prev.quant_of(role)? {
            Some(q) => {
                let (bytes, scales) = self.quantised_copy(slot, j, p, q, n)?;
                let key = slot.role(LayerRole::Expert(j, p));
                self.pending_scales.lock().unwrap_or_else(|e| e.into_inner()).insert(key, scales);
                Ok(Cow::Owned(bytes))
            }
            None => Ok(Cow::Owned(encode(
                &self.config,
                role,
                self.prev.dtype_of(role)?,
                &n.values,
            )?)),
        }
    }

    fn expert_scales(&self, slot: LayerSlot, j: usize, p: Proj) -> Result<Cow<'_, [u8]>> {
        let src = self.step.source(j, self.experts_before).0;
        let role = slot.role(LayerRole::Expert(src, p));
        let q = self.prev.quant_of(role)?.ok_or_else(|| {
            crate::Error::Invalid(format!(
                "{} is not block-quantised",
                crate::schema::layout::display_name(&self.config, role)
            ))
        })?;
        if self.rescaled_fp8(role, j, p)? {
            let s: Vec<f32> = decode_f32(q.scale_dtype, &self.prev.read_scales(role)?)
                .into_iter()
                .map(|x| x * self.scale(p))
                .collect();
            return match q.scale_dtype {
                DType::F8E8M0 => Ok(Cow::Owned(
                    s.iter()
                        .map(|x| (x.log2().round() as i32 + 127).clamp(0, 254) as u8)
                        .collect(),
                )),
                d => Ok(Cow::Owned(encode(&self.config, role, d, &s)?)),
            };
        }
        let key = slot.role(LayerRole::Expert(j, p));
        if let Some(s) = self.pending_scales.lock().unwrap_or_else(|e| e.into_inner()).remove(&key) {
            return Ok(Cow::Owned(s));
        }
        match self.expert_values(slot, j, p)? {
            None => self.prev.read_scales(role),
            Some(n) => Ok(Cow::Owned(self.quantised_copy(slot, j, p, q, n)?.1)),
        }
    }

    /// Per-expert rows copied with the experts: router rows (`row_len` = hidden size), a
    /// routing bias (`row_len` = 1), or gpt-oss's expert biases (`2I` gate/up, `H` down; noised
    /// as the expert they belong to, the down bias scaled with the down projection).
    fn rows(
        &self,
        slot: LayerSlot,
        role: LayerRole,
        row_len: usize,
        tag: u64,
    ) -> Result<Cow<'_, [u8]>> {
        let role = slot.role(role);
        let dtype = self.prev.dtype_of(role)?;
        let layer = stream_layer(slot);
        let old = self.prev.read_f32(role)?;
        let sigma = std_dev(&old);
        let e = self.experts_before;
        let mut out = Vec::with_capacity(old.len() * self.step.factor);
        for j in 0..e * self.step.factor {
            let (src, copy) = self.step.source(j, e);
            let mut row = old[src * row_len..(src + 1) * row_len].to_vec();
            let random = self.step.new_experts == NewExperts::Random
                && copy > 0
                && matches!(tag, TAG_ROUTER | TAG_EXPERT_BIAS);
            let noised = if tag == TAG_EXPERT_BIAS { true } else { self.step.router_noise };
            if random {
                let z = normals(
                    self.seed,
                    stream_id(&[self.index, TAG_RANDOM, layer, j as u64, tag]),
                    row_len,
                );
                row.iter_mut().zip(z).for_each(|(x, z)| *x = sigma * z);
            } else if let (true, Some(sign)) = (noised, self.noise_sign(copy)) {
                let key = if self.step.noise_on == NoiseOn::Both {
                    src
                } else {
                    j
                };
                // The two expert biases draw apart (the role tells them apart); the router's
                // streams keep their historical keys, so earlier outputs stay reproducible.
                let stream = if tag == TAG_EXPERT_BIAS {
                    let which = matches!(role.layer_part(), Some((_, LayerRole::ExpertsDownBias)));
                    stream_id(&[self.index, tag, layer, key as u64, which as u64])
                } else {
                    stream_id(&[self.index, tag, layer, key as u64])
                };
                let z = normals(self.seed, stream, row_len);
                let s = sign * self.step.noise * sigma;
                row.iter_mut().zip(z).for_each(|(x, z)| *x += s * z);
            }
            if matches!(role.layer_part(), Some((_, LayerRole::ExpertsDownBias))) && !random {
                row.iter_mut().for_each(|x| *x *= self.down_scale);
            }
            if matches!(role.layer_part(), Some((_, LayerRole::RouterBias))) {
                row.iter_mut().for_each(|x| *x *= self.bias_scale);
            }
            out.extend(row);
        }
        Ok(Cow::Owned(encode(&self.config, role, dtype, &out)?))
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

/// Values written back in a tensor's stored dtype, or a clear error when moegrow cannot write
/// that dtype.
fn encode(cfg: &ModelConfig, role: Role, dtype: DType, v: &[f32]) -> Result<Vec<u8>> {
    try_encode_f32(dtype, v).ok_or_else(|| {
        crate::Error::Invalid(format!(
            "{} is stored as {}; growth with noise rewrites it and moegrow cannot write that dtype (convert it to bf16 first)",
            crate::schema::layout::display_name(cfg, role),
            dtype.name()
        ))
    })
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
    fn quant_of(&self, role: Role) -> Result<Option<crate::quant::BlockQuant>> {
        self.prev.quant_of(self.source(role))
    }
    fn release(&self, role: Role) {
        self.prev.release(self.source(role))
    }
    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        match role.layer_part() {
            Some((slot, LayerRole::Expert(j, p))) if self.config.slot_is_moe(slot) => {
                self.expert_scales(slot, j, p)
            }
            Some((slot, LayerRole::ExpertsGateUp | LayerRole::ExpertsDown))
                if self.config.slot_is_moe(slot) =>
            {
                let q = self.quant_of(role)?.ok_or_else(|| {
                    crate::Error::Invalid("internal: scales of unquantised experts".into())
                })?;
                layout::experts_scales(&self.config, role, q, |part| self.read_scales(part))
            }
            _ => self.prev.read_scales(role),
        }
    }
    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        // Stacked experts expert by expert: their float8 grids need not line up.
        if let (Some(parts), Some(_)) = (
            layout::leaf_parts(&self.config, role),
            self.quant_of(role)?,
        ) {
            let mut out = Vec::new();
            for p in parts {
                out.extend(self.read_f32(p)?);
            }
            return Ok(out);
        }
        crate::schema::decode_or_dequantize(self, role)
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
            LayerRole::RouterLogitBias => self.rows(slot, lr, 1, TAG_LOGIT_BIAS),
            LayerRole::ExpertsGateUpBias => {
                self.rows(slot, lr, 2 * self.config.moe.intermediate, TAG_EXPERT_BIAS)
            }
            LayerRole::ExpertsDownBias => {
                self.rows(slot, lr, self.config.hidden_size, TAG_EXPERT_BIAS)
            }
            _ => self.prev.read(role),
        }
    }
}
