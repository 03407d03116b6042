// Grouped (per-expert) matrix products for training the MoE layer through burn's custom-kernel
// support: rows are sorted by expert and each expert's rows are padded to whole 16-row tiles,
// so that every 16×16 output tile reads one expert's weights.
//
//   gmm_nt: Y[r, n] = Σ_k A[r, k] · W[e(r), n, k]          forward (x·Wᵀ for [out, in] weights)
//   gmm_nn: Y[r, k] = Σ_n A[r, n] · W[e(r), n, k]          backward, input gradient (dy·W)
//   gmm_tn: Y[e, n, k] = Σ_{r ∈ e} A[r, n] · B[r, k]       backward, weight gradient (dyᵀ·x)
//
// burn launches one entry point per kernel as `main` (the Rust side renames it), binds the
// tensors in order and appends `info` (u64 words, read as u32 pairs):
//   [rows, K, N, experts, tiles, tile_expert[tiles], tile_start[experts + 1]]
// Every buffer is read_write: burn sub-allocates tensors from shared buffers. Loop bounds go
// through workgroupUniformLoad so that the barriers inside the loops are in uniform control flow.

const T: u32 = 16u; // rows per expert tile (gpu::shaders::GROUPED_TILE_ROWS)

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> info: array<u32>;

var<workgroup> ta: array<array<f32, T>, T>;
var<workgroup> tb: array<array<f32, T>, T>;
var<workgroup> loop_lo: u32;
var<workgroup> loop_hi: u32;

fn word(i: u32) -> u32 {
    return info[2u * i];
}

/// The expert of a row tile (0 past the end; such tiles read no weights).
fn tile_expert(tile: u32) -> u32 {
    if (tile < word(4u)) {
        return word(5u + tile);
    }
    return 0u;
}

@compute @workgroup_size(16, 16, 1)
fn gmm_nt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = word(0u);
    let kk = word(1u);
    let nn = word(2u);
    let tile = wid.y;
    let live = tile < word(4u);
    let e = tile_expert(tile);
    let r = tile * T + lid.y;
    let n0 = wid.x * T;
    if (lid.x == 0u && lid.y == 0u) {
        loop_hi = kk;
    }
    let k_end = workgroupUniformLoad(&loop_hi);
    var acc = 0.0;
    for (var k0 = 0u; k0 < k_end; k0 += T) {
        let k = k0 + lid.x;
        let n = n0 + lid.y;
        ta[lid.y][lid.x] = 0.0;
        tb[lid.y][lid.x] = 0.0;
        if (r < rows && k < kk) {
            ta[lid.y][lid.x] = a[r * kk + k];
        }
        if (live && n < nn && k < kk) {
            tb[lid.y][lid.x] = b[(e * nn + n) * kk + k];
        }
        workgroupBarrier();
        for (var j = 0u; j < T; j++) {
            acc += ta[lid.y][j] * tb[lid.x][j];
        }
        workgroupBarrier();
    }
    let n = n0 + lid.x;
    if (r < rows && n < nn) {
        y[r * nn + n] = acc;
    }
}

@compute @workgroup_size(16, 16, 1)
fn gmm_nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = word(0u);
    let kk = word(1u);
    let nn = word(2u);
    let tile = wid.y;
    let live = tile < word(4u);
    let e = tile_expert(tile);
    let r = tile * T + lid.y;
    let k = wid.x * T + lid.x;
    if (lid.x == 0u && lid.y == 0u) {
        loop_hi = nn;
    }
    let n_end = workgroupUniformLoad(&loop_hi);
    var acc = 0.0;
    for (var n0 = 0u; n0 < n_end; n0 += T) {
        let na = n0 + lid.x;
        let nb = n0 + lid.y;
        ta[lid.y][lid.x] = 0.0;
        tb[lid.y][lid.x] = 0.0;
        if (r < rows && na < nn) {
            ta[lid.y][lid.x] = a[r * nn + na];
        }
        if (live && nb < nn && k < kk) {
            tb[lid.y][lid.x] = b[(e * nn + nb) * kk + k];
        }
        workgroupBarrier();
        for (var j = 0u; j < T; j++) {
            acc += ta[lid.y][j] * tb[j][lid.x];
        }
        workgroupBarrier();
    }
    if (r < rows && k < kk) {
        y[r * kk + k] = acc;
    }
}

@compute @workgroup_size(16, 16, 1)
fn gmm_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = word(0u);
    let kk = word(1u);
    let nn = word(2u);
    let experts = word(3u);
    let tiles = word(4u);
    let e = wid.z;
    if (lid.x == 0u && lid.y == 0u) {
        loop_lo = 0u;
        loop_hi = 0u;
        if (e < experts) {
            loop_lo = word(5u + tiles + e);
            loop_hi = word(5u + tiles + e + 1u);
        }
    }
    let first = workgroupUniformLoad(&loop_lo);
    let last = workgroupUniformLoad(&loop_hi);
    let n = wid.y * T + lid.y;
    let k = wid.x * T + lid.x;
    var acc = 0.0;
    for (var t = first; t < last; t++) {
        // ta[row][n] and tb[row][k] for the 16 rows of this tile.
        let r = t * T + lid.y;
        let na = wid.y * T + lid.x;
        ta[lid.y][lid.x] = 0.0;
        tb[lid.y][lid.x] = 0.0;
        if (r < rows && na < nn) {
            ta[lid.y][lid.x] = a[r * nn + na];
        }
        if (r < rows && k < kk) {
            tb[lid.y][lid.x] = b[r * kk + k];
        }
        workgroupBarrier();
        for (var j = 0u; j < T; j++) {
            acc += ta[j][lid.y] * tb[j][lid.x];
        }
        workgroupBarrier();
    }
    if (e < experts && n < nn && k < kk) {
        y[(e * nn + n) * kk + k] = acc;
    }
}
