// MoE dispatch on the GPU: group the (token, slot) pairs by expert, run every expert's SwiGLU
// over its tokens in one grouped dispatch, and combine the weighted results per token.
//
// `plan` (one workgroup) counts slots per expert, pads each expert's segment to a multiple of
// the 32-row tile so that a tile never mixes experts, and writes: for each grouped row its slot
// (or NONE for padding), for each slot its grouped row, and for each tile its expert (or NONE).
// `gate_up` and `down` are tiled products whose 16 rows share one expert's weights (fused
// layout: gate_up [E, 2I, H], down [E, H, I]); `combine` sums each token's slots in slot order,
// so the result does not depend on the order rows were grouped in. gpt-oss's experts add
// biases (`eb`: gate_up [E, 2I] for gate_up, down [E, H] for down, by global expert) and use the
// clamped SwiGLU (`act` 1). Llama-4's routing weight scales the expert's input (`input_scaled`).
struct Params {
    tokens: u32,
    top_k: u32,
    experts: u32,
    hidden: u32,
    inter: u32,
    max_rows: u32,   // padded row capacity: tokens·top_k + experts·31, rounded up to 32
    e_first: u32,    // gate_up/down: this weight buffer holds experts e_first..e_first+e_count
    e_count: u32,    // (weights past the storage-binding limit are split by experts)
    act: u32,        // 0: silu(g)·u; 1: gpt-oss's (clamp(u) + 1)·min(g, limit)·σ(α·min(g, limit))
    bias: u32,       // 1: add eb's per-expert biases
    alpha: f32,
    limit: f32,
    input_scaled: u32, // 1: Llama-4: the routing weight (eb = weights, by slot) scales each row's
                       // gate and up (the expert's input), and combine adds the rows unweighted
}

const TILE: u32 = 32u; // rows per tile (one expert per tile)
const BK: u32 = 16u;   // k step
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> chosen: array<u32>;
@group(0) @binding(2) var<storage, read_write> row_slot: array<u32>;
@group(0) @binding(3) var<storage, read_write> slot_row: array<u32>;
@group(0) @binding(4) var<storage, read_write> tile_expert: array<u32>;

const MAX_EXPERTS: u32 = 1024u; // the planner's limit (gpu::ops::MAX_MOE_EXPERTS)
var<workgroup> counts: array<atomic<u32>, MAX_EXPERTS>;
var<workgroup> starts: array<u32, MAX_EXPERTS + 1u>;

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
@group(0) @binding(6) var<storage, read> eb: array<f32>;       // expert biases (when p.bias)

// The gated activation of one gate and up value, the gate/up biases of global expert ge at
// column col added first.
fn activate(ge: u32, col: u32, g0: f32, u0: f32) -> f32 {
    var g = g0;
    var u = u0;
    if (p.bias != 0u) {
        g += eb[ge * 2u * p.inter + col];
        u += eb[ge * 2u * p.inter + p.inter + col];
    }
    if (p.act == 1u) {
        let gc = min(g, p.limit);
        let uc = clamp(u, -p.limit, p.limit);
        return (uc + 1.0) * gc / (1.0 + exp(-p.alpha * gc));
    }
    return g / (1.0 + exp(-g)) * u;
}

// The factor on grouped row `row`'s gate and up values: its slot's routing weight when the
// weight scales the expert's input (Llama-4), else 1. Linear gate/up projections without
// biases make w·(x·W) the projection of w·x.
fn input_scale(row: u32) -> f32 {
    if (p.input_scaled == 0u) {
        return 1.0;
    }
    let slot = rs[row];
    if (slot == NONE) {
        return 0.0;
    }
    return eb[slot];
}

// A down output plus global expert ge's down bias.
fn down_out(ge: u32, col: u32, v: f32) -> f32 {
    if (p.bias != 0u) {
        return v + eb[ge * p.hidden + col];
    }
    return v;
}

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
                let sc = input_scale(row);
                y[row * p.inter + col] = activate(ge, col, sc * g[4u * i + j], sc * u[4u * i + j]);
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
                y[row * p.hidden + col] = down_out(ge, col, acc[4u * i + j]);
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
        let wt = select(wts[s], 1.0, p.input_scaled != 0u);
        acc += wt * rows[sr[s] * p.hidden + c];
    }
    out[i] = out[i] + acc;
}

// vec4 variants of gate_up and down for 16-byte-aligned sizes (hidden and inter multiples of
// 4): no workgroup memory; an 8×8 workgroup covers one 32-row tile × 32 columns, each
// invocation 4 rows × 4 columns, reading its rows and weight rows as vec4 along k.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> w4: array<vec4<f32>>;

@compute @workgroup_size(8, 8)
fn gate_up_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let col0 = (wid.x * 8u + lid.x) * 4u;
    if (col0 >= p.inter) {
        return;
    }
    let row0 = wid.y * TILE + lid.y * 4u;
    let h4 = p.hidden / 4u;
    let ebase = e * 2u * p.inter * h4;
    var xr: array<u32, 4>;
    var live: array<bool, 4>;
    for (var i = 0u; i < 4u; i++) {
        let slot = rs[row0 + i];
        live[i] = slot != NONE;
        xr[i] = select(0u, (slot / p.top_k) * h4, live[i]);
    }
    var gr: array<u32, 4>;
    var ur: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let c = min(col0 + j, p.inter - 1u);
        gr[j] = ebase + c * h4;
        ur[j] = ebase + (p.inter + c) * h4;
    }
    var g: array<vec4<f32>, 4>;
    var u: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        g[i] = vec4<f32>(0.0);
        u[i] = vec4<f32>(0.0);
    }
    for (var kk = 0u; kk < h4; kk++) {
        let g0 = w4[gr[0] + kk];
        let g1 = w4[gr[1] + kk];
        let g2 = w4[gr[2] + kk];
        let g3 = w4[gr[3] + kk];
        let u0 = w4[ur[0] + kk];
        let u1 = w4[ur[1] + kk];
        let u2 = w4[ur[2] + kk];
        let u3 = w4[ur[3] + kk];
        for (var i = 0u; i < 4u; i++) {
            let xv = x4[xr[i] + kk];
            g[i] += vec4<f32>(dot(xv, g0), dot(xv, g1), dot(xv, g2), dot(xv, g3));
            u[i] += vec4<f32>(dot(xv, u0), dot(xv, u1), dot(xv, u2), dot(xv, u3));
        }
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (col < p.inter) {
                var v = 0.0;
                if (live[i]) {
                    let sc = input_scale(row0 + i);
                    v = activate(ge, col, sc * g[i][j], sc * u[i][j]);
                }
                y[(row0 + i) * p.inter + col] = v;
            }
        }
    }
}

@compute @workgroup_size(8, 8)
fn down_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ge = te[wid.y];
    if (ge == NONE || ge < p.e_first || ge >= p.e_first + p.e_count) {
        return;
    }
    let e = ge - p.e_first;
    let col0 = (wid.x * 8u + lid.x) * 4u;
    if (col0 >= p.hidden) {
        return;
    }
    let row0 = wid.y * TILE + lid.y * 4u;
    let i4 = p.inter / 4u;
    let ebase = e * p.hidden * i4;
    var wr: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        wr[j] = ebase + min(col0 + j, p.hidden - 1u) * i4;
    }
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var kk = 0u; kk < i4; kk++) {
        let w0 = w4[wr[0] + kk];
        let w1 = w4[wr[1] + kk];
        let w2 = w4[wr[2] + kk];
        let w3 = w4[wr[3] + kk];
        for (var i = 0u; i < 4u; i++) {
            let hv = x4[(row0 + i) * i4 + kk];
            acc[i] += vec4<f32>(dot(hv, w0), dot(hv, w1), dot(hv, w2), dot(hv, w3));
        }
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (col < p.hidden) {
                y[(row0 + i) * p.hidden + col] = down_out(ge, col, acc[i][j]);
            }
        }
    }
}
