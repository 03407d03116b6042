//! Qwen3-Next's Gated DeltaNet on the CPU: linear attention with a delta-rule state per value
//! head, computed token by token (transformers' `torch_recurrent_gated_delta_rule`; its chunked
//! form, which transformers runs on a whole prompt, is the same sum regrouped).

use super::ops::{linear, sigmoid, silu, Mat};
use crate::config::{LinearAttention, ModelConfig};
use crate::schema::DeltaNet;

/// `ln(1 + e^x)`, as torch's softplus (linear above 20).
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// `x / sqrt(Σ x² + 1e-6)`: the FLA library's l2norm that transformers mirrors.
fn l2norm(x: &mut [f32]) {
    let s: f32 = x.iter().map(|v| v * v).sum();
    let r = 1.0 / (s + 1e-6).sqrt();
    x.iter_mut().for_each(|v| *v *= r);
}

/// Qwen3-Next's grouped projections: per key head `in_qkvz` holds q, k, then its value heads'
/// v and z, and `in_ba` its value heads' b, then a. Gathered into the convolution's channels
/// `[q | k | v]` and z, b, a by value head.
fn grouped_projections(la: &LinearAttention, x: &Mat, w_qkvz: &[f32], w_ba: &[f32]) -> (Mat, Mat, Mat, Mat) {
    let (nk, nv, dk, dv) = (la.key_heads, la.value_heads, la.key_head_dim, la.value_head_dim);
    let r = nv / nk;
    let (kd, vd, cd) = (la.key_dim(), la.value_dim(), la.conv_dim());
    let t_len = x.rows;
    let qkvz = linear(x, w_qkvz, 2 * kd + 2 * vd);
    let ba = linear(x, w_ba, 2 * nv);
    let mut mixed = Mat::zeros(t_len, cd);
    let mut z = Mat::zeros(t_len, vd);
    let (mut b, mut a) = (Mat::zeros(t_len, nv), Mat::zeros(t_len, nv));
    for t in 0..t_len {
        let (src, sba) = (qkvz.row(t), ba.row(t));
        for g in 0..nk {
            let base = g * (2 * dk + 2 * r * dv);
            let m = mixed.row_mut(t);
            m[g * dk..(g + 1) * dk].copy_from_slice(&src[base..base + dk]);
            m[kd + g * dk..kd + (g + 1) * dk].copy_from_slice(&src[base + dk..base + 2 * dk]);
            let v0 = base + 2 * dk;
            m[2 * kd + g * r * dv..2 * kd + (g + 1) * r * dv].copy_from_slice(&src[v0..v0 + r * dv]);
            z.row_mut(t)[g * r * dv..(g + 1) * r * dv]
                .copy_from_slice(&src[v0 + r * dv..v0 + 2 * r * dv]);
            b.row_mut(t)[g * r..(g + 1) * r].copy_from_slice(&sba[g * 2 * r..g * 2 * r + r]);
            a.row_mut(t)[g * r..(g + 1) * r].copy_from_slice(&sba[g * 2 * r + r..(g + 1) * 2 * r]);
        }
    }
    (mixed, z, b, a)
}

/// One Gated DeltaNet layer over `x [T, H]` → `[T, H]`.
pub fn gated_delta_net(cfg: &ModelConfig, w: &DeltaNet<Vec<f32>>, x: &Mat) -> Mat {
    let la = cfg
        .linear_attention
        .expect("a DeltaNet layer comes from a config with linear attention");
    let (nk, nv, dk, dv, kern) = (
        la.key_heads,
        la.value_heads,
        la.key_head_dim,
        la.value_head_dim,
        la.conv_kernel,
    );
    let r = nv / nk;
    let (kd, vd, cd) = (la.key_dim(), la.value_dim(), la.conv_dim());
    let t_len = x.rows;
    let (mixed, z, b, a) = match (&w.in_qkvz, &w.in_ba, &w.in_qkv, &w.in_z, &w.in_b, &w.in_a) {
        (Some(qkvz), Some(ba), ..) => grouped_projections(&la, x, qkvz, ba),
        (_, _, Some(qkv), Some(wz), Some(wb), Some(wa)) => (
            linear(x, qkv, cd),
            linear(x, wz, vd),
            linear(x, wb, nv),
            linear(x, wa, nv),
        ),
        _ => unreachable!("the DeltaNet schema has the grouped or the split projections"),
    };
    // Causal depthwise convolution (weight [C, 1, K], the last tap on the current token), SiLU.
    let mut conv = Mat::zeros(t_len, cd);
    for t in 0..t_len {
        for c in 0..cd {
            let mut s = 0.0;
            for j in 0..kern {
                if let Some(src_t) = (t + j + 1).checked_sub(kern) {
                    s += w.conv[c * kern + j] * mixed.data[src_t * cd + c];
                }
            }
            conv.data[t * cd + c] = silu(s);
        }
    }
    // The recurrence, one state [dk, dv] per value head.
    let mut state = vec![0f32; nv * dk * dv];
    let mut out = Mat::zeros(t_len, vd);
    let scale = 1.0 / (dk as f32).sqrt();
    for t in 0..t_len {
        let row = conv.row(t);
        let mut q: Vec<f32> = row[..kd].to_vec();
        let mut k: Vec<f32> = row[kd..2 * kd].to_vec();
        for h in 0..nk {
            l2norm(&mut q[h * dk..(h + 1) * dk]);
            l2norm(&mut k[h * dk..(h + 1) * dk]);
        }
        q.iter_mut().for_each(|v| *v *= scale);
        let v = &row[2 * kd..];
        for h in 0..nv {
            let kh = h / r;
            let (qh, kh_) = (&q[kh * dk..(kh + 1) * dk], &k[kh * dk..(kh + 1) * dk]);
            let vh = &v[h * dv..(h + 1) * dv];
            let decay = (-w.a_log[h].exp() * softplus(a.data[t * nv + h] + w.dt_bias[h])).exp();
            let beta = sigmoid(b.data[t * nv + h]);
            let s = &mut state[h * dk * dv..(h + 1) * dk * dv];
            s.iter_mut().for_each(|x| *x *= decay);
            for j in 0..dv {
                let mem: f32 = (0..dk).map(|i| s[i * dv + j] * kh_[i]).sum();
                let delta = (vh[j] - mem) * beta;
                for i in 0..dk {
                    s[i * dv + j] += kh_[i] * delta;
                }
            }
            let o = &mut out.row_mut(t)[h * dv..(h + 1) * dv];
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = (0..dk).map(|i| s[i * dv + j] * qh[i]).sum();
            }
        }
    }
    // The gated RMSNorm per value head: norm(o) · w · silu(z).
    for t in 0..t_len {
        for h in 0..nv {
            let o = &mut out.row_mut(t)[h * dv..(h + 1) * dv];
            let ms = o.iter().map(|v| v * v).sum::<f32>() / dv as f32;
            let inv = 1.0 / (ms + cfg.rms_norm_eps).sqrt();
            let zr = &z.row(t)[h * dv..(h + 1) * dv];
            for j in 0..dv {
                o[j] = o[j] * inv * w.norm[j] * silu(zr[j]);
            }
        }
    }
    linear(&out, &w.out, cfg.hidden_size)
}
