// RMSNorm over consecutive groups of `width` values (a whole row, or one head's slice):
// out = w ⊙ x / sqrt(mean(x²) + eps). One workgroup per group, tree reduction in shared memory.
struct Params {
    groups: u32,
    width: u32,
    eps: f32,
    in_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let base = g * p.width;
    var s = 0.0;
    for (var i = lid.x; i < p.width; i += 64u) {
        let v = x[p.in_offset + base + i];
        s += v * v;
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(partial[0] / f32(p.width) + p.eps);
    for (var i = lid.x; i < p.width; i += 64u) {
        out[base + i] = weight[i] * (x[p.in_offset + base + i] * inv);
    }
}
