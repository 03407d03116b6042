// Expert selection on the GPU, one invocation per token, exactly as each family routes:
// softmax or sigmoid scores; an optional per-expert bias used for selection only; optional
// group-limited routing (group score = best score, or sum of the two best); top-k by repeated
// arg-max (ties: lower index first, as the CPU reference); weights are the unbiased scores,
// renormalised if asked, times the routed scaling factor.
struct Params {
    tokens: u32,
    experts: u32,
    top_k: u32,
    sigmoid: u32,
    normalize: u32,
    has_bias: u32,
    n_group: u32,     // 0: no group limit
    topk_group: u32,
    group_sum_top2: u32,
    scaling: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> chosen: array<u32>;
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;

const MAX_E: u32 = 512u;     // per-token scores in registers (gpu::ops::MAX_ROUTER_EXPERTS)
const MAX_GROUPS: u32 = 64u; // expert groups (gpu::ops::MAX_ROUTER_GROUPS)
const NEG: f32 = -3.4e38;

@compute @workgroup_size(64)
fn route(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.tokens) {
        return;
    }
    var score: array<f32, MAX_E>;
    var choice: array<f32, MAX_E>;
    let base = t * p.experts;
    var m = NEG;
    for (var e = 0u; e < p.experts; e++) {
        m = max(m, logits[base + e]);
    }
    var sum = 0.0;
    for (var e = 0u; e < p.experts; e++) {
        let l = logits[base + e];
        if (p.sigmoid != 0u) {
            score[e] = 1.0 / (1.0 + exp(-l));
        } else {
            score[e] = exp(l - m);
            sum += score[e];
        }
    }
    for (var e = 0u; e < p.experts; e++) {
        if (p.sigmoid == 0u) {
            score[e] = score[e] / sum;
        }
        choice[e] = score[e];
        if (p.has_bias != 0u) {
            choice[e] += bias[e];
        }
    }
    if (p.n_group > 0u) {
        let per = p.experts / p.n_group;
        var gscore: array<f32, MAX_GROUPS>;
        for (var g = 0u; g < p.n_group; g++) {
            var b1 = NEG;
            var b2 = NEG;
            for (var e = g * per; e < (g + 1u) * per; e++) {
                let c = choice[e];
                if (c > b1) {
                    b2 = b1;
                    b1 = c;
                } else if (c > b2) {
                    b2 = c;
                }
            }
            gscore[g] = select(b1, b1 + b2, p.group_sum_top2 != 0u);
        }
        var keep: array<u32, MAX_GROUPS>;
        for (var g = 0u; g < p.n_group; g++) {
            keep[g] = 0u;
        }
        for (var r = 0u; r < p.topk_group; r++) {
            var best = 0u;
            var bv = NEG;
            var found = false;
            for (var g = 0u; g < p.n_group; g++) {
                if (keep[g] == 0u && (!found || gscore[g] > bv)) {
                    best = g;
                    bv = gscore[g];
                    found = true;
                }
            }
            keep[best] = 1u;
        }
        for (var e = 0u; e < p.experts; e++) {
            if (keep[e / per] == 0u) {
                choice[e] = NEG;
            }
        }
    }
    var total = 0.0;
    for (var r = 0u; r < p.top_k; r++) {
        var best = 0u;
        var bv = NEG;
        var found = false;
        for (var e = 0u; e < p.experts; e++) {
            if (choice[e] > NEG && (!found || choice[e] > bv)) {
                best = e;
                bv = choice[e];
                found = true;
            }
        }
        choice[best] = NEG;
        chosen[t * p.top_k + r] = best;
        weights[t * p.top_k + r] = score[best];
        total += score[best];
    }
    for (var r = 0u; r < p.top_k; r++) {
        var w = weights[t * p.top_k + r];
        if (p.normalize != 0u) {
            w = w / (total + 1e-20);
        }
        weights[t * p.top_k + r] = w * p.scaling;
    }
}
