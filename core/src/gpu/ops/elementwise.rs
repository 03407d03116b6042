//! Small elementwise kernels: embedding lookup, residual add, SwiGLU's `silu(g) ⊙ u`, column
//! copies, clamping and sigmoid row gates (`shaders/elementwise.wgsl`).

use super::GpuMatrix;
use crate::gpu::context::{grid, Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct EwParams in "elementwise.wgsl" {
    n: u32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: f32,
    g: f32,}
}

fn ew(rec: &mut Recorder, entry: &'static str, p: EwParams, binds: &[&GpuBuffer]) {
    let u = rec.gpu().uniform(&p);
    let mut b = vec![Bind::Uniform(&u)];
    b.extend(binds.iter().map(|x| Bind::Storage(x)));
    rec.dispatch(shaders::ELEMENTWISE, entry, &b, grid(p.n as usize, 64));
}

/// `out[t, :] = table[tokens[t], :]` (`tokens` holds u32 ids), part by part.
pub fn embed(rec: &mut Recorder, tokens: &GpuBuffer, table: &GpuMatrix, out: &GpuBuffer) {
    let hidden = table.cols;
    for (first, part) in &table.parts {
        let rows = part.len / hidden.max(1);
        let p = EwParams {
            n: (tokens.len * hidden) as u32,
            a: hidden as u32,
            b: *first as u32,
            c: rows as u32,
            ..Default::default()
        };
        ew(rec, "embed", p, &[tokens, out, part]);
    }
}

/// `dst += src` over `n` values.
pub fn add(rec: &mut Recorder, src: &GpuBuffer, dst: &GpuBuffer, n: usize) {
    ew(
        rec,
        "add",
        EwParams {
            n: n as u32,
            ..Default::default()
        },
        &[src, dst],
    );
}

/// `gate = silu(gate) ⊙ up` over `n` values.
pub fn silu_mul(rec: &mut Recorder, up: &GpuBuffer, gate: &GpuBuffer, n: usize) {
    ew(
        rec,
        "silu_mul",
        EwParams {
            n: n as u32,
            ..Default::default()
        },
        &[up, gate],
    );
}

/// Copy `rows × width` values: `dst[r·dst_stride + dst_off + c] = src[r·src_stride + src_off + c]`.
#[allow(clippy::too_many_arguments)]
pub fn copy_cols(
    rec: &mut Recorder,
    src: &GpuBuffer,
    src_stride: usize,
    src_off: usize,
    dst: &GpuBuffer,
    dst_stride: usize,
    dst_off: usize,
    rows: usize,
    width: usize,
) {
    let p = EwParams {
        n: (rows * width) as u32,
        a: width as u32,
        b: src_stride as u32,
        c: dst_stride as u32,
        d: dst_off as u32,
        e: src_off as u32,
        ..Default::default()
    };
    ew(rec, "copy_cols", p, &[src, dst]);
}

pub fn clamp_abs(rec: &mut Recorder, x: &GpuBuffer, n: usize, limit: f32) {
    // The only kernel here without an input: binding 1 is left out of its layout.
    let u = rec.gpu().uniform(&EwParams {
        n: n as u32,
        f: limit,
        ..Default::default()
    });
    rec.dispatch(
        shaders::ELEMENTWISE,
        "clamp_abs",
        &[Bind::Uniform(&u), Bind::Skip, Bind::Storage(x)],
        grid(n, 64),
    );
}

/// `x[t, :] *= sigmoid(gate[t])` for rows of `width`.
pub fn scale_rows_sigmoid(
    rec: &mut Recorder,
    gate: &GpuBuffer,
    x: &GpuBuffer,
    rows: usize,
    width: usize,
) {
    ew(
        rec,
        "scale_rows_sigmoid",
        EwParams {
            n: (rows * width) as u32,
            a: width as u32,
            ..Default::default()
        },
        &[gate, x],
    );
}
