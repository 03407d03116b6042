//! The training configuration: defaults, a TOML file, then command-line flags, in that order of
//! precedence. The resolved configuration is saved as `train.json` in the run directory, which
//! is what `--resume` continues with.

use super::schedule::Kind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Continue from this Hugging Face checkpoint (a grown model, say).
    pub init: Option<PathBuf>,
    /// Or start from scratch with an `init` preset.
    pub preset: Option<String>,
    /// Text file, directory or JSONL; `None`: the Rust documentation books.
    pub corpus: Option<PathBuf>,
    /// The JSONL field holding each document's text.
    pub text_field: String,
    /// `auto`, `cpu` or `gpu`.
    pub device: String,
    pub steps: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub schedule: Kind,
    pub warmup: usize,
    pub min_lr_ratio: f64,
    pub decay_fraction: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0: off).
    pub clip: f32,
    /// Coefficient of the Hugging Face load-balancing loss; `None`: the checkpoint's
    /// `router_aux_loss_coef` (0 if it has none).
    pub aux_coef: Option<f64>,
    /// Aux-loss-free balancing (DeepSeek-V3): per-expert selection bias update rate (0: off).
    pub bias_rate: f32,
    pub eval_every: usize,
    /// Held-out sequences per evaluation.
    pub eval_sequences: usize,
    /// Write a resumable checkpoint every this many steps (0: only the final one).
    pub save_every: usize,
    /// How many intermediate checkpoints to keep.
    pub keep_checkpoints: usize,
    pub log_every: usize,
    pub seed: u64,
    /// From-scratch initialisation std (transformers' `initializer_range`).
    pub init_std: f32,
    /// Tokenizer vocabulary when one has to be trained (default: the model's vocabulary).
    pub vocab_size: Option<usize>,
    /// The tokenizer to train with: a `tokenizer.json` or a directory holding one (with its
    /// `tokenizer_config.json`); default: the run's own, or the `--init` checkpoint's.
    pub tokenizer: Option<PathBuf>,
    /// Train a new tokenizer on the corpus even though the checkpoint brings none (its
    /// embeddings then learn new tokens).
    pub train_tokenizer: bool,
    /// Also write `metrics.csv`.
    pub csv: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            init: None,
            preset: None,
            corpus: None,
            text_field: "text".into(),
            device: "auto".into(),
            steps: 200,
            batch_size: 8,
            seq_len: 128,
            grad_accum: 1,
            lr: 3e-3,
            schedule: Kind::Cosine,
            warmup: 20,
            min_lr_ratio: 0.1,
            decay_fraction: 0.2,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 1.0,
            aux_coef: None,
            bias_rate: 0.0,
            eval_every: 50,
            eval_sequences: 16,
            save_every: 0,
            keep_checkpoints: 2,
            log_every: 1,
            seed: 0,
            init_std: 0.02,
            vocab_size: None,
            tokenizer: None,
            train_tokenizer: false,
            csv: false,
        }
    }
}

impl TrainConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        match (&self.init, &self.preset) {
            (Some(_), Some(_)) => bail!("pass either --init CHECKPOINT or --preset NAME, not both"),
            (None, None) => bail!("say what to train: --init CHECKPOINT (continue a checkpoint) or --preset NAME (from scratch)"),
            _ => {}
        }
        for (name, v) in [
            ("steps", self.steps),
            ("batch-size", self.batch_size),
            ("seq-len", self.seq_len),
            ("grad-accum", self.grad_accum),
            ("log-every", self.log_every),
        ] {
            if v == 0 {
                bail!("--{name} must be at least 1");
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        self.device.parse::<crate::device::Device>()?;
        if !(0.0..=1.0).contains(&self.decay_fraction) || !(0.0..=1.0).contains(&self.min_lr_ratio)
        {
            bail!("--decay-fraction and --min-lr-ratio must lie in [0, 1]");
        }
        Ok(())
    }
}
