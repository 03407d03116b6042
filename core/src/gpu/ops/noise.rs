//! Growth's Gaussian noise on the device, the CPU's Philox stream exactly (`shaders/noise.wgsl`).

use crate::gpu::context::{grid, Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct NoiseParams in "noise.wgsl" {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,}
}

/// `out = src + scale · z` with the CPU's noise stream (`growth::noise::add_scaled_normals`).
pub fn add_noise(
    rec: &mut Recorder,
    src: &GpuBuffer,
    out: &GpuBuffer,
    n: usize,
    seed: u64,
    stream: u64,
    scale: f32,
) {
    let u = rec.gpu().uniform(&NoiseParams {
        n: n as u32,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream_lo: stream as u32,
        stream_hi: (stream >> 32) as u32,
        scale,
        _p0: 0,
        _p1: 0,
    });
    rec.dispatch(
        shaders::NOISE,
        "add_noise",
        &[Bind::Uniform(&u), Bind::Storage(src), Bind::Storage(out)],
        grid(n.div_ceil(4), 64),
    );
}
