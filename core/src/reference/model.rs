//! The whole reference model: weights in f32 (the schema's tree with `Vec<f32>` leaves) and a
//! forward pass that returns everything the other parts of moegrow check against (logits,
//! per-layer hidden states, router logits and the experts each token chose).

use super::attention;
use super::ops::{linear, linear_bias, rms_norm_rows, sigmoid, swiglu, Mat, Rope};
use super::routing::{route, Choice};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::schema::{read_f32, schema, Attention, Ffn, Layer, Mlp, Moe, TensorSource, Weights};

pub struct ReferenceModel {
    pub config: ModelConfig,
    pub weights: Weights<Vec<f32>>,
}

/// What one forward pass produces.
pub struct ForwardOutput {
    /// `[T, vocab]`.
    pub logits: Mat,
    /// `num_layers + 1` entries as transformers returns them: the input of each layer, then the
    /// output of the final norm.
    pub hidden_states: Vec<Mat>,
    /// Per layer: `[T, E]` router logits for MoE layers, `None` for dense ones.
    pub router_logits: Vec<Option<Mat>>,
    /// Per layer: each token's chosen experts and weights (MoE layers only).
    pub choices: Vec<Option<Vec<Choice>>>,
}

/// `down(silu(gate·x) ⊙ up·x)` of a dense or shared block.
fn ffn(x: &Mat, f: &Ffn<Vec<f32>>) -> Mat {
    let inter = f.gate.len() / x.cols.max(1);
    swiglu(x, &f.gate, &f.up, &f.down, inter)
}

impl ReferenceModel {
    /// Read a model's weights as f32, from a checkpoint or any other source (a growth plan
    /// applied to one, the trainer's weights). Multi-token-prediction blocks are not loaded:
    /// the forward pass ignores them, as transformers does.
    pub fn load<S: TensorSource + ?Sized>(src: &S) -> Result<ReferenceModel> {
        let config = src.config().clone();
        config.check_computable()?;
        let mut tree = schema(&config);
        tree.mtp.clear();
        let weights = tree.try_map(&mut |s| load_leaf(src, &config, s))?;
        Ok(ReferenceModel { config, weights })
    }

    pub fn forward(&self, tokens: &[u32]) -> Result<ForwardOutput> {
        let cfg = &self.config;
        let w = &self.weights;
        let (h, t_len) = (cfg.hidden_size, tokens.len());
        check_tokens(cfg, tokens)?;
        let mut x = Mat::zeros(t_len, h);
        for (t, &tok) in tokens.iter().enumerate() {
            let tok = tok as usize;
            x.row_mut(t).copy_from_slice(&w.embed[tok * h..(tok + 1) * h]);
        }
        let rope = Rope::for_model(cfg, t_len);
        let mut hidden_states = Vec::with_capacity(cfg.num_layers + 1);
        let mut router_logits = Vec::with_capacity(cfg.num_layers);
        let mut choices = Vec::with_capacity(cfg.num_layers);
        for (i, layer) in w.layers.iter().enumerate() {
            hidden_states.push(x.clone());
            let (logits, chosen) = layer_forward(cfg, layer, i, &mut x, &rope);
            router_logits.push(logits);
            choices.push(chosen);
        }
        let normed = rms_norm_rows(&x, &w.final_norm, cfg.rms_norm_eps);
        let logits = linear(
            &normed,
            w.lm_head.as_deref().unwrap_or(&w.embed),
            cfg.vocab_size,
        );
        hidden_states.push(normed);
        Ok(ForwardOutput {
            logits,
            hidden_states,
            router_logits,
            choices,
        })
    }
}

/// The forward pass one layer at a time, for checkpoints whose f32 weights do not fit in
/// memory: only one layer's weights are decoded at a time, the embedding is read row by row
/// for the tokens at hand and the head in chunks of rows. Between steps the caller may drop
/// what it has read ([`crate::Checkpoint::release_memory`], or in the browser evict the
/// fetched ranges and fetch the next layer's): [`LayerByLayer::roles_of_next`] says which
/// tensors the next step reads.
pub struct LayerByLayer {
    config: ModelConfig,
    rope: Rope,
    x: Mat,
    next: usize,
    hidden_states: Vec<Mat>,
    router_logits: Vec<Option<Mat>>,
    choices: Vec<Option<Vec<Choice>>>,
}

/// At least one token, every one inside the vocabulary.
fn check_tokens(cfg: &ModelConfig, tokens: &[u32]) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::Invalid("forward needs at least one token".into()));
    }
    cfg.check_length(tokens.len())?;
    match tokens.iter().position(|&t| t as usize >= cfg.vocab_size) {
        Some(t) => Err(Error::Invalid(format!(
            "token id {} at position {t} is outside the vocabulary (size {})",
            tokens[t], cfg.vocab_size
        ))),
        None => Ok(()),
    }
}

/// Rows of the LM head decoded at once.
const HEAD_ROWS: usize = 4096;

/// Rows `rows` of a `[n, cols]` matrix of `src`, decoded (the embedding and head are never
/// block-quantised, so their rows decode alone).
fn read_rows<S: TensorSource + ?Sized>(
    src: &S,
    role: crate::Role,
    cols: usize,
    rows: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    if src.quant_of(role)?.is_some() {
        let all = read_f32(src, role)?;
        return Ok(all[rows.start * cols..rows.end * cols].to_vec());
    }
    let dtype = src.dtype_of(role)?;
    let bytes = src.read(role)?;
    let (Some(a), Some(b)) = (
        dtype.bytes_for(rows.start * cols),
        dtype.bytes_for(rows.end * cols),
    ) else {
        return read_f32(src, role).map(|v| v[rows.start * cols..rows.end * cols].to_vec());
    };
    crate::dtype::try_decode_f32(dtype, &bytes[a..b]).ok_or_else(|| {
        Error::Invalid(format!(
            "{} is stored as {}, which moegrow cannot decode",
            crate::schema::layout::display_name(src.config(), role),
            dtype.name()
        ))
    })
}

impl LayerByLayer {
    /// Embed `tokens` (reads only their rows of the embedding).
    pub fn start<S: TensorSource + ?Sized>(src: &S, tokens: &[u32]) -> Result<LayerByLayer> {
        let cfg = src.config().clone();
        cfg.check_computable()?;
        let (h, t_len) = (cfg.hidden_size, tokens.len());
        check_tokens(&cfg, tokens)?;
        let mut x = Mat::zeros(t_len, h);
        for (t, &tok) in tokens.iter().enumerate() {
            let tok = tok as usize;
            x.row_mut(t)
                .copy_from_slice(&read_rows(src, crate::Role::Embed, h, tok..tok + 1)?);
        }
        src.release(crate::Role::Embed);
        Ok(LayerByLayer {
            rope: Rope::for_model(&cfg, t_len),
            hidden_states: Vec::with_capacity(cfg.num_layers + 1),
            router_logits: Vec::with_capacity(cfg.num_layers),
            choices: Vec::with_capacity(cfg.num_layers),
            config: cfg,
            x,
            next: 0,
        })
    }

    /// Layers still to run.
    pub fn remaining(&self) -> usize {
        self.config.num_layers - self.next
    }

    /// The tensors the next step reads: the next layer's, or the final norm and the head.
    pub fn roles_of_next(&self) -> Vec<crate::Role> {
        let cfg = &self.config;
        if self.next < cfg.num_layers {
            let mut v = Vec::new();
            crate::schema::layer(cfg, crate::roles::LayerSlot::Decoder(self.next))
                .visit(&mut |s| v.push(s.role));
            v
        } else {
            let head = if cfg.tie_word_embeddings {
                crate::Role::Embed
            } else {
                crate::Role::LmHead
            };
            vec![crate::Role::FinalNorm, head]
        }
    }

    /// Decode the next layer's weights, run it, drop them.
    pub fn step<S: TensorSource + ?Sized>(&mut self, src: &S) -> Result<()> {
        let i = self.next;
        let cfg = &self.config;
        let layer = crate::schema::layer(cfg, crate::roles::LayerSlot::Decoder(i))
            .try_map(&mut |s| load_leaf(src, cfg, s))?;
        self.hidden_states.push(self.x.clone());
        let (logits, chosen) = layer_forward(cfg, &layer, i, &mut self.x, &self.rope);
        self.router_logits.push(logits);
        self.choices.push(chosen);
        self.next += 1;
        Ok(())
    }

    /// The final norm and the head, read in chunks of rows.
    pub fn finish<S: TensorSource + ?Sized>(mut self, src: &S) -> Result<ForwardOutput> {
        while self.remaining() > 0 {
            self.step(src)?;
        }
        let cfg = &self.config;
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let mut final_norm = read_f32(src, crate::Role::FinalNorm)?;
        if cfg.zero_centered_norms {
            final_norm.iter_mut().for_each(|w| *w += 1.0);
        }
        let normed = rms_norm_rows(&self.x, &final_norm, cfg.rms_norm_eps);
        let head = if cfg.tie_word_embeddings {
            crate::Role::Embed
        } else {
            crate::Role::LmHead
        };
        let t = normed.rows;
        let mut logits = Mat::zeros(t, v);
        for start in (0..v).step_by(HEAD_ROWS) {
            let end = (start + HEAD_ROWS).min(v);
            let w = read_rows(src, head, h, start..end)?;
            src.release(head);
            let part = linear(&normed, &w, end - start);
            for r in 0..t {
                logits.row_mut(r)[start..end].copy_from_slice(part.row(r));
            }
        }
        self.hidden_states.push(normed);
        Ok(ForwardOutput {
            logits,
            hidden_states: self.hidden_states,
            router_logits: self.router_logits,
            choices: self.choices,
        })
    }
}

/// The forward pass of any model, one layer's weights in memory at a time; `between` runs
/// after each layer (a checkpoint's `release_memory` keeps the resident set flat).
pub fn forward_streamed<S: TensorSource + ?Sized>(
    src: &S,
    tokens: &[u32],
    mut between: impl FnMut(),
) -> Result<ForwardOutput> {
    let mut f = LayerByLayer::start(src, tokens)?;
    while f.remaining() > 0 {
        f.step(src)?;
        between();
    }
    f.finish(src)
}

/// A leaf's values as the math uses them: Qwen3-Next's zero-centred norm weights `w` scale by
/// `1 + w` (in f32, as transformers computes them); its DeltaNet's gated norm does not.
fn load_leaf<S: TensorSource + ?Sized>(src: &S, cfg: &ModelConfig, s: &crate::schema::Spec) -> Result<Vec<f32>> {
    let mut v = read_f32(src, s.role)?;
    let gated = matches!(
        s.role.layer_part(),
        Some((_, crate::LayerRole::Attn(crate::roles::AttnRole::LinNorm)))
    );
    if cfg.zero_centered_norms && s.kind == crate::schema::Kind::Norm && !gated {
        v.iter_mut().for_each(|w| *w += 1.0);
    }
    Ok(v)
}

/// Decoder layer `i` applied to the residual stream `x` in place; returns the router logits and
/// the experts chosen (MoE layers).
pub fn layer_forward(
    cfg: &ModelConfig,
    layer: &Layer<Vec<f32>>,
    i: usize,
    x: &mut Mat,
    rope: &Rope,
) -> (Option<Mat>, Option<Vec<Choice>>) {
    let normed = rms_norm_rows(x, &layer.input_norm, cfg.rms_norm_eps);
    let attn = match &layer.attention {
        Attention::Standard(a) => attention::standard(cfg, a, &normed, rope, i),
        Attention::Latent(a) => attention::latent(cfg, a, &normed, rope),
        Attention::Linear(a) => super::linear_attention::gated_delta_net(cfg, a, &normed),
    };
    x.add_assign(&attn);
    let normed = rms_norm_rows(x, &layer.post_attn_norm, cfg.rms_norm_eps);
    let (out, logits, chosen) = match &layer.mlp {
        Mlp::Dense(f) => (ffn(&normed, f), None, None),
        Mlp::Moe(m) => {
            let (out, logits, chosen) = moe_forward(cfg, m, &normed);
            (out, Some(logits), Some(chosen))
        }
    };
    x.add_assign(&out);
    (logits, chosen)
}

/// Router, then each expert over the tokens routed to it (gathered into one matrix), then a
/// weighted scatter back; plus the shared expert.
fn moe_forward(cfg: &ModelConfig, m: &Moe<Vec<f32>>, x: &Mat) -> (Mat, Mat, Vec<Choice>) {
    let moe = &cfg.moe;
    let (h, inter) = (cfg.hidden_size, moe.intermediate);
    let logits = linear_bias(x, &m.router, m.router_logit_bias.as_deref(), moe.num_experts);
    let chosen: Vec<Choice> = (0..x.rows)
        .map(|t| {
            route(
                logits.row(t),
                &moe.router,
                moe.top_k,
                m.router_bias.as_deref(),
            )
        })
        .collect();
    let mut out = Mat::zeros(x.rows, x.cols);
    let block = h * inter;
    for e in 0..moe.num_experts {
        let routed: Vec<(usize, f32)> = chosen
            .iter()
            .enumerate()
            .filter_map(|(t, c)| {
                c.experts
                    .iter()
                    .position(|&x| x == e)
                    .map(|k| (t, c.weights[k]))
            })
            .collect();
        if routed.is_empty() {
            continue;
        }
        let mut xs = Mat::zeros(routed.len(), x.cols);
        for (r, (t, w)) in routed.iter().enumerate() {
            xs.row_mut(r).copy_from_slice(x.row(*t));
            // Llama-4: the weight scales the expert's input, and the output is added as is.
            if cfg.expert_input_scaling {
                xs.row_mut(r).iter_mut().for_each(|v| *v *= w);
            }
        }
        // Expert e of the stacked leaves: gate rows, then up rows, of gate_up[e]; down[e];
        // and gpt-oss's biases.
        let gu = &m.experts.gate_up[2 * e * block..2 * (e + 1) * block];
        let gub = m.experts.gate_up_bias.as_ref().map(|b| &b[2 * e * inter..2 * (e + 1) * inter]);
        let mut g = linear_bias(&xs, &gu[..block], gub.map(|b| &b[..inter]), inter);
        let u = linear_bias(&xs, &gu[block..], gub.map(|b| &b[inter..]), inter);
        let act = cfg.expert_act;
        g.data.iter_mut().zip(&u.data).for_each(|(g, u)| *g = act.apply(*g, *u));
        let ys = linear_bias(
            &g,
            &m.experts.down[e * block..(e + 1) * block],
            m.experts.down_bias.as_ref().map(|b| &b[e * h..(e + 1) * h]),
            h,
        );
        for (r, (t, w)) in routed.iter().enumerate() {
            let w = if cfg.expert_input_scaling { 1.0 } else { *w };
            out.row_mut(*t)
                .iter_mut()
                .zip(ys.row(r))
                .for_each(|(o, y)| *o += w * y);
        }
    }
    if let Some(shared) = &m.shared {
        let mut ys = ffn(x, shared);
        if let Some(g) = &m.shared_gate {
            let gates = linear(x, g, 1);
            for t in 0..x.rows {
                let s = sigmoid(gates.data[t]);
                ys.row_mut(t).iter_mut().for_each(|v| *v *= s);
            }
        }
        out.add_assign(&ys);
    }
    (out, logits, chosen)
}
