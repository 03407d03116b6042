// Expert selection for training, launched through burn's custom-kernel support (the inference
// router, with its uniform parameter block, is router.wgsl). One invocation per token: score the
// experts (softmax probability or sigmoid of the router logit, plus the selection bias), then
// pick the top k in order — larger score first, lower expert index on ties, the order `core`'s
// reference router uses — by k passes that each take the best expert ranked after the last pick.
// The chosen indices are written as f32 (exact below 2^24); the routing *weights* are gathered
// from the scores by burn's differentiable ops.
//
// info (u64 words, read as u32 pairs): [tokens, experts, top_k, scoring (0 softmax, 1 sigmoid)]

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;   // [tokens, experts]
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;     // [experts]
@group(0) @binding(2) var<storage, read_write> chosen: array<f32>;   // [tokens, top_k]
@group(0) @binding(3) var<storage, read> info: array<u32>;

const NONE: u32 = 0xffffffffu;

fn word(i: u32) -> u32 {
    return info[2u * i];
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tokens = word(0u);
    let experts = word(1u);
    let top_k = word(2u);
    let sigmoid_scoring = word(3u) == 1u;
    let t = gid.y * nwg.x * 64u + gid.x;
    if (t >= tokens) {
        return;
    }
    let row = t * experts;
    var mx = -3.4e38;
    for (var e = 0u; e < experts; e++) {
        mx = max(mx, logits[row + e]);
    }
    var sum = 0.0;
    for (var e = 0u; e < experts; e++) {
        sum += exp(logits[row + e] - mx);
    }
    var prev_v = 0.0;
    var prev_i = NONE;
    for (var j = 0u; j < top_k; j++) {
        var best_v = 0.0;
        var best_i = NONE;
        for (var e = 0u; e < experts; e++) {
            let l = logits[row + e];
            var s = exp(l - mx) / sum;
            if (sigmoid_scoring) {
                s = 1.0 / (1.0 + exp(-l));
            }
            let v = s + bias[e];
            let after = prev_i == NONE || v < prev_v || (v == prev_v && e > prev_i);
            if (after && (best_i == NONE || v > best_v)) {
                best_v = v;
                best_i = e;
            }
        }
        chosen[t * top_k + j] = f32(best_i);
        prev_v = best_v;
        prev_i = best_i;
    }
}
