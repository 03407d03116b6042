//! Anything that can hand out a model's tensors by role: a checkpoint on disk, a growth plan
//! applied to one, the trainer's weights, a fresh initialisation. Every consumer (the reference
//! and GPU models, the writers, the trainer) reads through this one interface, so each of them
//! works on each source — the reference model can run a grown model before it is written.

use super::layout;
use crate::config::ModelConfig;
use crate::dtype::{decode_f32, try_decode_f32, DType};
use crate::error::{Error, Result};
use crate::quant::{dequantize, BlockQuant};
use crate::roles::Role;
use std::borrow::Cow;

/// Tensors by role. A role is a schema leaf (stacked experts included) or one expert's matrix
/// (`LayerRole::Expert(e, proj)`); a source answers both, whichever form it holds natively
/// ([`super::layout::assemble`] and [`super::layout::slice_part`] convert). A block-quantised
/// tensor is its float8 bytes ([`TensorSource::read`]) plus its scale grid
/// ([`TensorSource::read_scales`]); [`TensorSource::read_f32`] dequantises.
pub trait TensorSource: Sync {
    fn config(&self) -> &ModelConfig;

    /// The stored dtype, known without reading any data.
    fn dtype_of(&self, role: Role) -> Result<DType>;

    /// The little-endian bytes, in that dtype.
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>>;

    /// How the tensor is block-quantised (`None`: plain values).
    fn quant_of(&self, _role: Role) -> Result<Option<BlockQuant>> {
        Ok(None)
    }

    /// The scale grid of a block-quantised tensor, in its scale dtype.
    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        Err(Error::Invalid(format!(
            "{} is not block-quantised",
            layout::display_name(self.config(), role)
        )))
    }

    /// Done with `role` for now: a memory-mapped source may drop its pages (a no-op elsewhere).
    fn release(&self, _role: Role) {}

    /// The values as f32: decoded, and dequantised with their scales when block-quantised.
    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        decode_or_dequantize(self, role)
    }
}

/// What [`TensorSource::read_f32`] does unless a source knows better: the tensor's own bytes
/// decoded, or dequantised with its own scale grid.
pub fn decode_or_dequantize<S: TensorSource + ?Sized>(src: &S, role: Role) -> Result<Vec<f32>> {
    let cfg = src.config();
    let dtype = src.dtype_of(role)?;
    let bytes = src.read(role)?;
    match src.quant_of(role)? {
        Some(q) => {
            let scales = decode_f32(q.scale_dtype, &src.read_scales(role)?);
            let shape = layout::shape_of(cfg, role)?;
            dequantize(&bytes, &shape, &scales, q)
                .map_err(|e| Error::Invalid(format!("{}: {e}", layout::display_name(cfg, role))))
        }
        None => try_decode_f32(dtype, &bytes).ok_or_else(|| {
            Error::Invalid(format!(
                "{} is stored as {}, which moegrow carries byte for byte but cannot turn into numbers",
                layout::display_name(cfg, role),
                dtype.name()
            ))
        }),
    }
}

/// A tensor of `src` as f32 (decoded, dequantised when block-quantised).
pub fn read_f32<S: TensorSource + ?Sized>(src: &S, role: Role) -> Result<Vec<f32>> {
    src.read_f32(role)
}

impl<S: TensorSource + ?Sized> TensorSource for &S {
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn dtype_of(&self, role: Role) -> Result<DType> {
        (**self).dtype_of(role)
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        (**self).read(role)
    }
    fn quant_of(&self, role: Role) -> Result<Option<BlockQuant>> {
        (**self).quant_of(role)
    }
    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        (**self).read_scales(role)
    }
    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        (**self).read_f32(role)
    }
    fn release(&self, role: Role) {
        (**self).release(role)
    }
}
