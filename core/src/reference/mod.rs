//! The CPU reference implementation of every supported family's forward pass, in f32.
//!
//! It is the oracle the GPU kernels, growth and training are checked against, so it is written
//! for clarity: one function per idea, following the transformers code it mirrors.

pub mod attention;
pub mod linear_attention;
pub mod model;
pub mod ops;
pub mod routing;

pub use model::{forward_streamed, ForwardOutput, LayerByLayer, ReferenceModel};
pub use ops::Mat;
pub use routing::Choice;
