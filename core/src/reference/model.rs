//! The whole reference model: weights in f32 (the schema's tree with `Vec<f32>` leaves) and a
//! forward pass that returns everything the other parts of moegrow check against (logits,
//! per-layer hidden states, router logits and the experts each token chose).

use super::attention;
use super::ops::{linear, rms_norm_rows, sigmoid, swiglu, Mat, Rope};
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
        let weights = tree.try_map(&mut |s| read_f32(src, s.role))?;
        Ok(ReferenceModel { config, weights })
    }

    pub fn forward(&self, tokens: &[u32]) -> Result<ForwardOutput> {
        let cfg = &self.config;
        let w = &self.weights;
        let (h, t_len) = (cfg.hidden_size, tokens.len());
        if t_len == 0 {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        let mut x = Mat::zeros(t_len, h);
        for (t, &tok) in tokens.iter().enumerate() {
            let tok = tok as usize;
            if tok >= cfg.vocab_size {
                return Err(Error::Invalid(format!(
                    "token id {tok} at position {t} is outside the vocabulary (size {})",
                    cfg.vocab_size
                )));
            }
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
        Attention::Standard(a) => attention::standard(cfg, a, &normed, rope, cfg.sliding_window[i]),
        Attention::Latent(a) => attention::latent(cfg, a, &normed, rope),
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
    let logits = linear(x, &m.router, moe.num_experts);
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
        for (r, (t, _)) in routed.iter().enumerate() {
            xs.row_mut(r).copy_from_slice(x.row(*t));
        }
        // Expert e of the stacked leaves: gate rows, then up rows, of gate_up[e]; down[e].
        let gu = &m.experts.gate_up[2 * e * block..2 * (e + 1) * block];
        let ys = swiglu(
            &xs,
            &gu[..block],
            &gu[block..],
            &m.experts.down[e * block..(e + 1) * block],
            inter,
        );
        for (r, (t, w)) in routed.iter().enumerate() {
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
