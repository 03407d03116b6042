// Growth's "copy with Gaussian noise": out[i] = src[i] + scale · z_i, where z_i is the same
// standard normal the CPU draws (core/src/growth/noise.rs): Philox4x32-10 keyed by the seed,
// counter (i / 4, stream), Box–Muller with the same branch-free ln and sin/cos polynomials.
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// High 32 bits of a 32×32-bit product from 16-bit halves (WGSL has no 64-bit integers).
fn mulhi(a: u32, b: u32) -> u32 {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let hl = ah * bl;
    let lh = al * bh;
    let hh = ah * bh;
    let t = (ll >> 16u) + (hl & 0xffffu) + (lh & 0xffffu);
    return hh + (hl >> 16u) + (lh >> 16u) + (t >> 16u);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let hi0 = mulhi(0xD2511F53u, c.x);
        let lo0 = 0xD2511F53u * c.x;
        let hi1 = mulhi(0xCD9E8D57u, c.z);
        let lo1 = 0xCD9E8D57u * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

fn uniform01(x: u32) -> f32 {
    return (f32(x >> 8u) + 1.0) * (1.0 / 16777216.0);
}

fn ln_unit(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421356) {
        m = m * 0.5;
        e = e + 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0)))));
    return f32(e) * 0.693147182 + series;
}

fn sin_cos_turns(u: f32) -> vec2<f32> {
    let q = i32(u * 4.0 + 0.5);
    let a = (u - f32(q) * 0.25) * 6.28318548;
    let a2 = a * a;
    let s = a * (1.0 - a2 / 6.0 * (1.0 - a2 / 20.0 * (1.0 - a2 / 42.0 * (1.0 - a2 / 72.0))));
    let c = 1.0 - a2 / 2.0 * (1.0 - a2 / 12.0 * (1.0 - a2 / 30.0 * (1.0 - a2 / 56.0)));
    let swap = (q & 1) == 1;
    let x = select(s, c, swap);
    let y = select(c, s, swap);
    let sin_sign = select(1.0, -1.0, (q & 2) == 2);
    let cos_sign = select(1.0, -1.0, ((q + 1) & 2) == 2);
    return vec2<f32>(x * sin_sign, y * cos_sign);
}

// One invocation per block of four elements.
@compute @workgroup_size(64)
fn add_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.y * nwg.x * 64u + gid.x;
    if (j * 4u >= p.n) {
        return;
    }
    let r = philox(vec4<u32>(j, 0u, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    var z: array<f32, 4>;
    for (var k = 0u; k < 2u; k++) {
        let radius = sqrt(-2.0 * ln_unit(uniform01(r[2u * k])));
        let sc = sin_cos_turns(uniform01(r[2u * k + 1u]));
        z[2u * k] = radius * sc.y;
        z[2u * k + 1u] = radius * sc.x;
    }
    for (var k = 0u; k < 4u; k++) {
        let i = j * 4u + k;
        if (i < p.n) {
            out[i] = src[i] + p.scale * z[k];
        }
    }
}
