// Rotary position embedding, in place, on `heads` head slices per row, with the angles from a
// table the host builds (moegrow_core::rope::Rope, the same for every backend): pair i of a
// head at position t rotates by cos[t][i], sin[t][i]. Pairs are (2i, 2i+1) when interleaved
// (DeepSeek), else (i, i + dim/2) (rotate_half).
struct Params {
    rows: u32,
    heads: u32,
    dim: u32,          // rotary dimension (even)
    row_stride: u32,
    col_offset: u32,   // first column of head 0's rotary part
    head_step: u32,    // columns between heads
    interleaved: u32,
    positions: u32,    // rows of the table: cos is [positions][dim/2], sin follows it
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.dim / 2u;
    let idx = gid.y * nwg.x * 64u + gid.x;
    if (idx >= p.rows * p.heads * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % p.heads;
    let t = idx / (half * p.heads);
    let c = table[t * half + i];
    let s = table[p.positions * half + t * half + i];
    let start = t * p.row_stride + p.col_offset + h * p.head_step;
    var ia = start + i;
    var ib = start + i + half;
    if (p.interleaved != 0u) {
        ia = start + 2u * i;
        ib = ia + 1u;
    }
    let xa = x[ia];
    let xb = x[ib];
    x[ia] = xa * c - xb * s;
    x[ib] = xb * c + xa * s;
}
