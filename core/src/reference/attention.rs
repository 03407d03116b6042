//! Causal self-attention: grouped-query attention with the q/k-norm variants, and DeepSeek's
//! multi-head latent attention (MLA).

use super::ops::{
    linear, linear_bias, matmul_into, rms_norm, rms_norm_rows, softmax, Mat, Rope, View,
};
use crate::config::{Attention, ModelConfig};
use crate::schema::{Gqa, Mla};

/// Epsilon of MLA's inner norms (`q_a_layernorm`, `kv_a_layernorm`): transformers builds them
/// with the RMSNorm default rather than `rms_norm_eps`.
pub const MLA_NORM_EPS: f32 = 1e-6;

/// Where one head's queries, keys and values sit: column offsets into the q, k and v matrices.
struct HeadLayout {
    q_offset: usize,
    k_offset: usize,
    v_offset: usize,
}

/// Which earlier keys a query sees: all of them, the last `window` (a sliding window), or those
/// of its own `chunk`-sized block (Llama-4's chunked attention).
#[derive(Debug, Clone, Copy, Default)]
struct Mask {
    window: Option<usize>,
    chunk: Option<usize>,
}

impl Mask {
    /// The first key query `i` sees.
    fn first_key(self, i: usize) -> usize {
        let w = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
        let c = self.chunk.map_or(0, |c| i / c * c);
        w.max(c)
    }
}

/// Causal softmax attention, one head at a time as two matrix products:
/// `P = softmax(mask(Q_h K_hᵀ · scale))`, `O_h = P V_h`. `q`, `k`, `v` hold every head side by
/// side; `head(h)` says where head `h`'s columns start. With `sinks` (gpt-oss) head `h`'s
/// softmax has one more logit, `sinks[h]`, that takes probability and contributes no value.
#[allow(clippy::too_many_arguments)]
fn causal_attention(
    q: &Mat,
    k: &Mat,
    v: &Mat,
    heads: usize,
    qk_dim: usize,
    v_dim: usize,
    scale: f32,
    mask: Mask,
    sinks: Option<&[f32]>,
    head: impl Fn(usize) -> HeadLayout,
) -> Mat {
    let t_len = q.rows;
    let mut out = Mat::zeros(t_len, heads * v_dim);
    let mut scores = vec![0.0f32; t_len * t_len];
    for h in 0..heads {
        let l = head(h);
        matmul_into(
            View::cols_of(q, l.q_offset, qk_dim),
            View::cols_of(k, l.k_offset, qk_dim),
            true,
            &mut scores,
            0,
            t_len,
        );
        for i in 0..t_len {
            let lo = mask.first_key(i);
            let row = &mut scores[i * t_len..(i + 1) * t_len];
            row[..lo].iter_mut().for_each(|s| *s = 0.0);
            row[i + 1..].iter_mut().for_each(|s| *s = 0.0);
            let live = &mut row[lo..=i];
            live.iter_mut().for_each(|s| *s *= scale);
            match sinks {
                None => softmax(live),
                Some(s) => softmax_with_sink(live, s[h]),
            }
        }
        let p = Mat {
            rows: t_len,
            cols: t_len,
            data: std::mem::take(&mut scores),
        };
        matmul_into(
            View::cols_of(&p, 0, t_len),
            View::cols_of(v, l.v_offset, v_dim),
            false,
            &mut out.data,
            h * v_dim,
            heads * v_dim,
        );
        scores = p.data;
    }
    out
}

/// Llama-4's weightless q/k norm: `x / sqrt(mean(x²) + eps)`.
fn l2_norm(x: &mut [f32], eps: f32) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter_mut().for_each(|v| *v *= r);
}

/// Softmax over `x` and one extra logit `sink` that is then dropped (gpt-oss's sinks): the
/// probabilities of `x` sum to less than one.
fn softmax_with_sink(x: &mut [f32], sink: f32) {
    let max = x.iter().cloned().fold(sink, f32::max);
    let mut sum = (sink - max).exp();
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// Grouped-query attention of layer `layer` (its sliding window or chunk, RoPE or not, as the
/// config says).
pub fn standard(cfg: &ModelConfig, w: &Gqa<Vec<f32>>, x: &Mat, rope: &Rope, layer: usize) -> Mat {
    let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let clip = match &cfg.attention {
        Attention::Standard { clip_qkv, .. } => *clip_qkv,
        Attention::Mla(_) => None,
    };
    let mut q = linear_bias(
        x,
        &w.q,
        w.q_bias.as_deref(),
        if cfg.attn_output_gate { 2 * nh * hd } else { nh * hd },
    );
    // Qwen3-Next: each head's q_proj output is its query, then its output gate.
    let gate = cfg.attn_output_gate.then(|| {
        let mut queries = Mat::zeros(x.rows, nh * hd);
        let mut gate = Mat::zeros(x.rows, nh * hd);
        for t in 0..x.rows {
            for h in 0..nh {
                let src = &q.row(t)[h * 2 * hd..(h + 1) * 2 * hd];
                queries.row_mut(t)[h * hd..(h + 1) * hd].copy_from_slice(&src[..hd]);
                gate.row_mut(t)[h * hd..(h + 1) * hd].copy_from_slice(&src[hd..]);
            }
        }
        q = queries;
        gate
    });
    let mut k = linear_bias(x, &w.k, w.k_bias.as_deref(), nkv * hd);
    let mut v = linear_bias(x, &w.v, w.v_bias.as_deref(), nkv * hd);
    if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
        // Full width (OLMoE): the weight spans the whole projection, one norm per row. Per
        // head (Qwen3): the weight has head_dim entries, so `rms_norm` normalises each head's
        // slice on its own. The weight's length alone selects the right grouping.
        rms_norm(&mut q.data, qn, cfg.rms_norm_eps);
        rms_norm(&mut k.data, kn, cfg.rms_norm_eps);
    }
    if let Some(c) = clip {
        for m in [&mut q, &mut k, &mut v] {
            m.data.iter_mut().for_each(|x| *x = x.clamp(-c, c));
        }
    }
    let uses_rope = cfg.rope_layers[layer];
    let qk_norm = match &cfg.attention {
        Attention::Standard { qk_norm, .. } => *qk_norm,
        Attention::Mla(_) => crate::config::QkNorm::None,
    };
    for t in 0..x.rows {
        if !uses_rope {
            // Llama-4's NoPE layers: no rotation; queries cooled by the temperature instead.
            if let Some(temp) = cfg.attn_temperature {
                let s = temp.at(t);
                q.row_mut(t).iter_mut().for_each(|v| *v *= s);
            }
            continue;
        }
        for head in q.row_mut(t).chunks_exact_mut(hd) {
            rope.apply(head, t, cfg.rope_interleave);
        }
        for head in k.row_mut(t).chunks_exact_mut(hd) {
            rope.apply(head, t, cfg.rope_interleave);
        }
        if qk_norm == crate::config::QkNorm::L2AfterRope {
            for head in q.row_mut(t).chunks_exact_mut(hd).chain(k.row_mut(t).chunks_exact_mut(hd)) {
                l2_norm(head, cfg.rms_norm_eps);
            }
        }
    }
    let group = nh / nkv;
    let mut out = causal_attention(
        &q,
        &k,
        &v,
        nh,
        hd,
        hd,
        cfg.attention_scale(),
        Mask {
            window: cfg.sliding_window[layer],
            chunk: cfg.attention_chunk[layer],
        },
        w.sinks.as_deref(),
        |h| HeadLayout {
            q_offset: h * hd,
            k_offset: (h / group) * hd,
            v_offset: (h / group) * hd,
        },
    );
    if let Some(g) = gate {
        out.data.iter_mut().zip(&g.data).for_each(|(o, g)| *o *= super::ops::sigmoid(*g));
    }
    linear_bias(&out, &w.o, w.o_bias.as_deref(), x.cols)
}

/// Multi-head latent attention of one layer.
pub fn latent(cfg: &ModelConfig, w: &Mla<Vec<f32>>, x: &Mat, rope: &Rope) -> Mat {
    let Attention::Mla(c) = &cfg.attention else {
        unreachable!("latent attention weights come from an MLA config")
    };
    let (nh, nope, rd, vd) = (
        cfg.num_heads,
        c.qk_nope_head_dim,
        c.qk_rope_head_dim,
        c.v_head_dim,
    );
    let qk = nope + rd;
    let mut q = match (&w.q, &w.q_a, &w.q_a_norm, &w.q_b) {
        (Some(wq), ..) => linear(x, wq, nh * qk),
        (None, Some(wa), Some(na), Some(wb)) => {
            let r = na.len();
            let a = linear_bias(x, wa, w.q_a_bias.as_deref(), r);
            let a = rms_norm_rows(&a, na, MLA_NORM_EPS);
            linear(&a, wb, nh * qk)
        }
        _ => unreachable!("the MLA schema has q_proj or q_a_proj, q_a_layernorm and q_b_proj"),
    };
    let ckv = linear_bias(x, &w.kv_a, w.kv_a_bias.as_deref(), c.kv_lora_rank + rd);
    let latent = rms_norm_rows(
        &ckv.cols_slice(0, c.kv_lora_rank),
        &w.kv_a_norm,
        MLA_NORM_EPS,
    );
    let mut k_pe = ckv.cols_slice(c.kv_lora_rank, rd);
    let kv = linear(&latent, &w.kv_b, nh * (nope + vd));
    for t in 0..x.rows {
        rope.apply(k_pe.row_mut(t), t, c.rope_interleave);
        for h in 0..nh {
            rope.apply(
                &mut q.row_mut(t)[h * qk + nope..(h + 1) * qk],
                t,
                c.rope_interleave,
            );
        }
    }
    // Keys per head: [k_nope(h) | k_pe (shared by all heads)].
    let mut keys = Mat::zeros(x.rows, nh * qk);
    for t in 0..x.rows {
        for h in 0..nh {
            let dst = &mut keys.row_mut(t)[h * qk..(h + 1) * qk];
            dst[..nope].copy_from_slice(&kv.row(t)[h * (nope + vd)..h * (nope + vd) + nope]);
            dst[nope..].copy_from_slice(k_pe.row(t));
        }
    }
    let out = causal_attention(
        &q,
        &keys,
        &kv,
        nh,
        qk,
        vd,
        cfg.attention_scale(),
        Mask::default(),
        None,
        |h| HeadLayout {
            q_offset: h * qk,
            k_offset: h * qk,
            v_offset: h * (nope + vd) + nope,
        },
    );
    linear_bias(&out, &w.o, w.o_bias.as_deref(), x.cols)
}
