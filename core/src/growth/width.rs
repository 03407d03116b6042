//! Width growth: every routed expert duplicated `M` times (E → M·E), top-k × M, router rows
//! and routing bias copied with the experts, small Gaussian noise on the copies.
//!
//! With no noise the function is kept exactly: softmax splits a twin's probability evenly, so
//! with top-(M·k) both twins are chosen and their weights add up to the original's; for sigmoid
//! scores without renormalisation each twin gets the full score, so the copies' down
//! projections are scaled by 1/M. Group-limited routing scales `n_group` and `topk_group` with
//! the expert count (appended copies form groups of twins).

use crate::config::{ModelConfig, Scoring};
use crate::error::{Error, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseOn {
    /// Noise on the copies only (the paper).
    Copies,
    /// `+ε` on the original, `−ε` on its copy: the pair's average is unchanged, so the function
    /// is kept to second order (×2 only).
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewExperts {
    /// Copies of existing experts (the method).
    Copy,
    /// Freshly drawn N(0, σ²) experts and router rows (the ablation baseline).
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuxCoef {
    Keep,
    /// Divide `router_aux_loss_coef` by M: the HF aux loss's balanced value is top-k, which
    /// grows M-fold.
    Scale,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WidthStep {
    pub factor: usize,
    /// New experts as `e0, e0', e1, e1', …` instead of appended after the originals.
    pub interleave: bool,
    /// Noise std relative to each copied tensor's std (0.01 in the paper).
    pub noise: f32,
    pub noise_on: NoiseOn,
    pub router_noise: bool,
    pub new_experts: NewExperts,
    pub aux_coef: AuxCoef,
}

impl Default for WidthStep {
    fn default() -> Self {
        WidthStep {
            factor: 2,
            interleave: false,
            noise: 0.01,
            noise_on: NoiseOn::Copies,
            router_noise: true,
            new_experts: NewExperts::Copy,
            aux_coef: AuxCoef::Keep,
        }
    }
}

impl WidthStep {
    /// For new expert `j` of `m·e` experts: the source expert and which copy it is (0 = the
    /// original position's occupant).
    pub fn source(&self, j: usize, e: usize) -> (usize, usize) {
        if self.interleave {
            (j / self.factor, j % self.factor)
        } else {
            (j % e, j / e)
        }
    }

    pub fn validate(&self, cfg: &ModelConfig) -> Result<()> {
        if self.factor == 0 {
            return Err(Error::Invalid("--experts must be at least 1".into()));
        }
        if cfg.moe_layers().next().is_none() {
            return Err(Error::Invalid(
                "the source has no MoE layers to widen".into(),
            ));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::Invalid(format!(
                "α must be a non-negative number, not {}",
                self.noise
            )));
        }
        if self.noise_on == NoiseOn::Both && self.factor != 2 {
            return Err(Error::Invalid(
                "--noise-on both pairs +ε with −ε and needs --experts 2".into(),
            ));
        }
        if self.interleave && cfg.moe.router.group_limit.is_some() {
            return Err(Error::Invalid(format!(
                "{} routes within contiguous expert groups; interleaved copies would split them. Use appended copies",
                cfg.family.name()
            )));
        }
        Ok(())
    }

    /// Sigmoid scores without renormalisation give each twin the full weight: the copies'
    /// down projections carry 1/M of the output each.
    pub fn down_scale(&self, cfg: &ModelConfig) -> f32 {
        let r = &cfg.moe.router;
        if r.scoring == Scoring::Sigmoid && !r.normalize && self.new_experts == NewExperts::Copy {
            1.0 / self.factor as f32
        } else {
            1.0
        }
    }

    /// A correction bias added to *softmax* probabilities (ERNIE-4.5): M copies of an expert
    /// share its probability (each gets p/M), so the copies' biases carry 1/M too and every
    /// selection compares the same sums, scaled (`p/M + b/M`). Sigmoid scores (DeepSeek) do
    /// not change with the expert count, nor do their biases.
    pub fn bias_scale(&self, cfg: &ModelConfig) -> f32 {
        let r = &cfg.moe.router;
        if r.scoring == Scoring::Softmax && r.correction_bias {
            1.0 / self.factor as f32
        } else {
            1.0
        }
    }

    /// The wider model's config, and notes for the user.
    pub fn grow_config(
        &self,
        cfg: &ModelConfig,
    ) -> Result<(serde_json::Map<String, Value>, Vec<String>)> {
        let m = self.factor;
        let mut raw = cfg.raw.clone();
        let mut notes = Vec::new();
        let experts = cfg.moe.num_experts * m;
        let mut wrote = false;
        for key in ["num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"] {
            if raw.contains_key(key) {
                raw.insert(key.into(), experts.into());
                wrote = true;
            }
        }
        if !wrote {
            return Err(Error::config("no expert-count key to update"));
        }
        // ERNIE-4.5 spells top-k `moe_k` (transformers maps `num_experts_per_tok` onto it, so
        // writing both would leave one to win).
        let topk_key = if raw.contains_key("moe_k") { "moe_k" } else { "num_experts_per_tok" };
        raw.insert(topk_key.into(), (cfg.moe.top_k * m).into());
        // gpt-oss's hub config also carries its original spelling.
        if raw.contains_key("experts_per_token") {
            raw.insert("experts_per_token".into(), (cfg.moe.top_k * m).into());
        }
        if let Some(g) = cfg.moe.router.group_limit {
            raw.insert("n_group".into(), (g.n_group * m).into());
            raw.insert("topk_group".into(), (g.topk_group * m).into());
            notes.push(format!(
                "n_group {} → {}, topk_group {} → {}",
                g.n_group,
                g.n_group * m,
                g.topk_group,
                g.topk_group * m
            ));
        }
        if self.down_scale(cfg) != 1.0 {
            notes.push(format!(
                "sigmoid routing without renormalisation: every copy's down projection scaled by 1/{m} so the function is kept"
            ));
        }
        if self.bias_scale(cfg) != 1.0 {
            notes.push(format!(
                "softmax routing with a selection bias: every copy's correction bias scaled by 1/{m}, as its probability is, so the same experts are chosen"
            ));
        }
        if let Some(c) = cfg.raw.get("router_aux_loss_coef").and_then(Value::as_f64) {
            match self.aux_coef {
                AuxCoef::Keep => notes.push(format!(
                    "router_aux_loss_coef kept at {c}: the HF aux loss's balanced value is top-k, so its pressure grows {m}×; --aux-coef scale divides it by {m}"
                )),
                AuxCoef::Scale => {
                    raw.insert("router_aux_loss_coef".into(), (c / m as f64).into());
                    notes.push(format!("router_aux_loss_coef {c} → {} (keeps the aux loss's pressure)", c / m as f64));
                }
            }
        }
        Ok((raw, notes))
    }
}
