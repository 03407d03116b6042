// Reductions for checkpoint statistics: sums and sums of squares (→ mean, std, Frobenius
// norm), histograms, and cosine similarity from a Gram matrix (expert-pair similarity).
struct Params {
    n: u32,
    bins: u32,
    lo: f32,
    hi: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

// partial[2g], partial[2g+1] = Σx, Σx² over workgroup g's strided share of x.
@compute @workgroup_size(256)
fn moments(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.x;
    let stride = nwg.x * 256u;
    var a = 0.0;
    var b = 0.0;
    for (var i = g * 256u + lid.x; i < p.n; i += stride) {
        let v = x[i];
        a += v;
        b += v * v;
    }
    s1[lid.x] = a;
    s2[lid.x] = b;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid.x < st) {
            s1[lid.x] += s1[lid.x + st];
            s2[lid.x] += s2[lid.x + st];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partial[2u * g] = s1[0];
        partial[2u * g + 1u] = s2[0];
    }
}

@group(0) @binding(3) var<storage, read_write> counts: array<atomic<u32>>;

// counts[bin] += 1 for each x in [lo, hi]; values outside are clamped to the end bins.
@compute @workgroup_size(256)
fn histogram(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.n) {
        return;
    }
    let f = (x[i] - p.lo) / (p.hi - p.lo) * f32(p.bins);
    let b = u32(clamp(f, 0.0, f32(p.bins) - 1.0));
    atomicAdd(&counts[b], 1u);
}

// partial[i, j] = x[i, j] / sqrt(x[i, i] · x[j, j]) for an n × n Gram matrix x (n = p.bins).
@compute @workgroup_size(64)
fn cosine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.bins * p.bins) {
        return;
    }
    let r = i / p.bins;
    let c = i % p.bins;
    let d = sqrt(x[r * p.bins + r] * x[c * p.bins + c]);
    partial[i] = select(0.0, x[i] / d, d > 0.0);
}

// partial[row] = Σ x[row, :]² for rows of length p.n (one workgroup per row; p.bins = rows).
@compute @workgroup_size(256)
fn row_sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.bins) {
        return;
    }
    var a = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        let v = x[row * p.n + i];
        a += v * v;
    }
    s1[lid.x] = a;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid.x < st) {
            s1[lid.x] += s1[lid.x + st];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partial[row] = s1[0];
    }
}
