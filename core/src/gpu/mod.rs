//! The GPU runtime: our WGSL kernels (`shaders/`) run through wgpu, natively (Vulkan, Metal,
//! DX12; Mesa's lavapipe in CI) and in the browser (WebGPU), with one async API.

pub mod context;
pub mod model;
pub mod ops;
pub mod shaders;
pub mod stats;

pub use context::{Bind, Gpu, GpuBuffer, Recorder};
pub use model::{GpuForward, GpuModel};

#[cfg(test)]
mod tests;
