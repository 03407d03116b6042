//! The full forward pass on the GPU, for every supported family: the same computation as
//! [`crate::reference::ReferenceModel`], recorded into one command buffer — embeddings, norms,
//! attention (GQA with q/k norms, or MLA), routing with top-k on the device, grouped experts,
//! shared experts, LM head — submitted once and read back once.

use super::context::{Gpu, GpuBuffer, Recorder};
use super::ops::*;
use crate::checkpoint::Checkpoint;
use crate::config::{Attention, MlpKind, ModelConfig, QkNorm};
use crate::error::{Error, Result};
use crate::reference::attention::MLA_NORM_EPS;
use crate::reference::Mat;
use crate::roles::{AttnRole as A, LayerRole as L, Proj, Role};

enum GpuAttention {
    Standard {
        q: GpuMatrix,
        k: GpuMatrix,
        v: GpuMatrix,
        o: GpuMatrix,
        q_bias: Option<GpuBuffer>,
        k_bias: Option<GpuBuffer>,
        v_bias: Option<GpuBuffer>,
        o_bias: Option<GpuBuffer>,
        q_norm: Option<GpuBuffer>,
        k_norm: Option<GpuBuffer>,
    },
    Latent {
        q: Option<GpuMatrix>,
        q_a: Option<(GpuMatrix, Option<GpuBuffer>, GpuBuffer)>,
        q_b: Option<GpuMatrix>,
        kv_a: GpuMatrix,
        kv_a_bias: Option<GpuBuffer>,
        kv_a_norm: GpuBuffer,
        kv_b: GpuMatrix,
        o: GpuMatrix,
        o_bias: Option<GpuBuffer>,
    },
}

struct GpuFfn {
    gate: GpuMatrix,
    up: GpuMatrix,
    down: GpuMatrix,
}

enum GpuMlp {
    Dense(GpuFfn),
    Moe {
        router: GpuMatrix,
        bias: Option<GpuBuffer>,
        gate_up: GpuMatrix,
        down: GpuMatrix,
        shared: Option<GpuFfn>,
        shared_gate: Option<GpuMatrix>,
    },
}

struct GpuLayer {
    input_norm: GpuBuffer,
    attention: GpuAttention,
    post_norm: GpuBuffer,
    mlp: GpuMlp,
}

pub struct GpuModel<'g> {
    gpu: &'g Gpu,
    pub config: ModelConfig,
    embed: GpuMatrix,
    layers: Vec<GpuLayer>,
    final_norm: GpuBuffer,
    lm_head: Option<GpuMatrix>,
}

/// What a GPU forward pass returns (hidden states and router logits only when asked for).
#[derive(Debug)]
pub struct GpuForward {
    pub logits: Mat,
    pub hidden_states: Vec<Mat>,
    pub router_logits: Vec<Option<Mat>>,
}

impl<'g> GpuModel<'g> {
    /// Upload a checkpoint's weights (converted to f32 on the host, tensor by tensor).
    pub fn load(gpu: &'g Gpu, ckpt: &Checkpoint) -> Result<GpuModel<'g>> {
        let cfg = ckpt.config.clone();
        let mat = |r: Role| -> Result<GpuMatrix> {
            let e = ckpt.entry(r)?;
            let (rows, cols) = match e.shape.as_slice() {
                [r, c] => (*r, *c),
                s => {
                    return Err(Error::Invalid(format!(
                        "{}: expected a matrix, found shape {s:?}",
                        e.name
                    )))
                }
            };
            Ok(GpuMatrix::upload(gpu, rows, cols, &ckpt.f32(r)?))
        };
        let opt_mat = |r: Role| -> Result<Option<GpuMatrix>> {
            if ckpt.has(r) {
                mat(r).map(Some)
            } else {
                Ok(None)
            }
        };
        let vec = |r: Role| -> Result<GpuBuffer> { Ok(gpu.upload(&ckpt.f32(r)?)) };
        let opt_vec = |r: Role| -> Result<Option<GpuBuffer>> {
            if ckpt.has(r) {
                vec(r).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut layers = Vec::new();
        for i in 0..cfg.num_layers {
            let lr = |r: L| Role::Layer(i, r);
            let attention = match &cfg.attention {
                Attention::Standard { .. } => GpuAttention::Standard {
                    q: mat(lr(L::Attn(A::Q)))?,
                    k: mat(lr(L::Attn(A::K)))?,
                    v: mat(lr(L::Attn(A::V)))?,
                    o: mat(lr(L::Attn(A::O)))?,
                    q_bias: opt_vec(lr(L::Attn(A::QBias)))?,
                    k_bias: opt_vec(lr(L::Attn(A::KBias)))?,
                    v_bias: opt_vec(lr(L::Attn(A::VBias)))?,
                    o_bias: opt_vec(lr(L::Attn(A::OBias)))?,
                    q_norm: opt_vec(lr(L::Attn(A::QNorm)))?,
                    k_norm: opt_vec(lr(L::Attn(A::KNorm)))?,
                },
                Attention::Mla(_) => GpuAttention::Latent {
                    q: opt_mat(lr(L::Attn(A::Q)))?,
                    q_a: match opt_mat(lr(L::Attn(A::QA)))? {
                        Some(m) => Some((
                            m,
                            opt_vec(lr(L::Attn(A::QABias)))?,
                            vec(lr(L::Attn(A::QANorm)))?,
                        )),
                        None => None,
                    },
                    q_b: opt_mat(lr(L::Attn(A::QB)))?,
                    kv_a: mat(lr(L::Attn(A::KvA)))?,
                    kv_a_bias: opt_vec(lr(L::Attn(A::KvABias)))?,
                    kv_a_norm: vec(lr(L::Attn(A::KvANorm)))?,
                    kv_b: mat(lr(L::Attn(A::KvB)))?,
                    o: mat(lr(L::Attn(A::O)))?,
                    o_bias: opt_vec(lr(L::Attn(A::OBias)))?,
                },
            };
            let ffn = |g: L, u: L, d: L| -> Result<GpuFfn> {
                Ok(GpuFfn {
                    gate: mat(lr(g))?,
                    up: mat(lr(u))?,
                    down: mat(lr(d))?,
                })
            };
            let mlp = match cfg.mlp[i] {
                MlpKind::Dense => GpuMlp::Dense(ffn(
                    L::DenseMlp(Proj::Gate),
                    L::DenseMlp(Proj::Up),
                    L::DenseMlp(Proj::Down),
                )?),
                MlpKind::Moe => {
                    let (e, inter, h) =
                        (cfg.moe.num_experts, cfg.moe.intermediate, cfg.hidden_size);
                    let mut gu = Vec::with_capacity(e * 2 * inter * h);
                    let mut dn = Vec::with_capacity(e * h * inter);
                    for x in 0..e {
                        gu.extend(ckpt.expert_f32(i, x, Proj::Gate)?);
                        gu.extend(ckpt.expert_f32(i, x, Proj::Up)?);
                        dn.extend(ckpt.expert_f32(i, x, Proj::Down)?);
                    }
                    GpuMlp::Moe {
                        router: mat(lr(L::Router))?,
                        bias: opt_vec(lr(L::RouterBias))?,
                        gate_up: upload_experts(gpu, e, 2 * inter, h, &gu),
                        down: upload_experts(gpu, e, h, inter, &dn),
                        shared: match cfg.moe.shared {
                            Some(_) => Some(ffn(
                                L::SharedExpert(Proj::Gate),
                                L::SharedExpert(Proj::Up),
                                L::SharedExpert(Proj::Down),
                            )?),
                            None => None,
                        },
                        shared_gate: opt_mat(lr(L::SharedExpertGate))?,
                    }
                }
            };
            layers.push(GpuLayer {
                input_norm: vec(lr(L::InputNorm))?,
                attention,
                post_norm: vec(lr(L::PostAttnNorm))?,
                mlp,
            });
        }
        Ok(GpuModel {
            gpu,
            embed: mat(Role::Embed)?,
            final_norm: vec(Role::FinalNorm)?,
            lm_head: opt_mat(Role::LmHead)?,
            layers,
            config: cfg,
        })
    }

    /// Run the model over `tokens`; `details` also returns every hidden state and router's
    /// logits (in the same single readback).
    pub async fn forward(&self, tokens: &[u32], details: bool) -> Result<GpuForward> {
        let (gpu, cfg) = (self.gpu, &self.config);
        let (t, h) = (tokens.len(), cfg.hidden_size);
        if t == 0 {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        if t > MAX_ATTENTION_TOKENS {
            return Err(Error::Invalid(format!(
                "the GPU attention kernel takes at most {MAX_ATTENTION_TOKENS} tokens, got {t}"
            )));
        }
        if let Some((pos, tok)) = tokens
            .iter()
            .enumerate()
            .find(|(_, tok)| **tok as usize >= cfg.vocab_size)
        {
            return Err(Error::Invalid(format!(
                "token id {tok} at position {pos} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        // Activations are bound whole; say so clearly rather than fail device validation.
        let moe_rows = t * cfg.moe.top_k + cfg.moe.num_experts * (MOE_TILE_ROWS - 1);
        let largest = [
            t * cfg.vocab_size,
            moe_rows * cfg.moe.intermediate.max(h),
            t * cfg.num_heads * cfg.head_dim.max(1) * 2,
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as u64
            * 4;
        if largest > gpu.max_binding_bytes {
            return Err(Error::Invalid(format!(
                "{t} tokens need a {:.0} MB activation buffer, above this device's {:.0} MB storage-binding limit; run fewer tokens at once",
                largest as f64 / 1e6,
                gpu.max_binding_bytes as f64 / 1e6
            )));
        }
        let mut rec = gpu.encoder();
        let x = gpu.zeros(t * h);
        let normed = gpu.zeros(t * h);
        let tok_buf = gpu.upload_u32(tokens);
        embed(&mut rec, &tok_buf, &self.embed, &x);
        let hidden = if details {
            Some(gpu.zeros((cfg.num_layers + 1) * t * h))
        } else {
            None
        };
        let mut router_logits = Vec::new();
        let scratch = if cfg.mlp.contains(&MlpKind::Moe) {
            Some(MoeScratch::new(
                gpu,
                t,
                cfg.moe.top_k,
                cfg.moe.num_experts,
                h,
                cfg.moe.intermediate,
            ))
        } else {
            None
        };
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(hs) = &hidden {
                rec.copy(&x, 0, hs, i * t * h, t * h);
            }
            rms_norm(
                &mut rec,
                &x,
                0,
                t,
                &layer.input_norm,
                cfg.rms_norm_eps,
                &normed,
            );
            self.attention(&mut rec, &layer.attention, &normed, &x, t, i);
            rms_norm(
                &mut rec,
                &x,
                0,
                t,
                &layer.post_norm,
                cfg.rms_norm_eps,
                &normed,
            );
            let logits = self.mlp(&mut rec, &layer.mlp, &normed, &x, t, scratch.as_ref());
            router_logits.push(logits);
        }
        rms_norm(
            &mut rec,
            &x,
            0,
            t,
            &self.final_norm,
            cfg.rms_norm_eps,
            &normed,
        );
        let logits = gpu.zeros(t * cfg.vocab_size);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        matmul(
            &mut rec,
            &normed,
            Region::dense(t, h),
            head,
            None,
            &logits,
            Region::dense(t, cfg.vocab_size),
            false,
        );
        if let Some(hs) = &hidden {
            rec.copy(&normed, 0, hs, cfg.num_layers * t * h, t * h);
        }
        rec.submit();
        let mut wanted: Vec<&GpuBuffer> = vec![&logits];
        if let Some(hs) = &hidden {
            wanted.push(hs);
            wanted.extend(router_logits.iter().flatten());
        }
        let mut back = gpu.read_many(&wanted).await?.into_iter();
        let logits = Mat::from_vec(t, cfg.vocab_size, back.next().expect("logits"));
        let (mut hidden_states, mut routers) = (Vec::new(), Vec::new());
        if details {
            let hs = back.next().expect("hidden states");
            hidden_states = hs
                .chunks(t * h)
                .map(|c| Mat::from_vec(t, h, c.to_vec()))
                .collect();
            for l in &router_logits {
                routers.push(l.as_ref().map(|_| {
                    Mat::from_vec(t, cfg.moe.num_experts, back.next().expect("router logits"))
                }));
            }
        }
        Ok(GpuForward {
            logits,
            hidden_states,
            router_logits: routers,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&self, tokens: &[u32], details: bool) -> Result<GpuForward> {
        pollster::block_on(self.forward(tokens, details))
    }

    /// Attention of layer `layer`, added into the residual stream `x`.
    fn attention(
        &self,
        rec: &mut Recorder,
        a: &GpuAttention,
        normed: &GpuBuffer,
        x: &GpuBuffer,
        t: usize,
        layer: usize,
    ) {
        let (gpu, cfg) = (self.gpu, &self.config);
        let h = cfg.hidden_size;
        match (a, &cfg.attention) {
            (
                GpuAttention::Standard {
                    q,
                    k,
                    v,
                    o,
                    q_bias,
                    k_bias,
                    v_bias,
                    o_bias,
                    q_norm,
                    k_norm,
                },
                Attention::Standard {
                    qk_norm, clip_qkv, ..
                },
            ) => {
                let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
                let proj =
                    |rec: &mut Recorder, w: &GpuMatrix, b: &Option<GpuBuffer>, width: usize| {
                        let out = gpu.zeros(t * width);
                        matmul(
                            rec,
                            normed,
                            Region::dense(t, h),
                            w,
                            b.as_ref(),
                            &out,
                            Region::dense(t, width),
                            false,
                        );
                        out
                    };
                let mut qb = proj(rec, q, q_bias, nh * hd);
                let mut kb = proj(rec, k, k_bias, nkv * hd);
                let vb = proj(rec, v, v_bias, nkv * hd);
                if let (Some(qn), Some(kn)) = (q_norm, k_norm) {
                    // Per head: the weight has head_dim entries, so each head is one group;
                    // full width: each row is one group.
                    let (qg, kg) = match qk_norm {
                        QkNorm::FullWidth => (t, t),
                        _ => (t * nh, t * nkv),
                    };
                    let (qn_out, kn_out) = (gpu.zeros(t * nh * hd), gpu.zeros(t * nkv * hd));
                    rms_norm(rec, &qb, 0, qg, qn, cfg.rms_norm_eps, &qn_out);
                    rms_norm(rec, &kb, 0, kg, kn, cfg.rms_norm_eps, &kn_out);
                    qb = qn_out;
                    kb = kn_out;
                }
                if let Some(c) = clip_qkv {
                    clamp_abs(rec, &qb, t * nh * hd, *c);
                    clamp_abs(rec, &kb, t * nkv * hd, *c);
                    clamp_abs(rec, &vb, t * nkv * hd, *c);
                }
                rope(rec, &qb, t, nh * hd, nh, 0, hd, hd, false, cfg.rope_theta);
                rope(rec, &kb, t, nkv * hd, nkv, 0, hd, hd, false, cfg.rope_theta);
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
                    scale: (hd as f32).powf(-0.5),
                    _pad: 0,
                };
                attention(rec, &qb, &kb, &vb, &out, p);
                matmul(
                    rec,
                    &out,
                    Region::dense(t, nh * hd),
                    o,
                    o_bias.as_ref(),
                    x,
                    Region::dense(t, h),
                    true,
                );
            }
            (
                GpuAttention::Latent {
                    q,
                    q_a,
                    q_b,
                    kv_a,
                    kv_a_bias,
                    kv_a_norm,
                    kv_b,
                    o,
                    o_bias,
                },
                Attention::Mla(m),
            ) => {
                let nh = cfg.num_heads;
                let (nope, rd, vd, r) = (
                    m.qk_nope_head_dim,
                    m.qk_rope_head_dim,
                    m.v_head_dim,
                    m.kv_lora_rank,
                );
                let qk = nope + rd;
                let qb = gpu.zeros(t * nh * qk);
                match (q, q_a, q_b) {
                    (Some(wq), _, _) => matmul(
                        rec,
                        normed,
                        Region::dense(t, h),
                        wq,
                        None,
                        &qb,
                        Region::dense(t, nh * qk),
                        false,
                    ),
                    (None, Some((wa, ba, na)), Some(wb)) => {
                        let rank = wa.rows;
                        let (qa, qa_n) = (gpu.zeros(t * rank), gpu.zeros(t * rank));
                        matmul(
                            rec,
                            normed,
                            Region::dense(t, h),
                            wa,
                            ba.as_ref(),
                            &qa,
                            Region::dense(t, rank),
                            false,
                        );
                        rms_norm(rec, &qa, 0, t, na, MLA_NORM_EPS, &qa_n);
                        matmul(
                            rec,
                            &qa_n,
                            Region::dense(t, rank),
                            wb,
                            None,
                            &qb,
                            Region::dense(t, nh * qk),
                            false,
                        );
                    }
                    _ => unreachable!("MLA weights are loaded with q_proj or q_a_proj + q_b_proj"),
                }
                let ckv = gpu.zeros(t * (r + rd));
                matmul(
                    rec,
                    normed,
                    Region::dense(t, h),
                    kv_a,
                    kv_a_bias.as_ref(),
                    &ckv,
                    Region::dense(t, r + rd),
                    false,
                );
                let (lat, lat_n) = (gpu.zeros(t * r), gpu.zeros(t * r));
                copy_cols(rec, &ckv, r + rd, 0, &lat, r, 0, t, r);
                rms_norm(rec, &lat, 0, t, kv_a_norm, MLA_NORM_EPS, &lat_n);
                let kv = gpu.zeros(t * nh * (nope + vd));
                matmul(
                    rec,
                    &lat_n,
                    Region::dense(t, r),
                    kv_b,
                    None,
                    &kv,
                    Region::dense(t, nh * (nope + vd)),
                    false,
                );
                rope(
                    rec,
                    &ckv,
                    t,
                    r + rd,
                    1,
                    r,
                    rd,
                    rd,
                    m.rope_interleave,
                    cfg.rope_theta,
                );
                rope(
                    rec,
                    &qb,
                    t,
                    nh * qk,
                    nh,
                    nope,
                    qk,
                    rd,
                    m.rope_interleave,
                    cfg.rope_theta,
                );
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
                    copy_cols(
                        rec,
                        &ckv,
                        r + rd,
                        r,
                        &keys,
                        nh * qk,
                        head * qk + nope,
                        t,
                        rd,
                    );
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
                    scale: (qk as f32).powf(-0.5),
                    _pad: 0,
                };
                attention(rec, &qb, &keys, &kv, &out, p);
                matmul(
                    rec,
                    &out,
                    Region::dense(t, nh * vd),
                    o,
                    o_bias.as_ref(),
                    x,
                    Region::dense(t, h),
                    true,
                );
            }
            _ => unreachable!("attention weights match the config"),
        }
    }

    fn ffn(
        &self,
        rec: &mut Recorder,
        f: &GpuFfn,
        normed: &GpuBuffer,
        out: &GpuBuffer,
        t: usize,
        accumulate: bool,
    ) {
        let (gpu, h) = (self.gpu, self.config.hidden_size);
        let i = f.gate.rows;
        let (g, u) = (gpu.zeros(t * i), gpu.zeros(t * i));
        matmul(
            rec,
            normed,
            Region::dense(t, h),
            &f.gate,
            None,
            &g,
            Region::dense(t, i),
            false,
        );
        matmul(
            rec,
            normed,
            Region::dense(t, h),
            &f.up,
            None,
            &u,
            Region::dense(t, i),
            false,
        );
        silu_mul(rec, &u, &g, t * i);
        matmul(
            rec,
            &g,
            Region::dense(t, i),
            &f.down,
            None,
            out,
            Region::dense(t, h),
            accumulate,
        );
    }

    /// The feed-forward block, added into `x`; returns the router logits buffer of MoE layers.
    fn mlp(
        &self,
        rec: &mut Recorder,
        m: &GpuMlp,
        normed: &GpuBuffer,
        x: &GpuBuffer,
        t: usize,
        scratch: Option<&MoeScratch>,
    ) -> Option<GpuBuffer> {
        let (gpu, cfg) = (self.gpu, &self.config);
        let h = cfg.hidden_size;
        match m {
            GpuMlp::Dense(f) => {
                self.ffn(rec, f, normed, x, t, true);
                None
            }
            GpuMlp::Moe {
                router,
                bias,
                gate_up,
                down,
                shared,
                shared_gate,
            } => {
                let moe = &cfg.moe;
                let s = scratch.expect("scratch for MoE layers");
                let logits = gpu.zeros(t * moe.num_experts);
                matmul(
                    rec,
                    normed,
                    Region::dense(t, h),
                    router,
                    None,
                    &logits,
                    Region::dense(t, moe.num_experts),
                    false,
                );
                route(
                    rec,
                    &logits,
                    bias.as_ref(),
                    &s.chosen,
                    &s.weights,
                    RouterParams::new(t, moe),
                );
                moe_experts(
                    rec,
                    normed,
                    t,
                    moe.top_k,
                    moe.num_experts,
                    h,
                    moe.intermediate,
                    gate_up,
                    down,
                    s,
                    x,
                );
                if let Some(f) = shared {
                    let y = gpu.zeros(t * h);
                    self.ffn(rec, f, normed, &y, t, false);
                    if let Some(g) = shared_gate {
                        let gl = gpu.zeros(t);
                        matmul(
                            rec,
                            normed,
                            Region::dense(t, h),
                            g,
                            None,
                            &gl,
                            Region::dense(t, 1),
                            false,
                        );
                        scale_rows_sigmoid(rec, &gl, &y, t, h);
                    }
                    add(rec, &y, x, t * h);
                }
                Some(logits)
            }
        }
    }
}
