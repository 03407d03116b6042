// MoE dispatch on the GPU: group the (token, slot) pairs by expert, run every expert's SwiGLU
// over its tokens in one grouped dispatch, and combine the weighted results per token.
//
// `plan` (one workgroup) counts slots per expert, pads each expert's segment to a multiple of
// the 16-row tile so that a tile never mixes experts, and writes: for each grouped row its slot
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
    max_rows: u32,   // padded row capacity: tokens·top_k + experts·15, rounded up to 16
    e_first: u32,    // gate_up/down: this weight buffer holds experts e_first..e_first+e_count
    e_count: u32,    // (weights past the storage-binding limit are split by experts)
}

const TILE: u32 = 16u;
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

var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tg: array<array<f32, 16>, 16>;
var<workgroup> tu: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn gate_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let row = wid.y * TILE + lid.y;
    let slot = rs[row];
    let col = wid.x * TILE + lid.x;     // intermediate index
    let wrow = wid.x * TILE + lid.y;
    let ebase = e * 2u * p.inter * p.hidden;
    var g = 0.0;
    var u = 0.0;
    for (var t = 0u; t < p.hidden; t += TILE) {
        let kk = t + lid.x;
        var av = 0.0;
        if (slot != NONE && kk < p.hidden) {
            av = x[(slot / p.top_k) * p.hidden + kk];
        }
        ta[lid.y][lid.x] = av;
        var gv = 0.0;
        var uv = 0.0;
        if (wrow < p.inter && kk < p.hidden) {
            gv = w[ebase + wrow * p.hidden + kk];
            uv = w[ebase + (p.inter + wrow) * p.hidden + kk];
        }
        tg[lid.y][lid.x] = gv;
        tu[lid.y][lid.x] = uv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            g += ta[lid.y][i] * tg[lid.x][i];
            u += ta[lid.y][i] * tu[lid.x][i];
        }
        workgroupBarrier();
    }
    if (col < p.inter) {
        y[row * p.inter + col] = g / (1.0 + exp(-g)) * u;
    }
}

@compute @workgroup_size(16, 16)
fn down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;     // hidden index
    let wrow = wid.x * TILE + lid.y;
    let ebase = e * p.hidden * p.inter;
    var acc = 0.0;
    for (var t = 0u; t < p.inter; t += TILE) {
        let kk = t + lid.x;
        var av = 0.0;
        if (kk < p.inter) {
            av = x[row * p.inter + kk];
        }
        ta[lid.y][lid.x] = av;
        var wv = 0.0;
        if (wrow < p.hidden && kk < p.inter) {
            wv = w[ebase + wrow * p.inter + kk];
        }
        tg[lid.y][lid.x] = wv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            acc += ta[lid.y][i] * tg[lid.x][i];
        }
        workgroupBarrier();
    }
    if (col < p.hidden) {
        y[row * p.hidden + col] = acc;
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
