//! Checkpoint statistics on the GPU: the per-layer expert weight-norm profile (the paper's
//! metric) with every layer's experts reduced on the device and one readback for the model.

use super::context::{grid, Bind, Gpu, GpuBuffer};
use super::ops::{GpuMatrix, ReduceParams as Params};
use super::shaders;
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::roles::Proj;

/// Same numbers as [`crate::analysis::expert_norm_profile`], computed on the device.
pub async fn expert_norm_profile(gpu: &Gpu, ckpt: &Checkpoint) -> Result<Vec<Option<f64>>> {
    expert_norms(gpu, ckpt, 0..ckpt.config.num_layers).await
}

/// The profile entries of `layers` only: a lazy reader (the browser) makes a few layers'
/// experts resident, reduces them here, and drops them before the next few.
pub async fn expert_norms(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    layers: std::ops::Range<usize>,
) -> Result<Vec<Option<f64>>> {
    let cfg = &ckpt.config;
    let (e, h, i) = (cfg.moe.num_experts, cfg.hidden_size, cfg.moe.intermediate);
    let numel = (h * i) as f64;
    let mut rec = gpu.encoder();
    let mut outputs: Vec<Option<GpuBuffer>> = Vec::new();
    // Keep the uploads alive until the submission (wgpu would too, but this is explicit).
    let mut keep = Vec::new();
    for layer in layers {
        if !cfg.is_moe(layer) {
            outputs.push(None);
            continue;
        }
        // One row per expert matrix: gate, up and down of expert 0, then of expert 1, …
        let mut rows = Vec::with_capacity(3 * e * h * i);
        for x in 0..e {
            for p in Proj::ALL {
                rows.extend(ckpt.expert_f32(layer, x, p)?);
            }
        }
        let m = GpuMatrix::upload(gpu, 3 * e, h * i, &rows);
        let out = gpu.zeros(3 * e);
        for (first, part) in &m.parts {
            let n_rows = part.len / (h * i);
            let sums = gpu.zeros(n_rows);
            let u = gpu.uniform(&Params {
                n: (h * i) as u32,
                bins: n_rows as u32,
                lo: 0.0,
                hi: 0.0,
            });
            rec.dispatch(
                shaders::REDUCE,
                "row_sumsq",
                &[Bind::Uniform(&u), Bind::Storage(part), Bind::Storage(&sums)],
                grid(n_rows, 1),
            );
            rec.copy(&sums, 0, &out, *first, n_rows);
            keep.push(sums);
        }
        keep.extend(m.parts.into_iter().map(|(_, b)| b));
        outputs.push(Some(out));
    }
    rec.submit();
    let wanted: Vec<&GpuBuffer> = outputs.iter().flatten().collect();
    let mut back = gpu.read_many(&wanted).await?.into_iter();
    Ok(outputs
        .iter()
        .map(|o| {
            o.as_ref().map(|_| {
                let sums = back.next().expect("one result per MoE layer");
                sums.iter().map(|s| (*s as f64 / numel).sqrt()).sum::<f64>() / sums.len() as f64
            })
        })
        .collect())
}

#[cfg(not(target_arch = "wasm32"))]
pub fn expert_norm_profile_blocking(gpu: &Gpu, ckpt: &Checkpoint) -> Result<Vec<Option<f64>>> {
    pollster::block_on(expert_norm_profile(gpu, ckpt))
}
