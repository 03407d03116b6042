// Tiled f32 matrix product for linear layers: out[m, n] (+)= a[m, :] · w[n, :] (+ bias[n]).
// Weights are [out, in] row-major as Hugging Face stores them, so both operands are read along
// their rows. Each 16×16 workgroup computes a 64×64 output tile: the k dimension advances in
// steps of 16 with both operand tiles staged in workgroup memory, and every invocation keeps a
// 4×4 block of outputs in registers (rows ty + 16i, columns tx + 16j), so each value loaded
// from workgroup memory feeds four multiply-adds.
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

const BM: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> sa: array<f32, 1024>; // [BM][BK]
var<workgroup> sw: array<f32, 1024>; // [BN][BK]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BM;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var t = 0u; t < p.k; t += BK) {
        for (var l = 0u; l < 4u; l++) {
            let idx = li + l * 256u;
            let r = idx / BK;
            let c = idx % BK;
            let kk = t + c;
            var av = 0.0;
            if (row0 + r < p.m && kk < p.k) {
                av = a[p.a_offset + (row0 + r) * p.a_stride + kk];
            }
            sa[idx] = av;
            var wv = 0.0;
            if (col0 + r < p.n && kk < p.k) {
                wv = w[(col0 + r) * p.k + kk];
            }
            sw[idx] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, 4>;
            var wv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = sa[(lid.y + 16u * i) * BK + kk];
                wv[i] = sw[(lid.x + 16u * i) * BK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += av[i] * wv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                let o = p.out_offset + row * p.out_stride + col;
                var v = acc[i * 4u + j];
                if ((p.flags & 1u) != 0u) {
                    v += bias[col];
                }
                if ((p.flags & 2u) != 0u) {
                    v += out[o];
                }
                out[o] = v;
            }
        }
    }
}

// The same product for 16-byte-aligned operands (k, strides and offsets multiples of 4): no
// workgroup memory; each invocation reads its four rows of `a` and four rows of `w` as vec4
// along k and keeps a 4×4 block of outputs. On CPU-backed adapters (lavapipe) and GPUs with
// good L1 caching this beats staging through workgroup memory.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;

@compute @workgroup_size(8, 8)
fn matmul_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    let k4 = p.k / 4u;
    let a_stride4 = p.a_stride / 4u;
    let a_base = p.a_offset / 4u;
    // Rows past the end read row m-1 / n-1 again (in bounds) and are not written.
    var ar: array<u32, 4>;
    var wr: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        ar[i] = a_base + min(row0 + i, p.m - 1u) * a_stride4;
        wr[i] = min(col0 + i, p.n - 1u) * k4;
    }
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var kk = 0u; kk < k4; kk++) {
        let w0 = w4[wr[0] + kk];
        let w1 = w4[wr[1] + kk];
        let w2 = w4[wr[2] + kk];
        let w3 = w4[wr[3] + kk];
        for (var i = 0u; i < 4u; i++) {
            let av = a4[ar[i] + kk];
            acc[i] += vec4<f32>(dot(av, w0), dot(av, w1), dot(av, w2), dot(av, w3));
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (row < p.m && col < p.n) {
                let o = p.out_offset + row * p.out_stride + col;
                var v = acc[i][j];
                if ((p.flags & 1u) != 0u) {
                    v += bias[col];
                }
                if ((p.flags & 2u) != 0u) {
                    v += out[o];
                }
                out[o] = v;
            }
        }
    }
}
