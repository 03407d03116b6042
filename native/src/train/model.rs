//! The burn model: a decoder-only MoE transformer whose parameters are exactly the tensors of a
//! Hugging Face checkpoint, one flat parameter per schema leaf (stacked experts included), so
//! that loading and saving are one walk over the schema and the forward pass can be checked
//! against the CPU reference and transformers.
//!
//! Parameters are stored flat and viewed in their schema shape by each forward pass (a reshape
//! is free); the routed experts are `[E, 2I, H]` and `[E, H, I]` parameters, used as they are,
//! never restacked per step.

use super::arch::{Arch, Slot};
use super::moe::{moe_forward, LayerRouting, RouteBias};
use super::weights::HostWeights;
use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use moegrow_core::config::QkNorm;
use moegrow_core::rope::Rope;
use moegrow_core::schema::{Attention, Ffn, Gqa, Mlp};

/// Every parameter of the model, in the schema's canonical order ([`Arch::slots`] says which
/// is which).
#[derive(Module, Debug)]
pub struct Net {
    pub params: Vec<Param<Tensor<1>>>,
}

/// A SwiGLU block's weights in their matrix shapes.
pub struct FfnView {
    pub gate: Tensor<2>,
    pub up: Tensor<2>,
    pub down: Tensor<2>,
}

impl FfnView {
    /// `x [n, H]` → `[n, H]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let g = x.clone().matmul(self.gate.clone().transpose());
        let u = x.matmul(self.up.clone().transpose());
        (silu(g) * u).matmul(self.down.clone().transpose())
    }
}

/// One MoE block's weights in their schema shapes.
pub struct MoeView {
    /// `[E, H]`.
    pub router: Tensor<2>,
    /// `[E, 2I, H]`: each expert's gate rows, then its up rows.
    pub gate_up: Tensor<3>,
    /// `[E, H, I]`.
    pub down: Tensor<3>,
    pub shared: Option<FfnView>,
    /// Qwen2-MoE's `[1, H]` sigmoid gate on the shared expert.
    pub shared_gate: Option<Tensor<2>>,
    /// Llama-4: the routing weight scales each expert's input, not its output.
    pub input_scaled: bool,
}

/// What one forward pass returns.
pub struct Output {
    /// `[B, T, V]`.
    pub logits: Tensor<3>,
    /// One entry per MoE layer, in layer order.
    pub routing: Vec<LayerRouting>,
}

/// Rotary tables for positions `0..T`, `[1, 1, T, head_dim/2]` each, from `core`'s one table
/// builder (the CPU reference and the GPU runtime rotate by the same values).
pub struct RopeTables {
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    pub len: usize,
}

impl RopeTables {
    pub fn new(arch: &Arch, len: usize, device: &Device) -> RopeTables {
        let rope = Rope::for_model(&arch.config, len);
        let half = rope.half;
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, half]), device);
        RopeTables {
            cos: t(rope.cos),
            sin: t(rope.sin),
            len,
        }
    }

    /// Rotate `x [B, heads, T, d]`'s rotary part (its first `2·half` dimensions; pairs
    /// `(i, i + half)`, transformers' `rotate_half`), the rest passing through.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = self.cos.dims()[3];
        let rest = (2 * half < d).then(|| x.clone().slice([0..b, 0..h, 0..t, 2 * half..d]));
        let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
        let x2 = x.slice([0..b, 0..h, 0..t, half..2 * half]);
        let (c, s) = if t == self.len {
            (self.cos.clone(), self.sin.clone())
        } else {
            (
                self.cos.clone().slice([0..1, 0..1, 0..t, 0..half]),
                self.sin.clone().slice([0..1, 0..1, 0..t, 0..half]),
            )
        };
        let mut parts = vec![
            x1.clone() * c.clone() - x2.clone() * s.clone(),
            x2 * c + x1 * s,
        ];
        parts.extend(rest);
        Tensor::cat(parts, 3)
    }

    /// Rotate `x [B, heads, T, d]` on the interleaved pairs `(2i, 2i + 1)` (Llama-4's complex
    /// RoPE): pair `i` turns by the same angle as `rotate_half`'s `(i, i + d/2)`.
    fn apply_interleaved(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = self.cos.dims()[3];
        assert_eq!(2 * half, d, "interleaved RoPE rotates the whole head");
        let pairs = x.reshape([b, h, t, half, 2]);
        let even = pairs.clone().narrow(4, 0, 1);
        let odd = pairs.narrow(4, 1, 1);
        let table = |m: &Tensor<4>| -> Tensor<5> {
            let m = if t == self.len { m.clone() } else { m.clone().slice([0..1, 0..1, 0..t, 0..half]) };
            m.unsqueeze_dim::<5>(4)
        };
        let (c, s) = (table(&self.cos), table(&self.sin));
        let out = Tensor::cat(
            vec![even.clone() * c.clone() - odd.clone() * s.clone(), odd * c + even * s],
            4,
        );
        out.reshape([b, h, t, d])
    }
}

/// Llama-4's weightless q/k norm over the last dimension: `x / sqrt(mean(x²) + eps)`.
fn l2_norm<const D: usize>(x: Tensor<D>, eps: f32) -> Tensor<D> {
    let ms = x.clone().square().mean_dim(D - 1);
    x * (ms + eps as f64).sqrt().recip()
}

/// RMSNorm over the last dimension (computed in f32, as transformers does).
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f32) -> Tensor<D> {
    let ms = x.clone().square().mean_dim(D - 1);
    let w = w.unsqueeze::<D>();
    x * (ms + eps as f64).sqrt().recip() * w
}

impl Net {
    /// Upload host weights (every tensor of the checkpoint) to `device`. Parameter `i` gets
    /// id `i + 1`, so optimizer state saved by one run attaches to the same tensors when a
    /// resumed run rebuilds the model.
    pub fn load(arch: &Arch, w: &HostWeights, device: &Device) -> anyhow::Result<Net> {
        let want = arch.slots.leaves().len();
        if w.tensors.len() != want {
            anyhow::bail!(
                "internal: the host weights hold {} tensors, the architecture {want}",
                w.tensors.len()
            );
        }
        let params = w
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let n = t.values.len();
                let mut tensor =
                    Tensor::<1>::from_data(TensorData::new(t.values.clone(), [n]), device);
                if device.is_autodiff() && !arch.is_frozen(i) {
                    tensor = tensor.require_grad();
                }
                Param::initialized(ParamId::from(i as u64 + 1), tensor)
            })
            .collect();
        Ok(Net { params })
    }

    /// Download every parameter into `w`: parameter `i` is host tensor `i`, the record made
    /// at load time (same roles, the dtypes `w` already records).
    pub fn store(&self, w: &mut HostWeights) -> anyhow::Result<()> {
        if w.tensors.len() != self.params.len() {
            anyhow::bail!(
                "internal: {} parameters for {} host tensors",
                self.params.len(),
                w.tensors.len()
            );
        }
        for (p, t) in self.params.iter().zip(&mut w.tensors) {
            t.values = p
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("cannot read {:?} back: {e:?}", t.role))?;
        }
        Ok(())
    }

    /// A parameter in its schema shape.
    pub fn get<const D: usize>(&self, s: &Slot) -> Tensor<D> {
        let shape: [usize; D] = s
            .shape
            .as_slice()
            .try_into()
            .unwrap_or_else(|_| panic!("internal: a rank-{D} view of shape {:?}", s.shape));
        self.params[s.index].val().reshape(shape)
    }

    fn ffn(&self, f: &Ffn<Slot>) -> FfnView {
        FfnView {
            gate: self.get(&f.gate),
            up: self.get(&f.up),
            down: self.get(&f.down),
        }
    }

    /// The weights of MoE layer `layer` (`None` for a dense layer).
    pub fn moe(&self, arch: &Arch, layer: usize) -> Option<MoeView> {
        let m = arch.slots.layers[layer].mlp.moe()?;
        Some(MoeView {
            router: self.get(&m.router),
            gate_up: self.get(&m.experts.gate_up),
            down: self.get(&m.experts.down),
            shared: m.shared.as_ref().map(|f| self.ffn(f)),
            shared_gate: m.shared_gate.as_ref().map(|g| self.get(g)),
            input_scaled: arch.config.expert_input_scaling,
        })
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
        let w = &arch.slots;
        let [b, t] = tokens.dims();
        let n = b * t;
        let ids = tokens.reshape([n]);
        let mut x = self.get::<2>(&w.embed).select(0, ids); // [N, H]
        let mask = causal_mask(t, cfg.sliding_window.clone(), cfg.attention_chunk.clone(), &x.device());
        // Llama-4's NoPE layers scale each position's queries by the attention temperature.
        let temperature = cfg.attn_temperature.map(|temp| {
            let v: Vec<f32> = (0..t).map(|p| temp.at(p)).collect();
            Tensor::<4>::from_data(TensorData::new(v, [1, 1, t, 1]), &x.device())
        });
        let mut routing = Vec::new();
        for (l, layer) in w.layers.iter().enumerate() {
            let Attention::Standard(attn) = &layer.attention else {
                anyhow::bail!("internal: the trainer builds standard attention only");
            };
            let normed = rms_norm(x.clone(), self.get(&layer.input_norm), cfg.rms_norm_eps);
            let temp = temperature.as_ref().filter(|_| !cfg.rope_layers[l]);
            x = x + self.attention(arch, attn, normed, b, t, rope, &mask[l], cfg.rope_layers[l], temp);
            let normed = rms_norm(x.clone(), self.get(&layer.post_attn_norm), cfg.rms_norm_eps);
            let mlp = match &layer.mlp {
                Mlp::Moe(_) => {
                    let moe = self.moe(arch, l).expect("a MoE layer has MoE weights");
                    let (y, r) = moe_forward(arch, &moe, normed, bias.layer(routing.len()))?;
                    routing.push(r);
                    y
                }
                Mlp::Dense(f) => self.ffn(f).forward(normed),
            };
            x = x + mlp;
        }
        let x = rms_norm(x, self.get(&w.final_norm), cfg.rms_norm_eps);
        let head: Tensor<2> = self.get(w.lm_head.as_ref().unwrap_or(&w.embed));
        let logits = x.matmul(head.transpose()).reshape([b, t, cfg.vocab_size]);
        Ok(Output { logits, routing })
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        arch: &Arch,
        w: &Gqa<Slot>,
        x: Tensor<2>,
        b: usize,
        t: usize,
        rope: &RopeTables,
        mask: &Tensor<4>,
        uses_rope: bool,
        temperature: Option<&Tensor<4>>,
    ) -> Tensor<2> {
        let cfg = &arch.config;
        let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps;
        let proj = |m: &Slot, bias: &Option<Slot>| {
            let y = x.clone().matmul(self.get::<2>(m).transpose());
            match bias {
                Some(bb) => y + self.get::<1>(bb).unsqueeze::<2>(),
                None => y,
            }
        };
        let norms = || {
            let get = |s: &Option<Slot>| {
                self.get::<1>(
                    s.as_ref()
                        .expect("the schema has q_norm and k_norm with q/k norm"),
                )
            };
            (get(&w.q_norm), get(&w.k_norm))
        };
        let mut q = proj(&w.q, &w.q_bias);
        let mut k = proj(&w.k, &w.k_bias);
        let mut v = proj(&w.v, &w.v_bias);
        if arch.qk_norm == QkNorm::FullWidth {
            let (qn, kn) = norms();
            (q, k) = (rms_norm(q, qn, eps), rms_norm(k, kn, eps));
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
            let (qn, kn) = norms();
            (q, k) = (rms_norm(q, qn, eps), rms_norm(k, kn, eps));
        }
        let (mut q, mut k) = (q.swap_dims(1, 2), k.swap_dims(1, 2));
        if uses_rope {
            (q, k) = if cfg.rope_interleave {
                (rope.apply_interleaved(q), rope.apply_interleaved(k))
            } else {
                (rope.apply(q), rope.apply(k))
            };
            if arch.qk_norm == QkNorm::L2AfterRope {
                (q, k) = (l2_norm(q, eps), l2_norm(k, eps));
            }
        }
        if let Some(temp) = temperature {
            q = q * temp.clone();
        }
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
        let out = ctx.matmul(self.get::<2>(&w.o).transpose());
        match &w.o_bias {
            Some(bb) => out + self.get::<1>(bb).unsqueeze::<2>(),
            None => out,
        }
    }
}

/// Additive attention masks `[1, 1, T, T]` per layer: 0 where a query may attend, −∞ above the
/// diagonal, outside a sliding window (key `j` is visible from `i` when `i − w < j ≤ i`) and
/// outside the query's chunk (Llama-4: `j` and `i` in the same `c`-sized block).
fn causal_mask(
    t: usize,
    windows: Vec<Option<usize>>,
    chunks: Vec<Option<usize>>,
    device: &Device,
) -> Vec<Tensor<4>> {
    let build = |(w, c): (Option<usize>, Option<usize>)| {
        let mut m = vec![0f32; t * t];
        for i in 0..t {
            let lo = w
                .map_or(0, |w| (i + 1).saturating_sub(w))
                .max(c.map_or(0, |c| i / c * c));
            for j in 0..t {
                if j > i || j < lo {
                    m[i * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(m, [1, 1, t, t]), device)
    };
    let mut cache: Vec<((Option<usize>, Option<usize>), Tensor<4>)> = Vec::new();
    windows
        .into_iter()
        .zip(chunks)
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
