//! The burn model: a decoder-only MoE transformer whose parameters are exactly the tensors of a
//! Hugging Face checkpoint (same shapes, `[out, in]` matrices), so that loading and saving are
//! one-to-one and the forward pass can be checked against the CPU reference and transformers.

use super::arch::Arch;
use super::moe::{moe_forward, LayerRouting, RouteBias};
use super::weights::{HostTensor, HostWeights};
use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use moegrow_core::config::QkNorm;
use moegrow_core::reference::ops::Rope;
use moegrow_core::roles::{AttnRole as A, LayerRole as L};
use moegrow_core::{Proj, Role};

/// One SwiGLU feed-forward block (a routed expert, a shared expert or a dense MLP).
#[derive(Module, Debug)]
pub struct Ffn {
    pub gate: Param<Tensor<2>>,
    pub up: Param<Tensor<2>>,
    pub down: Param<Tensor<2>>,
}

impl Ffn {
    /// `x [n, H]` → `[n, H]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let g = x.clone().matmul(self.gate.val().transpose());
        let u = x.matmul(self.up.val().transpose());
        (silu(g) * u).matmul(self.down.val().transpose())
    }
}

#[derive(Module, Debug)]
pub struct Moe {
    /// `[E, H]`.
    pub router: Param<Tensor<2>>,
    pub experts: Vec<Ffn>,
    pub shared: Option<Ffn>,
    /// Qwen2-MoE's `[1, H]` sigmoid gate on the shared expert.
    pub shared_gate: Option<Param<Tensor<2>>>,
}

#[derive(Module, Debug)]
pub struct Block {
    pub input_norm: Param<Tensor<1>>,
    pub q: Param<Tensor<2>>,
    pub k: Param<Tensor<2>>,
    pub v: Param<Tensor<2>>,
    pub o: Param<Tensor<2>>,
    pub q_bias: Option<Param<Tensor<1>>>,
    pub k_bias: Option<Param<Tensor<1>>>,
    pub v_bias: Option<Param<Tensor<1>>>,
    pub o_bias: Option<Param<Tensor<1>>>,
    pub q_norm: Option<Param<Tensor<1>>>,
    pub k_norm: Option<Param<Tensor<1>>>,
    pub post_norm: Param<Tensor<1>>,
    pub moe: Option<Moe>,
    pub dense: Option<Ffn>,
}

#[derive(Module, Debug)]
pub struct Net {
    pub embed: Param<Tensor<2>>,
    pub blocks: Vec<Block>,
    pub final_norm: Param<Tensor<1>>,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
}

/// What one forward pass returns.
pub struct Output {
    /// `[B, T, V]`.
    pub logits: Tensor<3>,
    /// One entry per MoE layer, in layer order.
    pub routing: Vec<LayerRouting>,
}

/// Rotary tables for positions `0..T`, `[1, 1, T, head_dim/2]` each, built by `core` exactly as
/// transformers does (f32 inverse frequencies and angles).
pub struct RopeTables {
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    pub len: usize,
}

impl RopeTables {
    pub fn new(arch: &Arch, len: usize, device: &Device) -> RopeTables {
        let cfg = &arch.config;
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta, len);
        let half = cfg.head_dim / 2;
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, half]), device);
        RopeTables {
            cos: t(rope.cos),
            sin: t(rope.sin),
            len,
        }
    }

    /// Rotate `x [B, heads, T, d]` (pairs `(i, i + d/2)`, transformers' `rotate_half`).
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
        let x2 = x.slice([0..b, 0..h, 0..t, half..d]);
        let (c, s) = if t == self.len {
            (self.cos.clone(), self.sin.clone())
        } else {
            (
                self.cos.clone().slice([0..1, 0..1, 0..t, 0..half]),
                self.sin.clone().slice([0..1, 0..1, 0..t, 0..half]),
            )
        };
        Tensor::cat(
            vec![
                x1.clone() * c.clone() - x2.clone() * s.clone(),
                x2 * c + x1 * s,
            ],
            3,
        )
    }
}

/// RMSNorm over the last dimension (computed in f32, as transformers does).
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f32) -> Tensor<D> {
    let ms = x.clone().square().mean_dim(D - 1);
    let w = w.unsqueeze::<D>();
    x * (ms + eps as f64).sqrt().recip() * w
}

/// A parameter with a stable id, so that optimizer state saved by one run attaches to the same
/// tensors when a resumed run rebuilds the model.
fn param<const D: usize>(
    id: &mut u64,
    t: &HostTensor,
    device: &Device,
) -> anyhow::Result<Param<Tensor<D>>> {
    if t.shape.len() != D {
        anyhow::bail!(
            "internal: expected a rank-{D} tensor, got shape {:?}",
            t.shape
        );
    }
    let mut tensor =
        Tensor::<D>::from_data(TensorData::new(t.values.clone(), t.shape.clone()), device);
    if device.is_autodiff() {
        tensor = tensor.require_grad();
    }
    *id += 1;
    Ok(Param::initialized(ParamId::from(*id), tensor))
}

impl Net {
    /// Upload host weights (every tensor of the checkpoint) to `device`.
    pub fn load(arch: &Arch, w: &HostWeights, device: &Device) -> anyhow::Result<Net> {
        let cfg = &arch.config;
        let mut id = 0u64;
        let get1 = |id: &mut u64, r: Role| -> anyhow::Result<Param<Tensor<1>>> {
            param::<1>(id, w.get(r)?, device)
        };
        let opt1 = |id: &mut u64, r: Role| -> anyhow::Result<Option<Param<Tensor<1>>>> {
            match w.tensors.get(&r) {
                Some(t) => Ok(Some(param::<1>(id, t, device)?)),
                None => Ok(None),
            }
        };
        let get2 = |id: &mut u64, r: Role| -> anyhow::Result<Param<Tensor<2>>> {
            param::<2>(id, w.get(r)?, device)
        };
        let ffn = |id: &mut u64, role: &dyn Fn(Proj) -> Role| -> anyhow::Result<Ffn> {
            Ok(Ffn {
                gate: get2(id, role(Proj::Gate))?,
                up: get2(id, role(Proj::Up))?,
                down: get2(id, role(Proj::Down))?,
            })
        };
        let embed = get2(&mut id, Role::Embed)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let r = |x: L| Role::Layer(l, x);
            let input_norm = get1(&mut id, r(L::InputNorm))?;
            let q = get2(&mut id, r(L::Attn(A::Q)))?;
            let k = get2(&mut id, r(L::Attn(A::K)))?;
            let v = get2(&mut id, r(L::Attn(A::V)))?;
            let o = get2(&mut id, r(L::Attn(A::O)))?;
            let q_bias = opt1(&mut id, r(L::Attn(A::QBias)))?;
            let k_bias = opt1(&mut id, r(L::Attn(A::KBias)))?;
            let v_bias = opt1(&mut id, r(L::Attn(A::VBias)))?;
            let o_bias = opt1(&mut id, r(L::Attn(A::OBias)))?;
            let q_norm = opt1(&mut id, r(L::Attn(A::QNorm)))?;
            let k_norm = opt1(&mut id, r(L::Attn(A::KNorm)))?;
            let post_norm = get1(&mut id, r(L::PostAttnNorm))?;
            let (moe, dense) = if arch.is_moe(l) {
                let router = get2(&mut id, r(L::Router))?;
                let experts = (0..cfg.moe.num_experts)
                    .map(|e| ffn(&mut id, &|p| r(L::Expert(e, p))))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let shared = match cfg.moe.shared {
                    Some(_) => Some(ffn(&mut id, &|p| r(L::SharedExpert(p)))?),
                    None => None,
                };
                let shared_gate = match w.tensors.get(&r(L::SharedExpertGate)) {
                    Some(t) => Some(param::<2>(&mut id, t, device)?),
                    None => None,
                };
                (
                    Some(Moe {
                        router,
                        experts,
                        shared,
                        shared_gate,
                    }),
                    None,
                )
            } else {
                (None, Some(ffn(&mut id, &|p| r(L::DenseMlp(p)))?))
            };
            blocks.push(Block {
                input_norm,
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
                post_norm,
                moe,
                dense,
            });
        }
        let final_norm = get1(&mut id, Role::FinalNorm)?;
        let lm_head = match w.tensors.get(&Role::LmHead) {
            Some(t) => Some(param::<2>(&mut id, t, device)?),
            None => None,
        };
        if w.tensors.contains_key(&Role::Layer(0, L::RouterBias)) {
            anyhow::bail!("checkpoints with a routing correction bias (DeepSeek-V3) are not trainable here yet");
        }
        Ok(Net {
            embed,
            blocks,
            final_norm,
            lm_head,
        })
    }

    /// Download every parameter into `w` (same roles, the dtypes `w` already records).
    pub fn store(&self, w: &mut HostWeights) -> anyhow::Result<()> {
        fn put<const D: usize>(
            w: &mut HostWeights,
            r: Role,
            p: &Param<Tensor<D>>,
        ) -> anyhow::Result<()> {
            let data = p.val().into_data();
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("cannot read {r:?} back: {e:?}"))?;
            let t = w
                .tensors
                .get_mut(&r)
                .ok_or_else(|| anyhow::anyhow!("internal: {r:?} missing from the host weights"))?;
            t.values = values;
            Ok(())
        }
        let ffn =
            |w: &mut HostWeights, f: &Ffn, role: &dyn Fn(Proj) -> Role| -> anyhow::Result<()> {
                put(w, role(Proj::Gate), &f.gate)?;
                put(w, role(Proj::Up), &f.up)?;
                put(w, role(Proj::Down), &f.down)
            };
        put(w, Role::Embed, &self.embed)?;
        for (l, b) in self.blocks.iter().enumerate() {
            let r = |x: L| Role::Layer(l, x);
            put(w, r(L::InputNorm), &b.input_norm)?;
            put(w, r(L::Attn(A::Q)), &b.q)?;
            put(w, r(L::Attn(A::K)), &b.k)?;
            put(w, r(L::Attn(A::V)), &b.v)?;
            put(w, r(L::Attn(A::O)), &b.o)?;
            for (role, p) in [
                (A::QBias, &b.q_bias),
                (A::KBias, &b.k_bias),
                (A::VBias, &b.v_bias),
                (A::OBias, &b.o_bias),
                (A::QNorm, &b.q_norm),
                (A::KNorm, &b.k_norm),
            ] {
                if let Some(p) = p {
                    put(w, r(L::Attn(role)), p)?;
                }
            }
            put(w, r(L::PostAttnNorm), &b.post_norm)?;
            if let Some(m) = &b.moe {
                put(w, r(L::Router), &m.router)?;
                for (e, f) in m.experts.iter().enumerate() {
                    ffn(w, f, &|p| r(L::Expert(e, p)))?;
                }
                if let Some(s) = &m.shared {
                    ffn(w, s, &|p| r(L::SharedExpert(p)))?;
                }
                if let Some(g) = &m.shared_gate {
                    put(w, r(L::SharedExpertGate), g)?;
                }
            }
            if let Some(d) = &b.dense {
                ffn(w, d, &|p| r(L::DenseMlp(p)))?;
            }
        }
        put(w, Role::FinalNorm, &self.final_norm)?;
        if let Some(h) = &self.lm_head {
            put(w, Role::LmHead, h)?;
        }
        Ok(())
    }

    /// `tokens [B, T]` → logits `[B, T, V]` and each MoE layer's routing.
    pub fn forward(
        &self,
        arch: &Arch,
        rope: &RopeTables,
        tokens: Tensor<2, Int>,
        bias: &RouteBias,
    ) -> anyhow::Result<Output> {
        let cfg = &arch.config;
        let [b, t] = tokens.dims();
        let n = b * t;
        let ids = tokens.reshape([n]);
        let mut x = self.embed.val().select(0, ids); // [N, H]
        let mask = causal_mask(t, cfg.sliding_window.clone(), &x.device());
        let mut routing = Vec::new();
        for (l, blk) in self.blocks.iter().enumerate() {
            let normed = rms_norm(x.clone(), blk.input_norm.val(), cfg.rms_norm_eps);
            let attn = self.attention(arch, blk, normed, b, t, rope, &mask[l]);
            x = x + attn;
            let normed = rms_norm(x.clone(), blk.post_norm.val(), cfg.rms_norm_eps);
            let mlp = if let Some(moe) = &blk.moe {
                let (y, r) = moe_forward(arch, moe, normed, bias.layer(routing.len()))?;
                routing.push(r);
                y
            } else {
                blk.dense
                    .as_ref()
                    .expect("a block without MoE has a dense MLP")
                    .forward(normed)
            };
            x = x + mlp;
        }
        let x = rms_norm(x, self.final_norm.val(), cfg.rms_norm_eps);
        let head = match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed.val(),
        };
        let logits = x.matmul(head.transpose()).reshape([b, t, cfg.vocab_size]);
        Ok(Output { logits, routing })
    }

    fn attention(
        &self,
        arch: &Arch,
        blk: &Block,
        x: Tensor<2>,
        b: usize,
        t: usize,
        rope: &RopeTables,
        mask: &Tensor<4>,
    ) -> Tensor<2> {
        let cfg = &arch.config;
        let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps;
        let proj = |w: &Param<Tensor<2>>, bias: &Option<Param<Tensor<1>>>| {
            let y = x.clone().matmul(w.val().transpose());
            match bias {
                Some(bb) => y + bb.val().unsqueeze::<2>(),
                None => y,
            }
        };
        let mut q = proj(&blk.q, &blk.q_bias);
        let mut k = proj(&blk.k, &blk.k_bias);
        let mut v = proj(&blk.v, &blk.v_bias);
        if arch.qk_norm == QkNorm::FullWidth {
            (q, k) = qk_norms(blk, q, k, eps);
        }
        if let Some(c) = arch.clip_qkv {
            let c = c as f64;
            q = q.clamp(-c, c);
            k = k.clamp(-c, c);
            v = v.clamp(-c, c);
        }
        // [B, T, heads, d] → [B, heads, T, d]
        let mut q = q.reshape([b, t, nh, d]);
        let mut k = k.reshape([b, t, nkv, d]);
        if arch.qk_norm == QkNorm::PerHead {
            (q, k) = qk_norms(blk, q, k, eps);
        }
        let q = rope.apply(q.swap_dims(1, 2));
        let k = rope.apply(k.swap_dims(1, 2));
        let v = v.reshape([b, t, nkv, d]).swap_dims(1, 2);
        // Grouped-query attention: each kv head serves `nh / nkv` query heads.
        let group = nh / nkv;
        let (k, v) = if group == 1 {
            (k, v)
        } else {
            let rep = |z: Tensor<4>| {
                z.unsqueeze_dim::<5>(2)
                    .expand([b, nkv, group, t, d])
                    .reshape([b, nh, t, d])
            };
            (rep(k), rep(v))
        };
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt()) + mask.clone();
        let p = softmax(scores, 3);
        let ctx = p.matmul(v).swap_dims(1, 2).reshape([b * t, nh * d]);
        let out = ctx.matmul(blk.o.val().transpose());
        match &blk.o_bias {
            Some(bb) => out + bb.val().unsqueeze::<2>(),
            None => out,
        }
    }
}

/// q/k RMSNorm over the last dimension (the full projection for OLMoE, each head for Qwen3).
fn qk_norms<const D: usize>(
    blk: &Block,
    q: Tensor<D>,
    k: Tensor<D>,
    eps: f32,
) -> (Tensor<D>, Tensor<D>) {
    let w = |p: &Option<Param<Tensor<1>>>| {
        p.as_ref()
            .expect("the loader requires q_norm and k_norm with q/k norm")
            .val()
    };
    (
        rms_norm(q, w(&blk.q_norm), eps),
        rms_norm(k, w(&blk.k_norm), eps),
    )
}

/// Additive attention masks `[1, 1, T, T]` per layer: 0 where a query may attend, −∞ above the
/// diagonal and outside a sliding window (key `j` is visible from `i` when `i − w < j ≤ i`).
fn causal_mask(t: usize, windows: Vec<Option<usize>>, device: &Device) -> Vec<Tensor<4>> {
    let build = |w: Option<usize>| {
        let mut m = vec![0f32; t * t];
        for i in 0..t {
            let lo = w.map_or(0, |w| (i + 1).saturating_sub(w));
            for j in 0..t {
                if j > i || j < lo {
                    m[i * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(m, [1, 1, t, t]), device)
    };
    let mut cache: Vec<(Option<usize>, Tensor<4>)> = Vec::new();
    windows
        .into_iter()
        .map(|w| {
            if let Some((_, m)) = cache.iter().find(|(k, _)| *k == w) {
                return m.clone();
            }
            let m = build(w);
            cache.push((w, m.clone()));
            m
        })
        .collect()
}
