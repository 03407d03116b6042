//! RMSNorm over consecutive groups of a buffer (`shaders/norm.wgsl`).

use crate::gpu::context::{grid, Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct NormParams in "norm.wgsl" {
    groups: u32,
    width: u32,
    eps: f32,
    in_offset: u32,}
}

/// `out = RMSNorm(x)` over consecutive groups of `weight.len` values (`groups` of them).
pub fn rms_norm(
    rec: &mut Recorder,
    x: &GpuBuffer,
    in_offset: usize,
    groups: usize,
    weight: &GpuBuffer,
    eps: f32,
    out: &GpuBuffer,
) {
    let width = weight.len;
    assert!(
        in_offset + groups * width <= x.len && groups * width <= out.len,
        "rms_norm: {groups} groups of {width} do not fit"
    );
    let p = rec.gpu().uniform(&NormParams {
        groups: groups as u32,
        width: width as u32,
        eps,
        in_offset: in_offset as u32,
    });
    rec.dispatch(
        shaders::NORM,
        "rms_norm",
        &[
            Bind::Uniform(&p),
            Bind::Storage(x),
            Bind::Storage(weight),
            Bind::Storage(out),
        ],
        grid(groups, 1),
    );
}
