//! `moegrow experiment`: the paper's sunk-cost study in miniature. A base model is trained
//! with warmup-stable-decay and saved at several sunk-compute points around its
//! Chinchilla-optimal compute; checkpoints are grown and trained on for a fixed extra compute
//! (constant LR, fresh optimizer) beside a from-scratch model of the grown size; ablations cover
//! the depth method and factor, width noise, growth order and a fixed total budget. Writes
//! `results.json`, `report.md` and plots, and states per claim whether it reproduced.

pub mod arms;
pub mod presets;
pub mod probe;
pub mod report;

use crate::train::config::TrainConfig;
use crate::train::run::{run as run_training, RunOptions};
use crate::train::schedule::Kind;
use anyhow::Context;
use moegrow_core::analysis::param_counts_for;
use moegrow_core::{DType, ModelConfig};
use presets::study_preset;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// tiny (a smoke test of every arm, minutes), quick (≤15 min on a 2-core CPU), standard
    /// (about an hour on a CPU), gpu (about 10 minutes on one large GPU).
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Study directory; rerunning with the same directory skips what is finished.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the preset's device (auto, cpu, gpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Text file, directory or JSONL; default: the Rust documentation books.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
}

/// The base run and its saved checkpoints (`base/done.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct BaseDone {
    preset: String,
    seed: u64,
    checkpoints: Vec<PathBuf>,
    sunk: Vec<f64>,
    steps: Vec<usize>,
    seconds: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut p = study_preset(&a.preset)?;
    if let Some(d) = &a.device {
        p.device = d.clone();
    }
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = Instant::now();
    let config = ModelConfig::from_json(p.model.config_json(DType::F32))?;
    let counts = param_counts_for(&config);
    let n_a = counts.activated as f64;
    let fc = 120.0 * n_a * n_a;
    let per_step = 6.0 * n_a * (p.batch_size * p.seq_len) as f64;
    let unit = ((p.checkpoints[0] * fc / per_step).round() as usize).max(1);
    let ckpt_steps: Vec<usize> = p
        .checkpoints
        .iter()
        .map(|c| ((c / p.checkpoints[0]).round() as usize).max(1) * unit)
        .collect();
    let base_steps = *ckpt_steps.last().expect("at least one checkpoint");
    println!(
        "study {}: base {} layers, {} experts top-{}, {:.1}K activated parameters; Chinchilla compute F_c = 120·N_a² = {:.3e} FLOPs ({} steps of {} tokens); checkpoints at steps {:?}",
        p.name,
        config.num_layers,
        config.moe.num_experts,
        config.moe.top_k,
        n_a / 1e3,
        fc,
        (fc / per_step).round(),
        p.batch_size * p.seq_len,
        ckpt_steps
    );

    // 1. The base run (skipped when done).
    let base_dir = out.join("base");
    let done_path = base_dir.join("done.json");
    let base: BaseDone = match std::fs::read_to_string(&done_path)
        .ok()
        .and_then(|t| serde_json::from_str::<BaseDone>(&t).ok())
    {
        Some(b) => {
            anyhow::ensure!(
                b.checkpoints.len() == ckpt_steps.len() && b.sunk.len() == ckpt_steps.len(),
                "{} lists {} checkpoints and {} sunk-compute values, the preset has {}; delete it to retrain the base",
                done_path.display(),
                b.checkpoints.len(),
                b.sunk.len(),
                ckpt_steps.len()
            );
            anyhow::ensure!(
                b.preset == p.name && b.seed == a.seed && b.steps == ckpt_steps,
                "{} holds a study with preset `{}` and seed {}; use another --out for preset `{}` seed {}",
                out.display(),
                b.preset,
                b.seed,
                p.name,
                a.seed
            );
            println!("[base] finished earlier; reusing {}", base_dir.display());
            b
        }
        None => train_base(&p, &config, &base_dir, &ckpt_steps, &a)?,
    };
    std::fs::write(&done_path, serde_json::to_string_pretty(&base)? + "\n")?;

    // 2. Probe tokens for expert load: held-out text in the base's tokenizer.
    let probe = probe_tokens(
        &base_dir,
        a.corpus.as_deref(),
        if p.name == "tiny" { 32 } else { 256 },
    )?;
    let base_final = crate::cmd::open(base.checkpoints.last().expect("checkpoints"))?;
    let base_probe = probe.measure(&base_final)?;
    let base_profile = moegrow_core::analysis::expert_norm_profile(&base_final)?;
    drop(base_final);

    // 3. The arms.
    let list = arms::all(&p, &base.sunk, fc, a.seed);
    let mut results = Vec::new();
    // Whole-study progress by compute: the base's plus every arm's extra FLOPs.
    let base_flops = *base.sunk.last().expect("checkpoints");
    let all_flops = base_flops + list.iter().map(|x| x.extra_flops).sum::<f64>();
    let mut done_flops = base_flops;
    let mut timed = (0.0f64, 0.0f64); // (seconds, FLOPs) of arms trained in this process
    for (i, arm) in list.iter().enumerate() {
        let t = Instant::now();
        let eta = if timed.1 > 0.0 {
            format!(
                ", ~{:.0} s left",
                timed.0 / timed.1 * (all_flops - done_flops)
            )
        } else {
            String::new()
        };
        println!(
            "[{}/{}] arm {} ({}; {:.3e} extra FLOPs) — study {:.0}% of its compute done at {:.0} s{eta}",
            i + 1,
            list.len(),
            arm.name,
            arm.groups.join(", "),
            arm.extra_flops,
            100.0 * done_flops / all_flops,
            started.elapsed().as_secs_f64()
        );
        let (r, ran) = arms::run(
            arm,
            &p,
            &base.checkpoints,
            out,
            a.seed,
            &probe,
            a.corpus.as_deref(),
        )?;
        println!(
            "      {} {} steps, held-out loss {:.4}{}",
            if ran { "trained" } else { "finished earlier:" },
            r.steps,
            r.final_eval_loss,
            if ran {
                format!(" ({:.0} s)", t.elapsed().as_secs_f64())
            } else {
                String::new()
            }
        );
        done_flops += arm.extra_flops;
        if ran {
            timed = (
                timed.0 + t.elapsed().as_secs_f64(),
                timed.1 + arm.extra_flops,
            );
        }
        results.push(r);
    }

    // 4. Report.
    let (base_curve, _) = arms::read_curve(&base_dir)?;
    let study = report::Study {
        preset: &p,
        seed: a.seed,
        n_a,
        fc,
        base_steps,
        base_checkpoint_steps: &base.steps,
        base_sunk: &base.sunk,
        base_curve,
        base_profile,
        base_probe,
        results: &results,
        seconds: started.elapsed().as_secs_f64(),
    };
    report::write(out, &study)?;
    println!(
        "wrote {}/report.md, results.json and plots in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn train_base(
    p: &presets::StudyPreset,
    config: &ModelConfig,
    base_dir: &Path,
    ckpt_steps: &[usize],
    a: &Args,
) -> anyhow::Result<BaseDone> {
    let t = Instant::now();
    let init = base_dir.with_file_name("base-init");
    arms::write_fresh(&init, config, a.seed, None)?;
    let steps = *ckpt_steps.last().expect("checkpoints");
    println!("[base] warmup-stable-decay for {steps} steps");
    let cfg = TrainConfig {
        init: Some(init.clone()),
        corpus: a.corpus.clone(),
        device: p.device.clone(),
        steps,
        batch_size: p.batch_size,
        seq_len: p.seq_len,
        lr: p.base_lr,
        schedule: Kind::Wsd,
        warmup: p.warmup,
        decay_fraction: 0.2,
        eval_every: (steps / (2 * p.evals)).max(1),
        eval_sequences: p.eval_sequences,
        save_every: ckpt_steps[0],
        keep_checkpoints: 1000,
        seed: a.seed,
        // A freshly initialised base: its tokenizer is trained on the study's corpus.
        train_tokenizer: true,
        ..TrainConfig::default()
    };
    run_training(
        cfg,
        RunOptions {
            out: base_dir.to_path_buf(),
            force: true,
            ..Default::default()
        },
    )
    .context("the base run failed")?;
    let _ = std::fs::remove_dir_all(&init);
    let mut checkpoints = Vec::new();
    let mut sunk = Vec::new();
    for &s in ckpt_steps {
        let dir = if s == steps {
            base_dir.join("final")
        } else {
            base_dir.join("checkpoints").join(format!("step-{s:07}"))
        };
        sunk.push(arms::checkpoint_flops(&dir)?);
        checkpoints.push(dir);
    }
    Ok(BaseDone {
        preset: p.name.to_string(),
        seed: a.seed,
        checkpoints,
        sunk,
        steps: ckpt_steps.to_vec(),
        seconds: t.elapsed().as_secs_f64(),
    })
}

fn probe_tokens(base_dir: &Path, corpus: Option<&Path>, n: usize) -> anyhow::Result<probe::Probe> {
    let tk_path = base_dir.join("tokenizer.json");
    let tk = tokenizers::Tokenizer::from_file(&tk_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tk_path.display()))?;
    let corpus = crate::data::corpus::Corpus::load_or_default(corpus, "text")?.0;
    let ids = crate::data::tokenizer::encode(&tk, &corpus.heldout)?;
    anyhow::ensure!(
        ids.len() >= n,
        "the held-out text has only {} tokens",
        ids.len()
    );
    Ok(probe::Probe {
        tokens: ids[..n].to_vec(),
    })
}
