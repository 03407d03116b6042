// Small element-wise kernels of the forward pass. Every entry point covers `n` items with a
// 2-D grid of 64-wide workgroups (index = (gid.y · groups.x) · 64 + gid.x).
struct Params {
    n: u32,
    a: u32,  // meaning depends on the entry point (see each)
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: f32,
    g: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 64u + gid.x;
}

// dst[t, :] = table[token[t] - b, :] for tokens in this table part's rows b..b + c — src holds
// the token ids (u32 bits), a = hidden size. Tables past the binding limit come in parts.
@group(0) @binding(3) var<storage, read> table: array<f32>;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let t = i / p.a;
    let col = i % p.a;
    let tok = bitcast<u32>(src[t]);
    if (tok >= p.b && tok < p.b + p.c) {
        dst[i] = table[(tok - p.b) * p.a + col];
    }
}

// dst += src
@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    dst[i] = dst[i] + src[i];
}

// Copy a strided block: for item i = (row, col) of a rows × a-wide block,
// dst[row * c + d + col] = src[row * b + e + col].
@compute @workgroup_size(64)
fn copy_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let row = i / p.a;
    let col = i % p.a;
    dst[row * p.c + p.d + col] = src[row * p.b + p.e + col];
}

// dst = silu(dst) * src (SwiGLU: dst holds the gate projection, src the up projection)
@compute @workgroup_size(64)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let g = dst[i];
    dst[i] = g / (1.0 + exp(-g)) * src[i];
}

// dst = clamp(dst, -f, f)
@compute @workgroup_size(64)
fn clamp_abs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    dst[i] = clamp(dst[i], -p.f, p.f);
}

// dst[t, :] *= sigmoid(src[t]) for rows of width a (Qwen2-MoE's shared-expert gate).
@compute @workgroup_size(64)
fn scale_rows_sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let g = src[i / p.a];
    dst[i] = dst[i] / (1.0 + exp(-g));
}
