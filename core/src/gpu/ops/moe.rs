//! The routed experts of one layer on the device: plan, grouped gate/up and down products,
//! weighted combine (`shaders/moe.wgsl`).

use super::GpuMatrix;
use crate::gpu::context::{grid, Bind, Gpu, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub(crate) struct MoeParams in "moe.wgsl" {
    tokens: u32,
    top_k: u32,
    experts: u32,
    hidden: u32,
    inter: u32,
    max_rows: u32,
    e_first: u32,
    e_count: u32,
    act: u32,
    bias: u32,
    alpha: f32,
    limit: f32,
    input_scaled: u32,}
}

/// What gpt-oss's experts add to the plain SwiGLU: biases (`gate_up [E, 2I]`, `down [E, H]`)
/// and the clamped activation.
#[derive(Clone, Copy, Default)]
pub struct ExpertExtras<'a> {
    pub biases: Option<(&'a GpuBuffer, &'a GpuBuffer)>,
    pub act: Option<crate::config::ExpertAct>,
    /// Llama-4: the routing weight scales the expert's input, not its output.
    pub input_scaled: bool,
}

/// Scratch buffers of one MoE layer's dispatch, sized for `tokens` tokens.
pub struct MoeScratch {
    pub max_rows: usize,
    pub chosen: GpuBuffer,
    pub weights: GpuBuffer,
    pub row_slot: GpuBuffer,
    pub slot_row: GpuBuffer,
    pub tile_expert: GpuBuffer,
    pub h: GpuBuffer,
    pub rows_out: GpuBuffer,
}

/// Rows per grouped tile (`TILE` in moe.wgsl): each expert's rows are padded to a multiple.
pub const MOE_TILE_ROWS: usize = 32;

/// The most experts the dispatch planner handles (its counters live in workgroup memory).
pub const MAX_MOE_EXPERTS: usize = 1024;

impl MoeScratch {
    pub fn new(
        gpu: &Gpu,
        tokens: usize,
        top_k: usize,
        experts: usize,
        hidden: usize,
        inter: usize,
    ) -> MoeScratch {
        let max_rows = (tokens * top_k + experts * (MOE_TILE_ROWS - 1)).div_ceil(MOE_TILE_ROWS)
            * MOE_TILE_ROWS;
        MoeScratch {
            max_rows,
            chosen: gpu.zeros(tokens * top_k),
            weights: gpu.zeros(tokens * top_k),
            row_slot: gpu.zeros(max_rows),
            slot_row: gpu.zeros(tokens * top_k),
            tile_expert: gpu.zeros(max_rows / MOE_TILE_ROWS),
            h: gpu.zeros(max_rows * inter),
            rows_out: gpu.zeros(max_rows * hidden),
        }
    }
}

/// Routed experts of one layer, all on the device: plan the grouping, one grouped gate/up
/// dispatch and one grouped down dispatch per weight part, then `out += Σ weights · rows`.
/// `gate_up` is `[E·2I, H]` (per expert: gate rows, then up rows), `down` is `[E·H, I]`.
#[allow(clippy::too_many_arguments)]
pub fn moe_experts(
    rec: &mut Recorder,
    x: &GpuBuffer,
    tokens: usize,
    top_k: usize,
    experts: usize,
    hidden: usize,
    inter: usize,
    gate_up: &GpuMatrix,
    down: &GpuMatrix,
    s: &MoeScratch,
    out: &GpuBuffer,
    // gpt-oss's expert biases and clamped activation (`ExpertExtras::default()`: plain SwiGLU).
    extras: ExpertExtras,
) {
    assert!(
        experts <= MAX_MOE_EXPERTS,
        "MoE dispatch: {experts} experts exceed the planner's {MAX_MOE_EXPERTS}"
    );
    let gpu = rec.gpu();
    assert!(
        !(extras.input_scaled && extras.biases.is_some()),
        "MoE dispatch: input-scaled experts with biases are not a family's"
    );
    let (act, alpha, limit) = match extras.act {
        Some(crate::config::ExpertAct::ClampedSwiglu { alpha, limit }) => (1, alpha, limit),
        _ => (0, 0.0, 0.0),
    };
    // The kernels always bind a bias buffer; without biases it is never read.
    let none = gpu.zeros(1);
    let (gu_bias, down_bias) = extras.biases.unwrap_or((&none, &none));
    // Input-scaled experts read each slot's weight where the gate/up biases would be.
    let gu_bias = if extras.input_scaled { &s.weights } else { gu_bias };
    let params = |e_first: usize, e_count: usize| MoeParams {
        act,
        bias: extras.biases.is_some() as u32,
        alpha,
        limit,
        tokens: tokens as u32,
        top_k: top_k as u32,
        experts: experts as u32,
        hidden: hidden as u32,
        inter: inter as u32,
        max_rows: s.max_rows as u32,
        e_first: e_first as u32,
        e_count: e_count as u32,
        input_scaled: extras.input_scaled as u32,
    };
    let u = gpu.uniform(&params(0, experts));
    rec.dispatch(
        shaders::MOE,
        "plan",
        &[
            Bind::Uniform(&u),
            Bind::Storage(&s.chosen),
            Bind::Storage(&s.row_slot),
            Bind::Storage(&s.slot_row),
            Bind::Storage(&s.tile_expert),
        ],
        (1, 1, 1),
    );
    let tiles = (s.max_rows / MOE_TILE_ROWS) as u32;
    // 16-byte-aligned sizes take the vec4 kernels.
    let vec4 = hidden.is_multiple_of(4) && inter.is_multiple_of(4);
    for (first, part) in &gate_up.parts {
        assert!(
            first % (2 * inter) == 0 && (part.len / hidden).is_multiple_of(2 * inter),
            "gate_up parts must hold whole experts"
        );
        let u = gpu.uniform(&params(
            first / (2 * inter),
            part.len / hidden / (2 * inter),
        ));
        rec.dispatch(
            shaders::MOE,
            if vec4 { "gate_up_vec4" } else { "gate_up" },
            &[
                Bind::Uniform(&u),
                Bind::Storage(x),
                Bind::Storage(&s.row_slot),
                Bind::Storage(&s.tile_expert),
                Bind::Storage(part),
                Bind::Storage(&s.h),
                Bind::Storage(gu_bias),
            ],
            (
                if vec4 {
                    inter.div_ceil(32)
                } else {
                    inter.div_ceil(64)
                } as u32,
                tiles,
                1,
            ),
        );
    }
    for (first, part) in &down.parts {
        assert!(
            first % hidden == 0 && (part.len / inter).is_multiple_of(hidden),
            "down parts must hold whole experts"
        );
        let u = gpu.uniform(&params(first / hidden, part.len / inter / hidden));
        rec.dispatch(
            shaders::MOE,
            if vec4 { "down_vec4" } else { "down" },
            &[
                Bind::Uniform(&u),
                Bind::Storage(&s.h),
                Bind::Skip,
                Bind::Storage(&s.tile_expert),
                Bind::Storage(part),
                Bind::Storage(&s.rows_out),
                Bind::Storage(down_bias),
            ],
            (
                if vec4 {
                    hidden.div_ceil(32)
                } else {
                    hidden.div_ceil(64)
                } as u32,
                tiles,
                1,
            ),
        );
    }
    let u = gpu.uniform(&params(0, experts));
    rec.dispatch(
        shaders::MOE,
        "combine",
        &[
            Bind::Uniform(&u),
            Bind::Storage(&s.rows_out),
            Bind::Storage(&s.slot_row),
            Bind::Storage(&s.weights),
            Bind::Storage(out),
        ],
        grid(tokens * hidden, 64),
    );
}

/// Rows per part for expert weights: whole experts (`rows_per_expert` rows each) per binding.
pub fn upload_experts(
    gpu: &Gpu,
    experts: usize,
    rows_per_expert: usize,
    cols: usize,
    data: &[f32],
) -> GpuMatrix {
    let per_expert = (rows_per_expert * cols * 4) as u64;
    let experts_per_part =
        ((gpu.part_bytes() / per_expert.max(1)) as usize).clamp(1, experts.max(1));
    let mut parts = Vec::new();
    let mut e = 0;
    while e < experts {
        let n = experts_per_part.min(experts - e);
        let rows = e * rows_per_expert;
        parts.push((
            rows,
            gpu.upload(&data[rows * cols..(rows + n * rows_per_expert) * cols]),
        ));
        e += n;
    }
    GpuMatrix {
        rows: experts * rows_per_expert,
        cols,
        parts,
    }
}
