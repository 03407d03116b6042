//! Causal self-attention: grouped-query attention with the q/k-norm variants, and DeepSeek's
//! multi-head latent attention (MLA).

use super::ops::{
    linear, linear_bias, matmul_into, rms_norm, rms_norm_rows, softmax, Mat, Rope, View,
};
use crate::config::{MlaConfig, QkNorm};

/// Epsilon of MLA's inner norms (`q_a_layernorm`, `kv_a_layernorm`): transformers builds them
/// with the RMSNorm default rather than `rms_norm_eps`.
pub const MLA_NORM_EPS: f32 = 1e-6;

pub struct StandardAttention {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub o: Vec<f32>,
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    pub o_bias: Option<Vec<f32>>,
    pub qk_norm: QkNorm,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub clip_qkv: Option<f32>,
    pub eps: f32,
}

pub struct LatentAttention {
    pub cfg: MlaConfig,
    pub num_heads: usize,
    pub q: Option<Vec<f32>>,
    pub q_a: Option<Vec<f32>>,
    pub q_a_bias: Option<Vec<f32>>,
    pub q_a_norm: Option<Vec<f32>>,
    pub q_b: Option<Vec<f32>>,
    pub kv_a: Vec<f32>,
    pub kv_a_bias: Option<Vec<f32>>,
    pub kv_a_norm: Vec<f32>,
    pub kv_b: Vec<f32>,
    pub o: Vec<f32>,
    pub o_bias: Option<Vec<f32>>,
}

/// Where one head's queries, keys and values sit: column offsets into the q, k and v matrices.
struct HeadLayout {
    q_offset: usize,
    k_offset: usize,
    v_offset: usize,
}

/// Causal softmax attention, one head at a time as two matrix products:
/// `P = softmax(mask(Q_h K_hᵀ · scale))`, `O_h = P V_h`. `q`, `k`, `v` hold every head side by
/// side; `head(h)` says where head `h`'s columns start.
#[allow(clippy::too_many_arguments)]
fn causal_attention(
    q: &Mat,
    k: &Mat,
    v: &Mat,
    heads: usize,
    qk_dim: usize,
    v_dim: usize,
    scale: f32,
    window: Option<usize>,
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
            let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
            let row = &mut scores[i * t_len..(i + 1) * t_len];
            row[..lo].iter_mut().for_each(|s| *s = 0.0);
            row[i + 1..].iter_mut().for_each(|s| *s = 0.0);
            let live = &mut row[lo..=i];
            live.iter_mut().for_each(|s| *s *= scale);
            softmax(live);
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

impl StandardAttention {
    pub fn forward(&self, x: &Mat, rope: &Rope, window: Option<usize>) -> Mat {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let mut q = linear_bias(x, &self.q, self.q_bias.as_deref(), nh * hd);
        let mut k = linear_bias(x, &self.k, self.k_bias.as_deref(), nkv * hd);
        let mut v = linear_bias(x, &self.v, self.v_bias.as_deref(), nkv * hd);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            // Full width (OLMoE): the weight spans the whole projection, one norm per row. Per
            // head (Qwen3): the weight has head_dim entries, so `rms_norm` normalises each head's
            // slice on its own. The weight's length alone selects the right grouping.
            debug_assert!(self.qk_norm != QkNorm::None);
            rms_norm(&mut q.data, qn, self.eps);
            rms_norm(&mut k.data, kn, self.eps);
        }
        if let Some(c) = self.clip_qkv {
            for m in [&mut q, &mut k, &mut v] {
                m.data.iter_mut().for_each(|x| *x = x.clamp(-c, c));
            }
        }
        for t in 0..x.rows {
            for h in 0..nh {
                rope.apply(&mut q.row_mut(t)[h * hd..(h + 1) * hd], t, false);
            }
            for h in 0..nkv {
                rope.apply(&mut k.row_mut(t)[h * hd..(h + 1) * hd], t, false);
            }
        }
        let group = nh / nkv;
        let out = causal_attention(
            &q,
            &k,
            &v,
            nh,
            hd,
            hd,
            (hd as f32).powf(-0.5),
            window,
            |h| HeadLayout {
                q_offset: h * hd,
                k_offset: (h / group) * hd,
                v_offset: (h / group) * hd,
            },
        );
        linear_bias(&out, &self.o, self.o_bias.as_deref(), x.cols)
    }
}

impl LatentAttention {
    pub fn forward(&self, x: &Mat, rope: &Rope) -> Mat {
        let c = &self.cfg;
        let (nh, nope, rd, vd) = (
            self.num_heads,
            c.qk_nope_head_dim,
            c.qk_rope_head_dim,
            c.v_head_dim,
        );
        let qk = nope + rd;
        let mut q = match (&self.q, &self.q_a) {
            (Some(wq), _) => linear(x, wq, nh * qk),
            (None, Some(wa)) => {
                let r = c.q_lora_rank.unwrap_or(0);
                let a = linear_bias(x, wa, self.q_a_bias.as_deref(), r);
                let a = rms_norm_rows(&a, self.q_a_norm.as_deref().unwrap_or(&[]), MLA_NORM_EPS);
                linear(&a, self.q_b.as_deref().unwrap_or(&[]), nh * qk)
            }
            (None, None) => unreachable!("MLA weights are loaded with q_proj or q_a_proj"),
        };
        let ckv = linear_bias(
            x,
            &self.kv_a,
            self.kv_a_bias.as_deref(),
            c.kv_lora_rank + rd,
        );
        let latent = rms_norm_rows(
            &ckv.cols_slice(0, c.kv_lora_rank),
            &self.kv_a_norm,
            MLA_NORM_EPS,
        );
        let mut k_pe = ckv.cols_slice(c.kv_lora_rank, rd);
        let kv = linear(&latent, &self.kv_b, nh * (nope + vd));
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
            (qk as f32).powf(-0.5),
            None,
            |h| HeadLayout {
                q_offset: h * qk,
                k_offset: h * qk,
                v_offset: h * (nope + vd) + nope,
            },
        );
        linear_bias(&out, &self.o, self.o_bias.as_deref(), x.cols)
    }
}
