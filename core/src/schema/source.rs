//! Anything that can hand out a model's tensors by role: a checkpoint on disk, a growth plan
//! applied to one, the trainer's weights, a fresh initialisation. Every consumer (the reference
//! and GPU models, the writers, the trainer) reads through this one interface, so each of them
//! works on each source — the reference model can run a grown model before it is written.

use crate::config::ModelConfig;
use crate::dtype::{decode_f32, DType};
use crate::error::Result;
use crate::roles::Role;
use std::borrow::Cow;

/// Tensors by role. A role is a schema leaf (stacked experts included) or one expert's matrix
/// (`LayerRole::Expert(e, proj)`); a source answers both, whichever form it holds natively
/// ([`super::layout::assemble`] and [`super::layout::slice_part`] convert).
pub trait TensorSource: Sync {
    fn config(&self) -> &ModelConfig;

    /// The stored dtype, known without reading any data.
    fn dtype_of(&self, role: Role) -> Result<DType>;

    /// The little-endian bytes, in that dtype.
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>>;
}

/// A tensor of `src` decoded to f32.
pub fn read_f32<S: TensorSource + ?Sized>(src: &S, role: Role) -> Result<Vec<f32>> {
    Ok(decode_f32(src.dtype_of(role)?, &src.read(role)?))
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
}
