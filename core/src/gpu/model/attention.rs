//! Attention on the device, in its two forms: grouped-query attention (q/k norms, clipping,
//! sliding windows) and DeepSeek's multi-head latent attention. Each projects, rotates with the
//! pass's RoPE table, runs the attention kernel and adds `o_proj`'s output into the residual.

use super::Pass;
use crate::config::{Attention, QkNorm};
use crate::gpu::context::{GpuBuffer, Recorder};
use crate::gpu::ops::*;
use crate::reference::attention::MLA_NORM_EPS;
use crate::schema::{Gqa, Mla};

impl Pass<'_, '_> {
    /// Grouped-query attention of layer `layer`, added into the residual stream `x`.
    pub(super) fn standard_attention(
        &self,
        rec: &mut Recorder,
        w: &Gqa<GpuMatrix>,
        normed: &GpuBuffer,
        x: &GpuBuffer,
        layer: usize,
    ) {
        let (gpu, cfg, t) = (self.gpu, self.cfg, self.t);
        let Attention::Standard {
            qk_norm, clip_qkv, ..
        } = &cfg.attention
        else {
            unreachable!("standard attention weights come from a standard-attention config")
        };
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let uses_rope = cfg.rope_layers[layer];
        let mut qb = self.project(rec, normed, &w.q, w.q_bias.as_ref());
        let mut kb = self.project(rec, normed, &w.k, w.k_bias.as_ref());
        let vb = self.project(rec, normed, &w.v, w.v_bias.as_ref());
        if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
            // Per head: the weight has head_dim entries, so each head is one group; full
            // width: each row is one group.
            let (qg, kg) = match qk_norm {
                QkNorm::FullWidth => (t, t),
                _ => (t * nh, t * nkv),
            };
            let (qn_out, kn_out) = (gpu.zeros(t * nh * hd), gpu.zeros(t * nkv * hd));
            rms_norm(rec, &qb, 0, qg, qn.vector(), cfg.rms_norm_eps, &qn_out);
            rms_norm(rec, &kb, 0, kg, kn.vector(), cfg.rms_norm_eps, &kn_out);
            qb = qn_out;
            kb = kn_out;
        }
        if let Some(c) = clip_qkv {
            clamp_abs(rec, &qb, t * nh * hd, *c);
            clamp_abs(rec, &kb, t * nkv * hd, *c);
            clamp_abs(rec, &vb, t * nkv * hd, *c);
        }
        // The rotary part of each head (all of it unless the family rotates a part); none on
        // Llama-4's NoPE layers.
        let rd = cfg.rotary_dim;
        if uses_rope {
            let il = cfg.rope_interleave;
            rope(rec, &qb, t, nh * hd, nh, 0, hd, rd, il, &self.rope);
            rope(rec, &kb, t, nkv * hd, nkv, 0, hd, rd, il, &self.rope);
            if *qk_norm == QkNorm::L2AfterRope {
                // Llama-4's weightless per-head norm after RoPE: an RMSNorm with unit weight.
                let ones = gpu.upload(&vec![1.0; hd]);
                let (qn_out, kn_out) = (gpu.zeros(t * nh * hd), gpu.zeros(t * nkv * hd));
                rms_norm(rec, &qb, 0, t * nh, &ones, cfg.rms_norm_eps, &qn_out);
                rms_norm(rec, &kb, 0, t * nkv, &ones, cfg.rms_norm_eps, &kn_out);
                qb = qn_out;
                kb = kn_out;
            }
        }
        let temp = cfg.attn_temperature.filter(|_| !uses_rope);
        let out = gpu.zeros(t * nh * hd);
        let p = AttentionParams {
            t_len: t as u32,
            heads: nh as u32,
            qk_dim: hd as u32,
            v_dim: hd as u32,
            q_stride: (nh * hd) as u32,
            k_stride: (nkv * hd) as u32,
            v_stride: (nkv * hd) as u32,
            out_stride: (nh * hd) as u32,
            q_head_step: hd as u32,
            kv_group: (nh / nkv) as u32,
            k_head_step: hd as u32,
            v_head_step: hd as u32,
            v_offset: 0,
            window: cfg.sliding_window[layer].unwrap_or(0) as u32,
            scale: cfg.attention_scale(),
            sinks: 0,
            chunk: cfg.attention_chunk[layer].unwrap_or(0) as u32,
            temp_floor: temp.map_or(0.0, |t| t.floor_scale),
            temp_scale: temp.map_or(0.0, |t| t.attn_scale),
        };
        attention(rec, &qb, &kb, &vb, &out, w.sinks.as_ref().map(GpuMatrix::vector), p);
        self.linear(rec, &out, &w.o, w.o_bias.as_ref(), x, true);
    }

    /// Multi-head latent attention, added into the residual stream `x`.
    pub(super) fn latent_attention(
        &self,
        rec: &mut Recorder,
        w: &Mla<GpuMatrix>,
        normed: &GpuBuffer,
        x: &GpuBuffer,
    ) {
        let (gpu, cfg, t) = (self.gpu, self.cfg, self.t);
        let Attention::Mla(m) = &cfg.attention else {
            unreachable!("latent attention weights come from an MLA config")
        };
        let nh = cfg.num_heads;
        let (nope, rd, vd, r) = (
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
            m.kv_lora_rank,
        );
        let qk = nope + rd;
        let qb = match (&w.q, &w.q_a, &w.q_a_norm, &w.q_b) {
            (Some(wq), ..) => self.project(rec, normed, wq, None),
            (None, Some(wa), Some(na), Some(wb)) => {
                let qa = self.project(rec, normed, wa, w.q_a_bias.as_ref());
                let qa_n = gpu.zeros(t * wa.rows);
                rms_norm(rec, &qa, 0, t, na.vector(), MLA_NORM_EPS, &qa_n);
                self.project(rec, &qa_n, wb, None)
            }
            _ => unreachable!("the MLA schema has q_proj or q_a_proj, q_a_layernorm and q_b_proj"),
        };
        let ckv = self.project(rec, normed, &w.kv_a, w.kv_a_bias.as_ref());
        let (lat, lat_n) = (gpu.zeros(t * r), gpu.zeros(t * r));
        copy_cols(rec, &ckv, r + rd, 0, &lat, r, 0, t, r);
        rms_norm(rec, &lat, 0, t, w.kv_a_norm.vector(), MLA_NORM_EPS, &lat_n);
        let kv = self.project(rec, &lat_n, &w.kv_b, None);
        rope(rec, &ckv, t, r + rd, 1, r, rd, rd, m.rope_interleave, &self.rope);
        rope(rec, &qb, t, nh * qk, nh, nope, qk, rd, m.rope_interleave, &self.rope);
        // Keys per head: [k_nope(h) | k_pe (shared by all heads)].
        let keys = gpu.zeros(t * nh * qk);
        for head in 0..nh {
            copy_cols(
                rec,
                &kv,
                nh * (nope + vd),
                head * (nope + vd),
                &keys,
                nh * qk,
                head * qk,
                t,
                nope,
            );
            copy_cols(rec, &ckv, r + rd, r, &keys, nh * qk, head * qk + nope, t, rd);
        }
        let out = gpu.zeros(t * nh * vd);
        let p = AttentionParams {
            t_len: t as u32,
            heads: nh as u32,
            qk_dim: qk as u32,
            v_dim: vd as u32,
            q_stride: (nh * qk) as u32,
            k_stride: (nh * qk) as u32,
            v_stride: (nh * (nope + vd)) as u32,
            out_stride: (nh * vd) as u32,
            q_head_step: qk as u32,
            kv_group: 1,
            k_head_step: qk as u32,
            v_head_step: (nope + vd) as u32,
            v_offset: nope as u32,
            window: 0,
            scale: cfg.attention_scale(),
            sinks: 0,
            chunk: 0,
            temp_floor: 0.0,
            temp_scale: 0.0,
        };
        attention(rec, &qb, &keys, &kv, &out, None, p);
        self.linear(rec, &out, &w.o, w.o_bias.as_ref(), x, true);
    }
}
