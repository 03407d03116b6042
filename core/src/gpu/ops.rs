//! Host-side launchers for the WGSL kernels: each fills its kernel's parameter block, binds
//! buffers and records a dispatch. Shapes are checked here, so a wrong call is a Rust panic
//! with the shapes in the message rather than a silent out-of-bounds read on the device.

use super::context::{grid, Bind, Gpu, GpuBuffer, Recorder};
use super::shaders;
use bytemuck::{Pod, Zeroable};

/// A `[rows, cols]` weight on the device, split by rows into parts that each fit one storage
/// binding (WebGPU devices may bind as little as 128 MiB at once).
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// (first row, buffer holding rows first..first + buffer.len / cols)
    pub parts: Vec<(usize, GpuBuffer)>,
}

impl GpuMatrix {
    pub fn upload(gpu: &Gpu, rows: usize, cols: usize, data: &[f32]) -> GpuMatrix {
        assert_eq!(
            data.len(),
            rows * cols,
            "GpuMatrix::upload: {rows}x{cols} needs {} values, got {}",
            rows * cols,
            data.len()
        );
        let max_rows = ((gpu.part_bytes() / 4) as usize / cols.max(1)).max(1);
        let mut parts = Vec::new();
        let mut first = 0;
        while first < rows || parts.is_empty() {
            let n = max_rows.min(rows - first);
            parts.push((first, gpu.upload(&data[first * cols..(first + n) * cols])));
            first += n.max(1);
        }
        GpuMatrix { rows, cols, parts }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    a_offset: u32,
    a_stride: u32,
    out_offset: u32,
    out_stride: u32,
    flags: u32,
}

/// Where a matrix operand lives inside a buffer: `rows` rows of `cols` values starting at
/// `offset`, `stride` apart.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Region {
    pub fn dense(rows: usize, cols: usize) -> Region {
        Region {
            offset: 0,
            rows,
            cols,
            stride: cols,
        }
    }
    pub fn cols(rows: usize, stride: usize, offset: usize, cols: usize) -> Region {
        Region {
            offset,
            rows,
            cols,
            stride,
        }
    }
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    groups: u32,
    width: u32,
    eps: f32,
    in_offset: u32,
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    rows: u32,
    heads: u32,
    dim: u32,
    row_stride: u32,
    col_offset: u32,
    head_step: u32,
    interleaved: u32,
    base: f32,
}

/// Rotate `heads` slices of `dim` columns per row in place, head `h` starting at column
/// `col_offset + h · head_step`, row `t` at position `t`.
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
    base: f32,
) {
    assert!(
        dim.is_multiple_of(2) && col_offset + (heads.max(1) - 1) * head_step + dim <= row_stride,
        "rope: heads do not fit the row"
    );
    let p = rec.gpu().uniform(&RopeParams {
        rows: rows as u32,
        heads: heads as u32,
        dim: dim as u32,
        row_stride: row_stride as u32,
        col_offset: col_offset as u32,
        head_step: head_step as u32,
        interleaved: interleaved as u32,
        base,
    });
    rec.dispatch(
        shaders::ROPE,
        "rope",
        &[Bind::Uniform(&p), Bind::Storage(x)],
        grid(rows * heads * dim / 2, 64),
    );
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AttentionParams {
    pub t_len: u32,
    pub heads: u32,
    pub qk_dim: u32,
    pub v_dim: u32,
    pub q_stride: u32,
    pub k_stride: u32,
    pub v_stride: u32,
    pub out_stride: u32,
    pub q_head_step: u32,
    pub kv_group: u32,
    pub k_head_step: u32,
    pub v_head_step: u32,
    pub v_offset: u32,
    pub window: u32,
    pub scale: f32,
    pub _pad: u32,
}

/// Longest sequence the attention kernel takes (its scores live in 8 KiB of workgroup memory).
pub const MAX_ATTENTION_TOKENS: usize = 2048;

pub fn attention(
    rec: &mut Recorder,
    q: &GpuBuffer,
    k: &GpuBuffer,
    v: &GpuBuffer,
    out: &GpuBuffer,
    p: AttentionParams,
) {
    assert!(
        p.t_len as usize <= MAX_ATTENTION_TOKENS,
        "attention: {} tokens exceed the kernel's {MAX_ATTENTION_TOKENS}",
        p.t_len
    );
    let u = rec.gpu().uniform(&p);
    rec.dispatch(
        shaders::ATTENTION,
        "attention",
        &[
            Bind::Uniform(&u),
            Bind::Storage(q),
            Bind::Storage(k),
            Bind::Storage(v),
            Bind::Storage(out),
        ],
        (p.t_len, p.heads, 1),
    );
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct EwParams {
    n: u32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: f32,
    g: f32,
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RouterParams {
    pub tokens: u32,
    pub experts: u32,
    pub top_k: u32,
    pub sigmoid: u32,
    pub normalize: u32,
    pub has_bias: u32,
    pub n_group: u32,
    pub topk_group: u32,
    pub group_sum_top2: u32,
    pub scaling: f32,
    pub _p0: u32,
    pub _p1: u32,
}

/// The most experts the router kernel handles (its per-token scores live in registers).
pub const MAX_ROUTER_EXPERTS: usize = 512;

impl RouterParams {
    pub fn new(tokens: usize, moe: &crate::config::MoeConfig) -> RouterParams {
        use crate::config::{GroupScore, Scoring};
        let r = &moe.router;
        RouterParams {
            tokens: tokens as u32,
            experts: moe.num_experts as u32,
            top_k: moe.top_k as u32,
            sigmoid: (r.scoring == Scoring::Sigmoid) as u32,
            normalize: r.normalize as u32,
            has_bias: r.correction_bias as u32,
            n_group: r.group_limit.map_or(0, |g| g.n_group as u32),
            topk_group: r.group_limit.map_or(0, |g| g.topk_group as u32),
            group_sum_top2: r
                .group_limit
                .is_some_and(|g| g.score == GroupScore::SumTop2) as u32,
            scaling: r.routed_scaling_factor,
            _p0: 0,
            _p1: 0,
        }
    }
}

/// Route every token: `chosen[t·k + j]` (u32) and `weights[t·k + j]`.
pub fn route(
    rec: &mut Recorder,
    logits: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    chosen: &GpuBuffer,
    weights: &GpuBuffer,
    p: RouterParams,
) {
    assert!(
        p.experts as usize <= MAX_ROUTER_EXPERTS && p.n_group <= 64,
        "router: {} experts / {} groups exceed the kernel's limits",
        p.experts,
        p.n_group
    );
    let u = rec.gpu().uniform(&p);
    let dummy = rec.gpu().dummy();
    rec.dispatch(
        shaders::ROUTER,
        "route",
        &[
            Bind::Uniform(&u),
            Bind::Storage(logits),
            Bind::Storage(bias.unwrap_or(dummy)),
            Bind::Storage(chosen),
            Bind::Storage(weights),
        ],
        grid(p.tokens as usize, 64),
    );
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MoeParams {
    tokens: u32,
    top_k: u32,
    experts: u32,
    hidden: u32,
    inter: u32,
    max_rows: u32,
    e_first: u32,
    e_count: u32,
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
) {
    assert!(
        experts <= MAX_MOE_EXPERTS,
        "MoE dispatch: {experts} experts exceed the planner's {MAX_MOE_EXPERTS}"
    );
    let gpu = rec.gpu();
    let params = |e_first: usize, e_count: usize| MoeParams {
        tokens: tokens as u32,
        top_k: top_k as u32,
        experts: experts as u32,
        hidden: hidden as u32,
        inter: inter as u32,
        max_rows: s.max_rows as u32,
        e_first: e_first as u32,
        e_count: e_count as u32,
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ReduceParams {
    pub n: u32,
    pub bins: u32,
    pub lo: f32,
    pub hi: f32,
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NoiseParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
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
