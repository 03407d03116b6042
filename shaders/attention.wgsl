// Causal softmax attention. One workgroup per (query position, head): scores over the allowed
// keys in workgroup memory, max and sum by tree reduction, then the weighted sum of values.
// Head layouts are explicit offsets and strides, so one kernel serves grouped-query attention
// (several query heads share a KV head) and MLA (per-head keys with a shared rotary part).
// With `sinks` set, head h's softmax has one more logit, sink[h], that carries no value
// (gpt-oss): it joins the max and the sum only. With `chunk` set a query sees only the keys of
// its own chunk-sized block (Llama-4's chunked attention); with `temp_floor` set each query's
// scores are scaled by Llama-4's attention temperature 1 + temp_scale·ln(1 + ⌊(i+1)/temp_floor⌋).
struct Params {
    t_len: u32,
    heads: u32,
    qk_dim: u32,
    v_dim: u32,
    q_stride: u32,   // row strides
    k_stride: u32,
    v_stride: u32,
    out_stride: u32,
    q_head_step: u32, // column step per query head
    kv_group: u32,    // query heads per KV head
    k_head_step: u32, // column step per KV head
    v_head_step: u32,
    v_offset: u32,    // column of head 0's value
    window: u32,      // 0: full causal
    scale: f32,
    sinks: u32,       // 1: sink[h] joins each softmax
    chunk: u32,       // 0: no chunks
    temp_floor: f32,  // 0: no temperature
    temp_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> sink: array<f32>;

// Keys per query are bounded by the workgroup-memory budget WebGPU guarantees (16 KiB).
const MAX_T: u32 = 2048u; // longest sequence (gpu::ops::MAX_ATTENTION_TOKENS)
var<workgroup> scores: array<f32, MAX_T>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.x;
    let h = wid.y;
    var lo = 0u;
    if (p.window > 0u && i + 1u > p.window) {
        lo = i + 1u - p.window;
    }
    if (p.chunk > 0u) {
        lo = max(lo, (i / p.chunk) * p.chunk);
    }
    var scale = p.scale;
    if (p.temp_floor > 0.0) {
        scale *= 1.0 + p.temp_scale * log(1.0 + floor((f32(i) + 1.0) / p.temp_floor));
    }
    let kvh = h / p.kv_group;
    let qbase = i * p.q_stride + h * p.q_head_step;
    var local_max = -3.4e38;
    for (var j = lo + lid.x; j <= i; j += 64u) {
        let kbase = j * p.k_stride + kvh * p.k_head_step;
        var s = 0.0;
        for (var d = 0u; d < p.qk_dim; d++) {
            s += q[qbase + d] * k[kbase + d];
        }
        s *= scale;
        scores[j - lo] = s;
        local_max = max(local_max, s);
    }
    red[lid.x] = local_max;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            red[lid.x] = max(red[lid.x], red[lid.x + stride]);
        }
        workgroupBarrier();
    }
    var m = red[0];
    if (p.sinks != 0u) {
        m = max(m, sink[h]);
    }
    workgroupBarrier();
    var local_sum = 0.0;
    for (var j = lo + lid.x; j <= i; j += 64u) {
        let e = exp(scores[j - lo] - m);
        scores[j - lo] = e;
        local_sum += e;
    }
    red[lid.x] = local_sum;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            red[lid.x] += red[lid.x + stride];
        }
        workgroupBarrier();
    }
    var total = red[0];
    if (p.sinks != 0u) {
        total += exp(sink[h] - m);
    }
    let inv = 1.0 / total;
    let vcol = p.v_offset + kvh * p.v_head_step;
    for (var d = lid.x; d < p.v_dim; d += 64u) {
        var acc = 0.0;
        for (var j = lo; j <= i; j++) {
            acc += scores[j - lo] * v[j * p.v_stride + vcol + d];
        }
        out[i * p.out_stride + h * p.v_dim + d] = acc * inv;
    }
}
