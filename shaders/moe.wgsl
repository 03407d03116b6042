// MoE dispatch on the GPU: group the (token, slot) pairs by expert, run every expert's SwiGLU
// over its tokens in one grouped dispatch, and combine the weighted results per token.
//
// `plan` (one workgroup) counts slots per expert, pads each expert's segment to a multiple of
// the 32-row tile so that a tile never mixes experts, and writes: for each grouped row its slot
// (or NONE for padding), for each slot its grouped row, and for each tile its expert (or NONE).
// `gate_up` and `down` are tiled products whose 16 rows share one expert's weights (fused
// layout: gate_up [E, 2I, H], down [E, H, I]); `combine` sums each token's slots in slot order,
// so the result does not depend on the order rows were grouped in.
struct Params {
    tokens: u32,
    top_k: u32,
    experts: u32,
    hidden: u32,
    inter: u32,
    max_rows: u32,   // padded row capacity: tokens·top_k + experts·31, rounded up to 32
    e_first: u32,    // gate_up/down: this weight buffer holds experts e_first..e_first+e_count
    e_count: u32,    // (weights past the storage-binding limit are split by experts)
}

const TILE: u32 = 32u; // rows per tile (one expert per tile)
const BK: u32 = 16u;   // k step
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> chosen: array<u32>;
@group(0) @binding(2) var<storage, read_write> row_slot: array<u32>;
@group(0) @binding(3) var<storage, read_write> slot_row: array<u32>;
@group(0) @binding(4) var<storage, read_write> tile_expert: array<u32>;

var<workgroup> counts: array<atomic<u32>, 1024>;
var<workgroup> starts: array<u32, 1025>;

@compute @workgroup_size(256)
fn plan(@builtin(local_invocation_id) lid: vec3<u32>) {
    let slots = p.tokens * p.top_k;
    for (var e = lid.x; e < p.experts; e += 256u) {
        atomicStore(&counts[e], 0u);
    }
    for (var r = lid.x; r < p.max_rows; r += 256u) {
        row_slot[r] = NONE;
    }
    for (var t = lid.x; t < p.max_rows / TILE; t += 256u) {
        tile_expert[t] = NONE;
    }
    workgroupBarrier();
    storageBarrier();
    for (var s = lid.x; s < slots; s += 256u) {
        atomicAdd(&counts[chosen[s]], 1u);
    }
    workgroupBarrier();
    if (lid.x == 0u) {
        var at = 0u;
        for (var e = 0u; e < p.experts; e++) {
            starts[e] = at;
            let c = atomicLoad(&counts[e]);
            for (var t = at / TILE; t < (at + c + TILE - 1u) / TILE; t++) {
                tile_expert[t] = e;
            }
            at += (c + TILE - 1u) / TILE * TILE;
            atomicStore(&counts[e], 0u);
        }
        starts[p.experts] = at;
    }
    workgroupBarrier();
    storageBarrier();
    for (var s = lid.x; s < slots; s += 256u) {
        let e = chosen[s];
        let r = starts[e] + atomicAdd(&counts[e], 1u);
        row_slot[r] = s;
        slot_row[s] = r;
    }
}

// --- grouped SwiGLU: h[r, i] = silu(x[tok]·Wg[e, i]) · (x[tok]·Wu[e, i]) ---
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rs: array<u32>;       // row_slot
@group(0) @binding(3) var<storage, read> te: array<u32>;       // tile_expert
@group(0) @binding(4) var<storage, read> w: array<f32>;        // gate_up or down weights
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // h (gate_up) or out rows (down)

// Each 16×16 workgroup computes 32 rows × 64 columns: every invocation keeps rows ty, ty + 16
// and columns tx + 16j (j < 4) in registers, so each staged value feeds several products.
var<workgroup> ta: array<f32, 512>;   // [32 rows][16 k]
var<workgroup> tg: array<f32, 1024>;  // [64 cols][16 k]
var<workgroup> tu: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn gate_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let row0 = wid.y * TILE;
    let col0 = wid.x * 64u;
    let ebase = e * 2u * p.inter * p.hidden;
    var g: array<f32, 8>;
    var u: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) {
        g[j] = 0.0;
        u[j] = 0.0;
    }
    for (var t = 0u; t < p.hidden; t += BK) {
        for (var l = 0u; l < 2u; l++) {
            let idx = li + l * 256u;
            let r = idx / BK;
            let c = t + idx % BK;
            let slot = rs[row0 + r];
            var av = 0.0;
            if (slot != NONE && c < p.hidden) {
                av = x[(slot / p.top_k) * p.hidden + c];
            }
            ta[idx] = av;
        }
        for (var l = 0u; l < 4u; l++) {
            let idx = li + l * 256u;
            let r = idx / BK;
            let c = t + idx % BK;
            var gv = 0.0;
            var uv = 0.0;
            if (col0 + r < p.inter && c < p.hidden) {
                gv = w[ebase + (col0 + r) * p.hidden + c];
                uv = w[ebase + (p.inter + col0 + r) * p.hidden + c];
            }
            tg[idx] = gv;
            tu[idx] = uv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = ta[lid.y * BK + kk];
            let a1 = ta[(lid.y + 16u) * BK + kk];
            for (var j = 0u; j < 4u; j++) {
                let wr = (lid.x + 16u * j) * BK + kk;
                let gw = tg[wr];
                let uw = tu[wr];
                g[j] += a0 * gw;
                u[j] += a0 * uw;
                g[4u + j] += a1 * gw;
                u[4u + j] += a1 * uw;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 2u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (col < p.inter) {
                let gv = g[4u * i + j];
                y[row * p.inter + col] = gv / (1.0 + exp(-gv)) * u[4u * i + j];
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let row0 = wid.y * TILE;
    let col0 = wid.x * 64u;
    let ebase = e * p.hidden * p.inter;
    var acc: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) {
        acc[j] = 0.0;
    }
    for (var t = 0u; t < p.inter; t += BK) {
        for (var l = 0u; l < 2u; l++) {
            let idx = li + l * 256u;
            let r = idx / BK;
            let c = t + idx % BK;
            var av = 0.0;
            if (c < p.inter) {
                av = x[(row0 + r) * p.inter + c];
            }
            ta[idx] = av;
        }
        for (var l = 0u; l < 4u; l++) {
            let idx = li + l * 256u;
            let r = idx / BK;
            let c = t + idx % BK;
            var wv = 0.0;
            if (col0 + r < p.hidden && c < p.inter) {
                wv = w[ebase + (col0 + r) * p.inter + c];
            }
            tg[idx] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = ta[lid.y * BK + kk];
            let a1 = ta[(lid.y + 16u) * BK + kk];
            for (var j = 0u; j < 4u; j++) {
                let wv = tg[(lid.x + 16u * j) * BK + kk];
                acc[j] += a0 * wv;
                acc[4u + j] += a1 * wv;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 2u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (col < p.hidden) {
                y[row * p.hidden + col] = acc[4u * i + j];
            }
        }
    }
}

// --- combine: out[t, c] += Σ_j weight[t, j] · rows[slot_row[t·k + j], c] ---
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read> sr: array<u32>;       // slot_row
@group(0) @binding(3) var<storage, read> wts: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= p.tokens * p.hidden) {
        return;
    }
    let t = i / p.hidden;
    let c = i % p.hidden;
    var acc = 0.0;
    for (var j = 0u; j < p.top_k; j++) {
        let s = t * p.top_k + j;
        acc += wts[s] * rows[sr[s] * p.hidden + c];
    }
    out[i] = out[i] + acc;
}
