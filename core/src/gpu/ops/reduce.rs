//! Reductions for statistics: moments, histograms, cosine similarity (`shaders/reduce.wgsl`).

use super::{matmul, GpuMatrix, Region};
use crate::gpu::context::{grid, Bind, Gpu, GpuBuffer};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct ReduceParams in "reduce.wgsl" {
    pub n: u32,
    pub bins: u32,
    pub lo: f32,
    pub hi: f32,}
}

/// Σx and Σx² of a buffer's first `n` values (two passes on the device, one readback).
pub async fn moments(gpu: &Gpu, x: &GpuBuffer, n: usize) -> crate::Result<(f64, f64)> {
    let groups = n.div_ceil(256).clamp(1, 256);
    let partial = gpu.zeros(2 * groups);
    let mut rec = gpu.encoder();
    let u = gpu.uniform(&ReduceParams {
        n: n as u32,
        bins: 0,
        lo: 0.0,
        hi: 0.0,
    });
    rec.dispatch(
        shaders::REDUCE,
        "moments",
        &[Bind::Uniform(&u), Bind::Storage(x), Bind::Storage(&partial)],
        (groups as u32, 1, 1),
    );
    // At most 256 workgroup partials come back; adding 512 floats on the host is cheaper than
    // another dispatch and keeps the sums in f64.
    rec.submit();
    let p = gpu.read(&partial).await?;
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for g in 0..groups {
        a += p[2 * g] as f64;
        b += p[2 * g + 1] as f64;
    }
    Ok((a, b))
}

/// Counts of `x` in `bins` equal bins over [lo, hi] (values outside land in the end bins).
pub async fn histogram(
    gpu: &Gpu,
    x: &GpuBuffer,
    n: usize,
    bins: usize,
    lo: f32,
    hi: f32,
) -> crate::Result<Vec<u32>> {
    let counts = gpu.zeros(bins);
    let mut rec = gpu.encoder();
    let u = gpu.uniform(&ReduceParams {
        n: n as u32,
        bins: bins as u32,
        lo,
        hi,
    });
    rec.dispatch(
        shaders::REDUCE,
        "histogram",
        &[
            Bind::Uniform(&u),
            Bind::Storage(x),
            Bind::Skip,
            Bind::Storage(&counts),
        ],
        grid(n, 256),
    );
    rec.submit();
    Ok(gpu
        .read(&counts)
        .await?
        .into_iter()
        .map(f32::to_bits)
        .collect())
}

/// Cosine similarity of every pair of rows of an `[n, len]` matrix: `[n, n]`.
pub async fn cosine_similarity(gpu: &Gpu, rows: &GpuMatrix) -> crate::Result<Vec<f32>> {
    let n = rows.rows;
    let a = match rows.parts.as_slice() {
        [(_, only)] => only,
        _ => {
            return Err(crate::Error::Invalid(
                "cosine similarity needs the rows in one binding".into(),
            ))
        }
    };
    let gram = gpu.zeros(n * n);
    let out = gpu.zeros(n * n);
    let mut rec = gpu.encoder();
    matmul(
        &mut rec,
        a,
        Region::dense(n, rows.cols),
        rows,
        None,
        &gram,
        Region::dense(n, n),
        false,
    );
    let u = gpu.uniform(&ReduceParams {
        n: (n * n) as u32,
        bins: n as u32,
        lo: 0.0,
        hi: 0.0,
    });
    rec.dispatch(
        shaders::REDUCE,
        "cosine",
        &[Bind::Uniform(&u), Bind::Storage(&gram), Bind::Storage(&out)],
        grid(n * n, 64),
    );
    rec.submit();
    gpu.read(&out).await
}
