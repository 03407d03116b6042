// Tiled f32 matrix product for linear layers: out[m, n] (+)= a[m, :] · w[n, :] (+ bias[n]).
// Weights are [out, in] row-major as Hugging Face stores them, so both operands are read along
// their rows. 16×16 tiles staged in workgroup memory: each loaded value is reused 16 times.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_offset: u32,   // element offset of a[0, 0]
    a_stride: u32,   // row stride of a
    out_offset: u32, // element offset of out[0, 0]
    out_stride: u32, // row stride of out
    flags: u32,      // bit 0: add bias; bit 1: accumulate into out
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tw: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let wrow = wid.x * TILE + lid.y;
    var acc = 0.0;
    for (var t = 0u; t < p.k; t += TILE) {
        let kk = t + lid.x;
        var av = 0.0;
        if (row < p.m && kk < p.k) {
            av = a[p.a_offset + row * p.a_stride + kk];
        }
        ta[lid.y][lid.x] = av;
        var wv = 0.0;
        if (wrow < p.n && kk < p.k) {
            wv = w[wrow * p.k + kk];
        }
        tw[lid.y][lid.x] = wv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            acc += ta[lid.y][i] * tw[lid.x][i];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        let o = p.out_offset + row * p.out_stride + col;
        if ((p.flags & 1u) != 0u) {
            acc += bias[col];
        }
        if ((p.flags & 2u) != 0u) {
            acc += out[o];
        }
        out[o] = acc;
    }
}
