//! Continued pre-training with burn: a MoE transformer whose parameters are a Hugging Face
//! checkpoint's tensors, trained on burn's wgpu backend (GPU, or Mesa's lavapipe) or its
//! pure-Rust CPU backend (`flex`), and written back as a Hugging Face checkpoint.
//!
//! - [`arch`]: which architectures train (standard-attention families) and how.
//! - [`weights`]: checkpoint ⇄ host f32 tensors ⇄ device parameters, exactly.
//! - [`model`]: the burn module and its forward pass.
//! - [`moe`]: routing and the grouped expert dispatch; the aux loss and bias balancing.
//! - [`kernels`]: our WGSL grouped-matmul kernels inside burn (wgpu), forward and backward.
//! - [`schedule`], [`batches`], [`config`]: learning rates, seeded data order, options.
//! - [`run`]: the loop, metrics, checkpoints and `--resume`.

pub mod arch;
pub mod batches;
pub mod config;
pub mod kernels;
pub mod model;
pub mod moe;
pub mod run;
pub mod schedule;
pub mod weights;

#[cfg(test)]
mod tests;
