//! Linear layers: `out (+)= a · wᵀ (+ bias)` over `[out, in]` weights split into parts
//! (`shaders/matmul.wgsl`; a vec4 kernel for aligned shapes, a tiled scalar one otherwise).

use super::{GpuMatrix, Region};
use crate::gpu::context::{Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct MatmulParams in "matmul.wgsl" {
    m: u32,
    n: u32,
    k: u32,
    a_offset: u32,
    a_stride: u32,
    out_offset: u32,
    out_stride: u32,
    flags: u32,}
}

/// `out[region] (+)= a[region] · wᵀ (+ bias)`: a linear layer on the device.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    rec: &mut Recorder,
    a: &GpuBuffer,
    ar: Region,
    w: &GpuMatrix,
    bias: Option<&GpuBuffer>,
    out: &GpuBuffer,
    or: Region,
    accumulate: bool,
) {
    assert_eq!(
        ar.cols, w.cols,
        "matmul: input has {} columns, weight {}x{}",
        ar.cols, w.rows, w.cols
    );
    assert_eq!(
        (or.rows, or.cols),
        (ar.rows, w.rows),
        "matmul: output region {}x{}, expected {}x{}",
        or.rows,
        or.cols,
        ar.rows,
        w.rows
    );
    let gpu = rec.gpu();
    for (first, part) in &w.parts {
        let n = part.len / w.cols.max(1);
        // The bias of this part's rows.
        let part_bias = bias.map(|b| (b, *first));
        let bias_buf;
        let bias_bind = match part_bias {
            Some((b, 0)) if n == w.rows => b,
            Some((b, f)) => {
                bias_buf = gpu.zeros(n);
                rec.copy(b, f, &bias_buf, 0, n);
                &bias_buf
            }
            None => gpu.dummy(),
        };
        let p = gpu.uniform(&MatmulParams {
            m: ar.rows as u32,
            n: n as u32,
            k: ar.cols as u32,
            a_offset: ar.offset as u32,
            a_stride: ar.stride as u32,
            out_offset: (or.offset + first) as u32,
            out_stride: or.stride as u32,
            flags: (bias.is_some() as u32) | ((accumulate as u32) << 1),
        });
        // 16-byte-aligned operands take the vec4 kernel; anything else the tiled scalar one.
        let aligned =
            ar.cols.is_multiple_of(4) && ar.stride.is_multiple_of(4) && ar.offset.is_multiple_of(4);
        let (entry, groups) = if aligned {
            (
                "matmul_vec4",
                (n.div_ceil(32) as u32, ar.rows.div_ceil(32) as u32, 1),
            )
        } else {
            (
                "matmul",
                (n.div_ceil(64) as u32, ar.rows.div_ceil(64) as u32, 1),
            )
        };
        rec.dispatch(
            shaders::MATMUL,
            entry,
            &[
                Bind::Uniform(&p),
                Bind::Storage(a),
                Bind::Storage(part),
                Bind::Storage(bias_bind),
                Bind::Storage(out),
            ],
            groups,
        );
    }
}
