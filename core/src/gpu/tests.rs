//! Every kernel against a CPU reference computed inline: seeded inputs, several shapes
//! including odd sizes and sizes past one 16×16 tile, index-precise failure messages. These run
//! on whatever adapter the machine has — Mesa's lavapipe in CI — and fail, not skip, without one.

use super::ops::*;
use super::Gpu;
use crate::reference::ops::{Mat, Rope};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

pub(crate) fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new_blocking()
            .expect("a GPU adapter (CI: Mesa lavapipe, apt-get install mesa-vulkan-drivers)")
    })
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: Failed at index {i}: computed {a} vs expected {b}"
        );
    }
}

fn read(buf: &super::GpuBuffer) -> Vec<f32> {
    gpu().read_blocking(buf).unwrap()
}

#[test]
fn matmul_matches_cpu_on_odd_shapes_with_bias_strides_and_accumulation() {
    let g = gpu();
    // (m, k, n, extra columns of a, offset of a): offsets and strides that are multiples of 4
    // take the vec4 kernel, the others the tiled scalar kernel.
    let cases = [
        (1, 1, 1, 3, 2),
        (5, 7, 3, 3, 2),
        (33, 17, 40, 3, 2),
        (64, 130, 257, 3, 2),
        (1, 4, 1, 0, 0),
        (5, 8, 3, 4, 4),
        (33, 64, 41, 0, 0),
        (70, 132, 257, 4, 8),
    ];
    for (i, &(m, k, n, extra, off)) in cases.iter().enumerate() {
        let stride = k + extra;
        let a = random(m * stride + off, 10 + i as u64);
        let w = random(n * k, 20 + i as u64);
        let b = random(n, 30 + i as u64);
        let init = random(m * (n + 2), 40 + i as u64);
        let (ga, gw, gb, out) = (
            g.upload(&a),
            GpuMatrix::upload(g, n, k, &w),
            g.upload(&b),
            g.upload(&init),
        );
        let mut rec = g.encoder();
        matmul(
            &mut rec,
            &ga,
            Region {
                offset: off,
                rows: m,
                cols: k,
                stride,
            },
            &gw,
            Some(&gb),
            &out,
            Region::cols(m, n + 2, 1, n),
            true,
        );
        rec.submit();
        let got = read(&out);
        let mut want = init.clone();
        for r in 0..m {
            for c in 0..n {
                let dot: f32 = (0..k).map(|j| a[off + r * stride + j] * w[c * k + j]).sum();
                want[r * (n + 2) + 1 + c] += dot + b[c];
            }
        }
        assert_close(
            &format!("matmul {m}x{k}x{n} (stride {stride}, offset {off})"),
            &got,
            &want,
            1e-5,
        );
    }
}

#[test]
fn weights_past_the_binding_limit_are_split_and_still_exact() {
    let mut g = Gpu::new_blocking().unwrap();
    g.weight_part_bytes = 7 * 19 * 4; // 7 rows of 19 per binding
    let (m, k, n) = (9, 19, 30);
    let (a, w, b) = (random(m * k, 1), random(n * k, 2), random(n, 3));
    let gw = GpuMatrix::upload(&g, n, k, &w);
    assert_eq!(gw.parts.len(), 5);
    let (ga, gb, out) = (g.upload(&a), g.upload(&b), g.zeros(m * n));
    let mut rec = g.encoder();
    matmul(
        &mut rec,
        &ga,
        Region::dense(m, k),
        &gw,
        Some(&gb),
        &out,
        Region::dense(m, n),
        false,
    );
    rec.submit();
    let want = crate::reference::ops::linear_bias(&Mat::from_vec(m, k, a), &w, Some(&b), n);
    assert_close(
        "split matmul",
        &g.read_blocking(&out).unwrap(),
        &want.data,
        1e-5,
    );
}

#[test]
fn rms_norm_per_row_and_per_head() {
    let g = gpu();
    for (groups, width) in [(1, 1), (3, 32), (17, 8), (5, 300)] {
        let x = random(groups * width + 4, groups as u64);
        let w = random(width, 7);
        let out = g.zeros(groups * width);
        let mut rec = g.encoder();
        rms_norm(
            &mut rec,
            &g.upload(&x),
            4,
            groups,
            &g.upload(&w),
            1e-6,
            &out,
        );
        rec.submit();
        let mut want = x[4..].to_vec();
        crate::reference::ops::rms_norm(&mut want, &w, 1e-6);
        assert_close(
            &format!("rms_norm {groups}x{width}"),
            &read(&out),
            &want,
            1e-5,
        );
    }
}

#[test]
fn rope_half_and_interleaved() {
    let g = gpu();
    for (rows, heads, dim, interleaved) in [
        (1, 1, 2, false),
        (13, 3, 8, false),
        (13, 4, 4, true),
        (40, 2, 64, true),
    ] {
        let stride = heads * (dim + 3) + 5;
        let x = random(rows * stride, dim as u64);
        let buf = g.upload(&x);
        let table = Rope::new(dim, 10000.0, rows);
        let mut rec = g.encoder();
        rope(
            &mut rec,
            &buf,
            rows,
            stride,
            heads,
            5,
            dim + 3,
            dim,
            interleaved,
            &g.upload(&table.packed()),
        );
        rec.submit();
        let mut want = x.clone();
        for t in 0..rows {
            for h in 0..heads {
                let s = t * stride + 5 + h * (dim + 3);
                table.apply(&mut want[s..s + dim], t, interleaved);
            }
        }
        assert_close(
            &format!("rope {rows}x{heads}x{dim} interleaved={interleaved}"),
            &read(&buf),
            &want,
            2e-5,
        );
    }
}

/// Attention computed the plain way.
fn cpu_attention(q: &[f32], k: &[f32], v: &[f32], sinks: Option<&[f32]>, p: &AttentionParams) -> Vec<f32> {
    let mut out = vec![0.0; p.t_len as usize * p.out_stride as usize];
    for h in 0..p.heads as usize {
        let kvh = h / p.kv_group as usize;
        for i in 0..p.t_len as usize {
            let mut lo = if p.window > 0 {
                (i + 1).saturating_sub(p.window as usize)
            } else {
                0
            };
            if p.chunk > 0 {
                lo = lo.max(i / p.chunk as usize * p.chunk as usize);
            }
            let scale = if p.temp_floor > 0.0 {
                let t = crate::config::AttnTemperature {
                    floor_scale: p.temp_floor,
                    attn_scale: p.temp_scale,
                };
                p.scale * t.at(i)
            } else {
                p.scale
            };
            let qv =
                &q[i * p.q_stride as usize + h * p.q_head_step as usize..][..p.qk_dim as usize];
            let mut s: Vec<f32> = (lo..=i)
                .map(|j| {
                    let kv = &k[j * p.k_stride as usize + kvh * p.k_head_step as usize..]
                        [..p.qk_dim as usize];
                    qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            match sinks {
                None => crate::reference::ops::softmax(&mut s),
                Some(sk) => {
                    // The sink's logit joins the softmax and is dropped.
                    s.push(sk[h]);
                    crate::reference::ops::softmax(&mut s);
                    s.pop();
                }
            }
            for d in 0..p.v_dim as usize {
                let acc: f32 = (lo..=i)
                    .zip(&s)
                    .map(|(j, w)| {
                        w * v[j * p.v_stride as usize
                            + p.v_offset as usize
                            + kvh * p.v_head_step as usize
                            + d]
                    })
                    .sum();
                out[i * p.out_stride as usize + h * p.v_dim as usize + d] = acc;
            }
        }
    }
    out
}

#[test]
fn attention_gqa_windowed_chunked_mla_layouts_sinks_and_temperature() {
    let g = gpu();
    // (…, chunk, temperature floor): Llama-4's chunks and NoPE temperature at odd sizes.
    for (t, heads, group, qk, vd, window, v_offset, sinks, chunk, temp_floor) in [
        (1, 1, 1, 4, 4, 0, 0, false, 0, 0.0),
        (13, 4, 2, 8, 8, 0, 0, false, 0, 0.0),
        (70, 6, 3, 16, 16, 5, 0, false, 0, 0.0),
        (33, 4, 1, 12, 8, 0, 8, false, 0, 0.0),
        (1, 2, 1, 4, 4, 0, 0, true, 0, 0.0),
        (29, 6, 3, 8, 8, 4, 0, true, 0, 0.0),
        (37, 4, 2, 8, 8, 0, 0, false, 5, 0.0),
        (41, 5, 5, 8, 8, 0, 0, false, 0, 3.0),
        (23, 4, 2, 8, 8, 0, 0, false, 7, 4.0),
    ] {
        let kv_heads = heads / group;
        let p = AttentionParams {
            t_len: t,
            heads,
            qk_dim: qk,
            v_dim: vd,
            q_stride: heads * qk,
            k_stride: kv_heads * qk,
            v_stride: kv_heads * (vd + v_offset) + v_offset,
            out_stride: heads * vd,
            q_head_step: qk,
            kv_group: group,
            k_head_step: qk,
            v_head_step: vd + v_offset,
            v_offset,
            window,
            scale: (qk as f32).powf(-0.5),
            sinks: 0,
            chunk,
            temp_floor,
            temp_scale: 0.1,
        };
        // gpt-oss's sinks: logits around the scores' size, some dominant.
        let sink = sinks.then(|| {
            random(heads as usize, 4).iter().map(|x| 3.0 * x).collect::<Vec<f32>>()
        });
        let (q, k, v) = (
            random((t * p.q_stride) as usize, 1),
            random((t * p.k_stride) as usize, 2),
            random((t * p.v_stride) as usize, 3),
        );
        let out = g.zeros((t * p.out_stride) as usize);
        let mut rec = g.encoder();
        attention(
            &mut rec,
            &g.upload(&q),
            &g.upload(&k),
            &g.upload(&v),
            &out,
            sink.as_ref().map(|s| g.upload(s)).as_ref(),
            p,
        );
        rec.submit();
        assert_close(
            &format!("attention t={t} heads={heads} group={group} window={window} sinks={sinks} chunk={chunk} temperature floor={temp_floor}"),
            &read(&out),
            &cpu_attention(&q, &k, &v, sink.as_deref(), &p),
            1e-5,
        );
    }
}

#[test]
fn router_matches_every_family_rule() {
    use crate::config::*;
    let g = gpu();
    let softmax = |normalize| RouterConfig {
        scoring: Scoring::Softmax,
        normalize,
        routed_scaling_factor: 1.0,
        group_limit: None,
        correction_bias: false,
    };
    let cases = vec![
        (5, softmax(true), 1),
        (8, softmax(false), 2),
        (37, softmax(true), 6),
        (
            16,
            RouterConfig {
                group_limit: Some(GroupLimit {
                    n_group: 4,
                    topk_group: 2,
                    score: GroupScore::Max,
                }),
                routed_scaling_factor: 1.5,
                ..softmax(false)
            },
            3,
        ),
        (
            32,
            RouterConfig {
                scoring: Scoring::Sigmoid,
                normalize: true,
                routed_scaling_factor: 2.5,
                group_limit: Some(GroupLimit {
                    n_group: 8,
                    topk_group: 3,
                    score: GroupScore::SumTop2,
                }),
                correction_bias: true,
            },
            4,
        ),
        (
            9,
            RouterConfig {
                scoring: Scoring::Sigmoid,
                normalize: false,
                routed_scaling_factor: 1.0,
                group_limit: None,
                correction_bias: true,
            },
            2,
        ),
    ];
    for (ci, (experts, router, top_k)) in cases.into_iter().enumerate() {
        let tokens = 29;
        let logits: Vec<f32> = random(tokens * experts, 100 + ci as u64)
            .iter()
            .map(|x| x * 4.0)
            .collect();
        let bias = random(experts, 200 + ci as u64);
        let moe = MoeConfig {
            num_experts: experts,
            top_k,
            intermediate: 1,
            router: router.clone(),
            shared: None,
        };
        let (chosen, weights) = (g.zeros(tokens * top_k), g.zeros(tokens * top_k));
        let gb = g.upload(&bias);
        let mut rec = g.encoder();
        route(
            &mut rec,
            &g.upload(&logits),
            router.correction_bias.then_some(&gb),
            &chosen,
            &weights,
            RouterParams::new(tokens, &moe),
        );
        rec.submit();
        let (gc, gw) = (read(&chosen), read(&weights));
        for t in 0..tokens {
            let want = crate::reference::routing::route(
                &logits[t * experts..(t + 1) * experts],
                &router,
                top_k,
                router.correction_bias.then_some(&bias[..]),
            );
            let got: Vec<usize> = gc[t * top_k..(t + 1) * top_k]
                .iter()
                .map(|x| x.to_bits() as usize)
                .collect();
            assert_eq!(
                got, want.experts,
                "case {ci}: token {t} chose {got:?}, expected {:?}",
                want.experts
            );
            assert_close(
                &format!("case {ci} token {t} weights"),
                &gw[t * top_k..(t + 1) * top_k],
                &want.weights,
                1e-5,
            );
        }
    }
}

#[test]
fn grouped_moe_dispatch_matches_per_token_experts() {
    use crate::config::ExpertAct;
    // `oss`: gpt-oss's expert biases and clamped SwiGLU; `scaled`: Llama-4's routing weight on
    // the expert's input (the vec4 and scalar kernels, split).
    for (tokens, experts, top_k, hidden, inter, split, oss, scaled) in [
        (1, 2, 1, 8, 4, false, false, false),
        (13, 8, 2, 32, 16, false, false, false),
        (50, 12, 3, 40, 24, true, false, false),
        (7, 64, 4, 17, 33, false, false, false),
        (13, 8, 2, 32, 16, false, true, false),
        (21, 12, 3, 40, 24, true, true, false),
        (5, 6, 4, 17, 33, false, true, false),
        (13, 4, 1, 32, 16, false, false, true),
        (29, 12, 2, 40, 24, true, false, true),
        (9, 5, 2, 17, 33, false, false, true),
    ] {
        let mut owned = None;
        let g: &Gpu = if split {
            let mut g = Gpu::new_blocking().unwrap();
            g.weight_part_bytes = (3 * 2 * inter * hidden * 4) as u64; // three experts per part
            &*owned.insert(g)
        } else {
            gpu()
        };
        let x = random(tokens * hidden, 1);
        // Scaled up under `oss` so gate and up cross the clamp's limit.
        let act = if oss { ExpertAct::ClampedSwiglu { alpha: 1.702, limit: 1.5 } } else { ExpertAct::Silu };
        let gate_up: Vec<f32> =
            random(experts * 2 * inter * hidden, 2).iter().map(|v| if oss { 1.5 * v } else { *v }).collect();
        let gu_bias = random(experts * 2 * inter, 6);
        let down_bias = random(experts * hidden, 7);
        let down = random(experts * hidden * inter, 3);
        let mut r = ChaCha8Rng::seed_from_u64(4);
        let mut chosen = Vec::new();
        let mut weights = Vec::new();
        for _ in 0..tokens {
            let mut picked: Vec<u32> = Vec::new();
            while picked.len() < top_k {
                let e = r.random_range(0..experts as u32);
                if !picked.contains(&e) {
                    picked.push(e);
                }
            }
            chosen.extend(picked);
            weights.extend((0..top_k).map(|_| r.random_range(0.0f32..1.0)));
        }
        let s = MoeScratch::new(g, tokens, top_k, experts, hidden, inter);
        let gu = upload_experts(g, experts, 2 * inter, hidden, &gate_up);
        let dn = upload_experts(g, experts, hidden, inter, &down);
        if split {
            assert!(gu.parts.len() > 1 && dn.parts.len() > 1);
        }
        let init = random(tokens * hidden, 5);
        let out = g.upload(&init);
        let mut rec = g.encoder();
        rec.write(
            &s.chosen,
            &chosen
                .iter()
                .map(|c| f32::from_bits(*c))
                .collect::<Vec<_>>(),
        );
        rec.write(&s.weights, &weights);
        let (gub, db) = (g.upload(&gu_bias), g.upload(&down_bias));
        moe_experts(
            &mut rec,
            &g.upload(&x),
            tokens,
            top_k,
            experts,
            hidden,
            inter,
            &gu,
            &dn,
            &s,
            &out,
            ExpertExtras { biases: oss.then_some((&gub, &db)), act: Some(act), input_scaled: scaled },
        );
        rec.submit();
        let got = g.read_blocking(&out).unwrap();
        let mut want = init.clone();
        for t in 0..tokens {
            for j in 0..top_k {
                let w = weights[t * top_k + j];
                let scale = if scaled { w } else { 1.0 };
                let xt = Mat::from_vec(1, hidden, x[t * hidden..(t + 1) * hidden].iter().map(|v| scale * v).collect());
                let e = chosen[t * top_k + j] as usize;
                let gu_e = &gate_up[e * 2 * inter * hidden..(e + 1) * 2 * inter * hidden];
                let gb = &gu_bias[e * 2 * inter..(e + 1) * 2 * inter];
                let bias = |b: &[f32]| oss.then(|| b.to_vec());
                let gv = crate::reference::ops::linear_bias(&xt, &gu_e[..inter * hidden], bias(&gb[..inter]).as_deref(), inter);
                let uv = crate::reference::ops::linear_bias(&xt, &gu_e[inter * hidden..], bias(&gb[inter..]).as_deref(), inter);
                let hv: Vec<f32> = gv.data.iter().zip(&uv.data).map(|(g, u)| act.apply(*g, *u)).collect();
                let y = crate::reference::ops::linear_bias(
                    &Mat::from_vec(1, inter, hv),
                    &down[e * hidden * inter..(e + 1) * hidden * inter],
                    bias(&down_bias[e * hidden..(e + 1) * hidden]).as_deref(),
                    hidden,
                );
                for c in 0..hidden {
                    want[t * hidden + c] += if scaled { 1.0 } else { w } * y.data[c];
                }
            }
        }
        assert_close(
            &format!("moe tokens={tokens} experts={experts} k={top_k} split={split} gpt-oss={oss} input-scaled={scaled}"),
            &got,
            &want,
            1e-4,
        );
    }
}

#[test]
fn gpu_noise_equals_cpu_noise() {
    let g = gpu();
    for (n, seed, stream) in [
        (1usize, 0u64, 0u64),
        (13, 42, 7),
        (4099, u64::MAX - 3, 0xdead_beef_1234),
    ] {
        let src = random(n, n as u64);
        let out = g.zeros(n);
        let mut rec = g.encoder();
        add_noise(&mut rec, &g.upload(&src), &out, n, seed, stream, 0.37);
        rec.submit();
        let mut want = src.clone();
        crate::growth::noise::add_scaled_normals(seed, stream, 0.37, &mut want);
        assert_close(
            &format!("noise n={n} seed={seed}"),
            &read(&out),
            &want,
            2e-6,
        );
    }
}

#[test]
fn statistics_reductions_match_cpu() {
    let g = gpu();
    for n in [1usize, 255, 256, 70_001] {
        let x = random(n, n as u64);
        let (s1, s2) = pollster::block_on(moments(g, &g.upload(&x), n)).unwrap();
        let (w1, w2) = (
            x.iter().map(|v| *v as f64).sum::<f64>(),
            x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>(),
        );
        assert!(
            (s1 - w1).abs() < 1e-3 * (1.0 + w1.abs()) && (s2 - w2).abs() < 1e-4 * w2.max(1.0),
            "moments n={n}: ({s1}, {s2}) vs ({w1}, {w2})"
        );
        let h = pollster::block_on(histogram(g, &g.upload(&x), n, 10, -1.0, 1.0)).unwrap();
        let mut want = vec![0u32; 10];
        for v in &x {
            want[(((v + 1.0) / 2.0 * 10.0) as usize).min(9)] += 1;
        }
        assert_eq!(h, want, "histogram n={n}");
    }
    let (rows, len) = (6, 37);
    let mut x = random(rows * len, 9);
    x.copy_within(0..len, 3 * len); // rows 0 and 3 are twins
    let m = GpuMatrix::upload(g, rows, len, &x);
    let c = pollster::block_on(cosine_similarity(g, &m)).unwrap();
    for i in 0..rows {
        for j in 0..rows {
            let (a, b) = (&x[i * len..(i + 1) * len], &x[j * len..(j + 1) * len]);
            let dot: f32 = a.iter().zip(b).map(|(p, q)| p * q).sum();
            let want = dot
                / (a.iter().map(|v| v * v).sum::<f32>() * b.iter().map(|v| v * v).sum::<f32>())
                    .sqrt();
            assert!(
                (c[i * rows + j] - want).abs() < 1e-5,
                "cosine ({i},{j}): computed {} vs expected {want}",
                c[i * rows + j]
            );
        }
    }
    assert!((c[3] - 1.0).abs() < 1e-6);
}
