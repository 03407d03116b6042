//! moegrow-core: everything moegrow computes, shared by the native tool and the browser.
//!
//! - [`config`] and [`families`]: `config.json` of each supported Hugging Face MoE family,
//!   normalised into one [`ModelConfig`].
//! - [`roles`]: what each tensor is, independent of its name.
//! - [`schema`]: which tensors a model has (the weight tree), how they are named and laid out
//!   on disk, and the [`schema::TensorSource`] interface every reader and writer shares.
//! - [`rope`]: the rotary tables every backend uses.
//! - [`checkpoint`]: reading (memory-mapped, lazy) and writing (sharded, atomic) checkpoints.
//! - [`reference`]: the CPU reference forward pass.
//! - [`growth`]: depth and width growth as lazy, streamed stages with reproducible noise.
//! - [`gpu`]: the wgpu runtime for our WGSL kernels (native and WebGPU) and the GPU forward pass.
//! - [`analysis`]: parameter counts, FLOPs and the per-layer expert weight-norm profile.
//! - [`init`]: freshly initialised checkpoints from presets.

pub mod analysis;
pub mod checkpoint;
pub mod config;
pub mod dtype;
pub mod error;
pub mod families;
pub mod gpu;
pub mod growth;
pub mod init;
pub mod quant;
pub mod reference;
pub mod roles;
pub mod rope;
pub mod schema;

pub use checkpoint::Checkpoint;
pub use config::ModelConfig;
pub use dtype::DType;
pub use error::{Error, Result};
pub use families::Family;
pub use roles::{ExpertLayout, LayerRole, Proj, Role};
pub use schema::TensorSource;
