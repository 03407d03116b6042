//! `moegrow train`: continued pre-training (or training from scratch) with burn.

use crate::train::config::TrainConfig;
use crate::train::run::{run as run_training, RunOptions};
use crate::train::schedule::Kind;
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory: metrics.jsonl, loss.png, checkpoints/, final/ (a Hugging Face checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// A TOML file with any of the options below (snake_case keys); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint (weights, optimizer state, data
    /// position); --steps may be raised.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing run in --out.
    #[arg(long)]
    pub force: bool,
    /// Print every logged step, not only evaluations.
    #[arg(long, short)]
    pub verbose: bool,
    /// Testing: SIGKILL this process right after the given step.
    #[arg(long, hide = true)]
    pub kill_after_step: Option<usize>,

    /// Continue training this Hugging Face checkpoint (for example a grown model).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Or train from scratch with an `init` preset (tiny, small, base100m, paper3b).
    #[arg(long)]
    pub preset: Option<String>,
    /// Text file, directory or JSONL (`text` field); default: the Rust documentation books.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The JSONL field holding each document's text (default `text`).
    #[arg(long)]
    pub text_field: Option<String>,
    /// auto (the GPU if it is hardware, else the CPU), cpu or gpu.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<Kind>,
    /// Linear warmup steps.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The schedule's floor as a fraction of --lr (cosine, wsd).
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// WSD: the share of the steps spent decaying.
    #[arg(long)]
    pub decay_fraction: Option<f64>,
    #[arg(long)]
    pub beta1: Option<f32>,
    #[arg(long)]
    pub beta2: Option<f32>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Global gradient-norm clip (0: off).
    #[arg(long)]
    pub clip: Option<f32>,
    /// Load-balancing loss coefficient (default: the checkpoint's router_aux_loss_coef).
    #[arg(long)]
    pub aux_coef: Option<f64>,
    /// Aux-loss-free balancing bias update rate (0: off).
    #[arg(long)]
    pub bias_rate: Option<f32>,
    /// Evaluate on held-out text every N steps (and at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long)]
    pub eval_sequences: Option<usize>,
    /// Write a resumable checkpoint every N steps.
    #[arg(long)]
    pub save_every: Option<usize>,
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    #[arg(long)]
    pub log_every: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub init_std: Option<f32>,
    /// Vocabulary of the tokenizer trained when the checkpoint brings none.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// The tokenizer to use: a tokenizer.json, or a directory with one (and its
    /// tokenizer_config.json). Default: the --init checkpoint's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Train a new byte-level BPE tokenizer on the corpus when the --init checkpoint has none.
    #[arg(long)]
    pub train_tokenizer: bool,
    /// Also write metrics.csv.
    #[arg(long)]
    pub csv: bool,
}

/// Defaults, then the TOML file, then the flags.
pub fn resolve(a: &Args) -> anyhow::Result<TrainConfig> {
    let mut c = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: invalid training configuration", p.display()))?
        }
        None => TrainConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        device,
        steps,
        batch_size,
        seq_len,
        grad_accum,
        lr,
        schedule,
        warmup,
        min_lr_ratio,
        decay_fraction,
        beta1,
        beta2,
        weight_decay,
        clip,
        bias_rate,
        eval_every,
        eval_sequences,
        save_every,
        keep_checkpoints,
        log_every,
        seed,
        init_std
    );
    if a.init.is_some() {
        c.init = a.init.clone();
        c.preset = None;
    }
    if a.preset.is_some() {
        c.preset = a.preset.clone();
        if a.init.is_none() {
            c.init = None;
        }
    }
    if let Some(f) = &a.text_field {
        c.text_field = f.clone();
    }
    if a.corpus.is_some() {
        c.corpus = a.corpus.clone();
    }
    if a.aux_coef.is_some() {
        c.aux_coef = a.aux_coef;
    }
    if a.vocab_size.is_some() {
        c.vocab_size = a.vocab_size;
    }
    c.csv |= a.csv;
    c.train_tokenizer |= a.train_tokenizer;
    if a.tokenizer.is_some() {
        c.tokenizer = a.tokenizer.clone();
    }
    Ok(c)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    run_training(
        cfg,
        RunOptions {
            out: a.out.clone(),
            resume: a.resume,
            force: a.force,
            kill_after: a.kill_after_step,
            verbose: a.verbose,
        },
    )?;
    Ok(())
}
