//! Rotary position embeddings in place, from the tables [`crate::rope::Rope`] builds and the
//! caller uploads (`shaders/rope.wgsl`): the GPU never recomputes a frequency, so it rotates by
//! exactly the angles the CPU reference and the trainer use.

use crate::gpu::context::{grid, Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct RopeParams in "rope.wgsl" {
        rows: u32,
        heads: u32,
        dim: u32,
        row_stride: u32,
        col_offset: u32,
        head_step: u32,
        interleaved: u32,
        positions: u32,
    }
}

/// Rotate `heads` slices of `dim` columns per row in place, head `h` starting at column
/// `col_offset + h · head_step`, row `t` at position `t`. `table` is [`crate::rope::Rope::packed`]
/// for `dim` (cos `[positions, dim/2]`, then sin).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    rec: &mut Recorder,
    x: &GpuBuffer,
    rows: usize,
    row_stride: usize,
    heads: usize,
    col_offset: usize,
    head_step: usize,
    dim: usize,
    interleaved: bool,
    table: &GpuBuffer,
) {
    assert!(
        dim.is_multiple_of(2) && col_offset + (heads.max(1) - 1) * head_step + dim <= row_stride,
        "rope: heads do not fit the row"
    );
    let positions = table.len / dim.max(1);
    assert!(
        table.len == positions * dim && rows <= positions,
        "rope: a table of {} values does not cover {rows} positions of dimension {dim}",
        table.len
    );
    let p = rec.gpu().uniform(&RopeParams {
        rows: rows as u32,
        heads: heads as u32,
        dim: dim as u32,
        row_stride: row_stride as u32,
        col_offset: col_offset as u32,
        head_step: head_step as u32,
        interleaved: interleaved as u32,
        positions: positions as u32,
    });
    rec.dispatch(
        shaders::ROPE,
        "rope",
        &[Bind::Uniform(&p), Bind::Storage(x), Bind::Storage(table)],
        grid(rows * heads * dim / 2, 64),
    );
}
