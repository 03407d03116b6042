//! The full forward pass on the GPU, for every supported family: the same computation as
//! [`crate::reference::ReferenceModel`], recorded into one command buffer — embeddings, norms,
//! attention (GQA with q/k norms, or MLA), routing with top-k on the device, grouped experts,
//! shared experts, LM head — submitted once and read back once.
//!
//! The weights are the schema's tree with device-side leaves: each tensor is uploaded as it is
//! read (bf16/f16 unpacked to f32 on the host), matrices split by rows and stacked experts by
//! whole experts where they exceed the storage-binding limit.

mod attention;
mod mlp;

use super::context::{Gpu, GpuBuffer};
use super::ops::*;
use crate::config::{MlpKind, ModelConfig};
use crate::error::{Error, Result};
use crate::reference::Mat;
use crate::rope::Rope;
use crate::schema::{read_f32, schema, Attention, Spec, TensorSource, Weights};

pub struct GpuModel<'g> {
    gpu: &'g Gpu,
    pub config: ModelConfig,
    weights: Weights<GpuMatrix>,
}

/// What a GPU forward pass returns (hidden states and router logits only when asked for).
#[derive(Debug)]
pub struct GpuForward {
    pub logits: Mat,
    pub hidden_states: Vec<Mat>,
    pub router_logits: Vec<Option<Mat>>,
}

/// One schema leaf on the device: vectors as one row, matrices as they are, stacked experts
/// `[E, rows, cols]` split by whole experts.
fn upload(gpu: &Gpu, s: &Spec, values: &[f32]) -> Result<GpuMatrix> {
    Ok(match s.shape.as_slice() {
        [n] => GpuMatrix::upload(gpu, 1, *n, values),
        [r, c] => GpuMatrix::upload(gpu, *r, *c, values),
        [e, r, c] => upload_experts(gpu, *e, *r, *c, values),
        shape => {
            return Err(Error::Invalid(format!(
                "internal: cannot upload {:?} of shape {shape:?}",
                s.role
            )))
        }
    })
}

/// Everything a forward pass records into, shared by the layer functions.
struct Pass<'a, 'g> {
    gpu: &'g Gpu,
    cfg: &'a ModelConfig,
    /// Tokens in this pass.
    t: usize,
    /// The rotary table for positions `0..t` ([`Rope::packed`]).
    rope: GpuBuffer,
}

impl<'g> GpuModel<'g> {
    /// Upload a model's weights from a checkpoint or any other source, tensor by tensor.
    /// Multi-token-prediction blocks are not uploaded: the forward pass ignores them.
    pub fn load<S: TensorSource + ?Sized>(gpu: &'g Gpu, src: &S) -> Result<GpuModel<'g>> {
        let config = src.config().clone();
        config.check_computable()?;
        if config.linear_attention.is_some() {
            return Err(crate::Error::Invalid(format!(
                "the GPU runtime has no Gated DeltaNet, output-gated attention or zero-centred norms, which {} uses: run its forward pass on the CPU (the default --device)",
                config.family.name()
            )));
        }
        let mut tree = schema(&config);
        tree.mtp.clear();
        let weights = tree.try_map(&mut |s| upload(gpu, s, &read_f32(src, s.role)?))?;
        Ok(GpuModel {
            gpu,
            config,
            weights,
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
        cfg.check_length(t)?;
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
        let w = &self.weights;
        let pass = Pass {
            gpu,
            cfg,
            t,
            rope: gpu.upload(&Rope::for_model(cfg, t).packed()),
        };
        let mut rec = gpu.encoder();
        let x = gpu.zeros(t * h);
        let normed = gpu.zeros(t * h);
        let tok_buf = gpu.upload_u32(tokens);
        embed(&mut rec, &tok_buf, &w.embed, &x);
        let hidden = details.then(|| gpu.zeros((cfg.num_layers + 1) * t * h));
        let mut router_logits = Vec::new();
        let scratch = cfg.mlp.contains(&MlpKind::Moe).then(|| {
            MoeScratch::new(
                gpu,
                t,
                cfg.moe.top_k,
                cfg.moe.num_experts,
                h,
                cfg.moe.intermediate,
            )
        });
        for (i, layer) in w.layers.iter().enumerate() {
            if let Some(hs) = &hidden {
                rec.copy(&x, 0, hs, i * t * h, t * h);
            }
            let eps = cfg.rms_norm_eps;
            rms_norm(&mut rec, &x, 0, t, layer.input_norm.vector(), eps, &normed);
            match &layer.attention {
                Attention::Standard(a) => pass.standard_attention(&mut rec, a, &normed, &x, i),
                Attention::Latent(a) => pass.latent_attention(&mut rec, a, &normed, &x),
                Attention::Linear(_) => unreachable!("GpuModel::load refuses Gated DeltaNet"),
            }
            rms_norm(&mut rec, &x, 0, t, layer.post_attn_norm.vector(), eps, &normed);
            router_logits.push(pass.mlp(&mut rec, &layer.mlp, &normed, &x, scratch.as_ref()));
        }
        rms_norm(
            &mut rec,
            &x,
            0,
            t,
            w.final_norm.vector(),
            cfg.rms_norm_eps,
            &normed,
        );
        let logits = gpu.zeros(t * cfg.vocab_size);
        let head = w.lm_head.as_ref().unwrap_or(&w.embed);
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
}

impl Pass<'_, '_> {
    /// `out (+)= x · wᵀ (+ bias)` for `self.t` rows.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        rec: &mut super::Recorder,
        x: &GpuBuffer,
        w: &GpuMatrix,
        bias: Option<&GpuMatrix>,
        out: &GpuBuffer,
        accumulate: bool,
    ) {
        matmul(
            rec,
            x,
            Region::dense(self.t, w.cols),
            w,
            bias.map(GpuMatrix::vector),
            out,
            Region::dense(self.t, w.rows),
            accumulate,
        );
    }

    /// A fresh `[t, w.rows]` buffer holding `x · wᵀ (+ bias)`.
    fn project(
        &self,
        rec: &mut super::Recorder,
        x: &GpuBuffer,
        w: &GpuMatrix,
        bias: Option<&GpuMatrix>,
    ) -> GpuBuffer {
        let out = self.gpu.zeros(self.t * w.rows);
        self.linear(rec, x, w, bias, &out, false);
        out
    }
}
