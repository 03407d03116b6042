//! The study's arms and how one runs: grow (or initialise) a checkpoint, continue training it
//! for a fixed extra compute with a constant learning rate and fresh optimizer state, and keep
//! its curve and final numbers in `arms/NAME/result.json` (which is what makes the study
//! resumable: an arm with a result is not run again).

use super::presets::StudyPreset;
use super::probe::Probe;
use crate::train::config::TrainConfig;
use crate::train::run::{run as run_training, RunOptions};
use crate::train::schedule::Kind;
use anyhow::Context;
use moegrow_core::analysis::{expert_norm_profile, param_counts_for};
use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::growth::{provenance, DepthMethod, GrowthOptions, GrowthPlan, NewExperts};
use moegrow_core::init::Initialiser;
use moegrow_core::{Checkpoint, DType, ModelConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where an arm starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Base checkpoint `index` (into the preset's checkpoint list), grown by `plan`.
    Grow { checkpoint: usize, plan: GrowthPlan },
    /// A fresh model with the config that `plan` gives the final base checkpoint.
    Scratch { shape_of: GrowthPlan },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    /// `sunk`, `scratch`, `depth`, `noise`, `order`, `budget`.
    pub groups: Vec<String>,
    pub start: Start,
    /// FLOPs this arm trains for.
    pub extra_flops: f64,
}

/// Depth growth ×`k` by `method`.
pub fn depth(k: usize, method: DepthMethod) -> GrowthOptions {
    GrowthOptions::depth(k, method)
}

/// Width growth ×2 with noise α and new experts of kind `new`.
pub fn width(alpha: f32, new: NewExperts) -> GrowthOptions {
    GrowthOptions {
        new_experts: new,
        ..GrowthOptions::width(2, alpha)
    }
}

/// The plan of an arm: the study's own options, so always valid.
fn plan(o: GrowthOptions, seed: u64) -> GrowthPlan {
    GrowthOptions { seed, ..o }
        .plan()
        .expect("the study's growth options are valid")
}

/// Every arm of the study. `sunk[i]` is the compute checkpoint `i` has already had; `fc` the
/// base's Chinchilla-optimal compute.
pub fn all(p: &StudyPreset, sunk: &[f64], fc: f64, seed: u64) -> Vec<Arm> {
    let last = sunk.len() - 1;
    let extra = p.extra_compute * fc;
    let interp2 = || plan(depth(2, DepthMethod::Interpose), seed);
    let mut arms = Vec::new();
    let mut push = |name: String, groups: &[&str], start: Start, extra_flops: f64| {
        arms.push(Arm {
            name,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            start,
            extra_flops,
        })
    };
    // Sunk-cost study: interposition ×2 from every checkpoint, and scratch of the grown size.
    for i in 0..sunk.len() {
        let groups: &[&str] = if i == last {
            &["sunk", "depth"]
        } else {
            &["sunk"]
        };
        push(
            format!("interpose-k2-ckpt{i}"),
            groups,
            Start::Grow {
                checkpoint: i,
                plan: interp2(),
            },
            extra,
        );
    }
    push(
        "scratch".into(),
        &["sunk", "scratch"],
        Start::Scratch {
            shape_of: interp2(),
        },
        extra,
    );
    // Depth method and factor, from the most-trained base.
    push(
        "stack-k2".into(),
        &["depth"],
        Start::Grow {
            checkpoint: last,
            plan: plan(depth(2, DepthMethod::Stack), seed),
        },
        extra,
    );
    if p.k4 {
        for (name, m) in [
            ("interpose-k4", DepthMethod::Interpose),
            ("stack-k4", DepthMethod::Stack),
        ] {
            push(
                name.into(),
                &["depth"],
                Start::Grow {
                    checkpoint: last,
                    plan: plan(depth(4, m), seed),
                },
                extra,
            );
        }
    }
    // Width growth noise, from the most-trained base.
    for (name, alpha, new) in [
        ("width-alpha0", 0.0, NewExperts::Copy),
        ("width-alpha0.01", 0.01, NewExperts::Copy),
        ("width-alpha0.1", 0.1, NewExperts::Copy),
        ("width-random", 0.01, NewExperts::Random),
    ] {
        push(
            name.into(),
            &["noise"],
            Start::Grow {
                checkpoint: last,
                plan: plan(width(alpha, new), seed),
            },
            extra,
        );
    }
    // Order of the two growths.
    let both = |width_first| GrowthOptions {
        depth: Some(2),
        width_first,
        ..width(0.01, NewExperts::Copy)
    };
    for (name, steps) in [
        ("depth-then-width", both(false)),
        ("width-then-depth", both(true)),
    ] {
        push(
            name.into(),
            &["order"],
            Start::Grow {
                checkpoint: last,
                plan: plan(steps, seed),
            },
            extra,
        );
    }
    // Fixed total budget: sunk + extra = total, growing at each checkpoint that leaves room.
    let total = p.total_compute * fc;
    for (i, &s) in sunk.iter().enumerate() {
        if s < total * 0.999 {
            push(
                format!("budget-ckpt{i}"),
                &["budget"],
                Start::Grow {
                    checkpoint: i,
                    plan: interp2(),
                },
                total - s,
            );
        }
    }
    push(
        "budget-scratch".into(),
        &["budget"],
        Start::Scratch {
            shape_of: interp2(),
        },
        total,
    );
    arms
}

/// What an arm produced (`arms/NAME/result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmResult {
    pub arm: Arm,
    pub steps: usize,
    pub sunk_flops: f64,
    /// FLOPs actually trained (steps × 6 · N_a · tokens per step).
    pub trained_flops: f64,
    pub activated_parameters: u64,
    pub total_parameters: u64,
    /// `(cumulative FLOPs, held-out loss)`, the first point at the growth.
    pub curve: Vec<(f64, f64)>,
    pub final_eval_loss: f64,
    pub seconds: f64,
    /// Extra measurements some arms take (norm profiles, expert load, twin similarity).
    pub probes: Value,
}

/// Grow (or initialise) the arm's starting checkpoint into `dir`.
fn prepare(
    arm: &Arm,
    checkpoints: &[PathBuf],
    dir: &Path,
    seed: u64,
) -> anyhow::Result<(PathBuf, f64)> {
    let init = dir.join("init");
    let base_final = checkpoints.last().context("no base checkpoint")?;
    match &arm.start {
        Start::Grow { checkpoint, plan } => {
            let src_dir = &checkpoints[*checkpoint];
            let src = crate::cmd::open(src_dir)?;
            let grown = plan.apply(&src)?;
            let tensors = grown.tensors(src.layout)?;
            let text = std::fs::read(src_dir.join("config.json"))?;
            let record = provenance::record(
                &src_dir.display().to_string(),
                &text,
                &src,
                plan,
                &grown.config,
                src.layout,
            );
            let (metadata, extra_files) = provenance::outputs(&record);
            let opts = WriteOptions {
                metadata: metadata.into_iter().collect(),
                extra_files,
                force: true,
                ..Default::default()
            };
            write_checkpoint(
                &init,
                &grown.config.to_json_string(),
                &tensors,
                Some(src_dir),
                &opts,
                |_| {},
            )?;
            Ok((init, provenance::sunk_flops(&src).unwrap_or(0.0)))
        }
        Start::Scratch { shape_of } => {
            let src = crate::cmd::open(base_final)?;
            let config: ModelConfig = shape_of.apply(&src)?.config;
            write_fresh(&init, &config, seed ^ 0x5c7a, Some(base_final))?;
            Ok((init, 0.0))
        }
    }
}

/// A freshly initialised checkpoint (moegrow's `init` weights, std 0.02) with `companions`'
/// tokenizer files.
pub fn write_fresh(
    dir: &Path,
    config: &ModelConfig,
    seed: u64,
    companions: Option<&Path>,
) -> anyhow::Result<()> {
    let init = Initialiser::new(config, DType::F32, seed, 0.02);
    let tensors = init.tensors();
    let opts = WriteOptions {
        force: true,
        ..Default::default()
    };
    write_checkpoint(
        dir,
        &config.to_json_string(),
        &tensors,
        companions,
        &opts,
        |_| {},
    )?;
    Ok(())
}

/// Run one arm (or load its result if it already ran).
pub fn run(
    arm: &Arm,
    p: &StudyPreset,
    checkpoints: &[PathBuf],
    out: &Path,
    seed: u64,
    probe: &Probe,
    corpus: Option<&Path>,
) -> anyhow::Result<(ArmResult, bool)> {
    let dir = out.join("arms").join(&arm.name);
    let result_path = dir.join("result.json");
    if let Ok(text) = std::fs::read_to_string(&result_path) {
        if let Ok(r) = serde_json::from_str::<ArmResult>(&text) {
            if r.arm.start == arm.start
                && (r.arm.extra_flops - arm.extra_flops).abs() <= 1e-9 * arm.extra_flops
            {
                return Ok((r, false));
            }
        }
    }
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&dir)?;
    let (init, sunk) = prepare(arm, checkpoints, &dir, seed)
        .with_context(|| format!("arm {}: cannot prepare its starting checkpoint", arm.name))?;
    let start_ckpt = crate::cmd::open(&init)?;
    let counts = param_counts_for(&start_ckpt.config);
    let tokens_per_step = (p.batch_size * p.seq_len) as f64;
    let per_step = 6.0 * counts.activated as f64 * tokens_per_step;
    let steps = ((arm.extra_flops / per_step).round() as usize).max(1);
    let mut probes = json!({});
    if matches!(arm.start, Start::Grow { .. }) {
        probes["norm_profile_at_growth"] = json!(expert_norm_profile(&start_ckpt)?);
        if arm.groups.iter().any(|g| g == "noise") {
            probes["at_growth"] = probe.measure(&start_ckpt)?;
        }
    }
    drop(start_ckpt);
    let run_dir = dir.join("train");
    let cfg = TrainConfig {
        init: Some(init.clone()),
        corpus: corpus.map(Path::to_path_buf),
        device: p.device.clone(),
        steps,
        batch_size: p.batch_size,
        seq_len: p.seq_len,
        lr: p.grow_lr,
        schedule: Kind::Constant,
        warmup: p.warmup.min(steps / 10),
        eval_every: (steps / p.evals).max(1),
        eval_sequences: p.eval_sequences,
        seed,
        ..TrainConfig::default()
    };
    let summary = run_training(
        cfg,
        RunOptions {
            out: run_dir.clone(),
            force: true,
            ..Default::default()
        },
    )
    .with_context(|| format!("arm {}: training failed", arm.name))?;
    let (curve, trained) = read_curve(&run_dir)?;
    let final_eval_loss = summary["final_eval_loss"]
        .as_f64()
        .context("the run reported no held-out loss")?;
    if arm.groups.iter().any(|g| g == "noise") {
        let trained_ckpt = crate::cmd::open(&run_dir.join("final"))?;
        probes["after_training"] = probe.measure(&trained_ckpt)?;
    }
    let r = ArmResult {
        arm: arm.clone(),
        steps,
        sunk_flops: sunk,
        trained_flops: trained,
        activated_parameters: counts.activated,
        total_parameters: counts.total,
        curve,
        final_eval_loss,
        seconds: started.elapsed().as_secs_f64(),
        probes,
    };
    std::fs::write(&result_path, serde_json::to_string_pretty(&r)? + "\n")?;
    // The grown starting point is reproducible from the plan; keep only the trained model.
    let _ = std::fs::remove_dir_all(&init);
    let _ = std::fs::remove_dir_all(run_dir.join("checkpoints"));
    Ok((r, true))
}

/// The held-out curve of a run as (cumulative FLOPs, loss), and the FLOPs it trained.
pub fn read_curve(run_dir: &Path) -> anyhow::Result<(Vec<(f64, f64)>, f64)> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut curve = Vec::new();
    let mut trained = 0.0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: bad line", path.display()))?;
        trained = v["trained_flops"].as_f64().unwrap_or(trained);
        if let (Some(f), Some(e)) = (v["flops"].as_f64(), v["eval_loss"].as_f64()) {
            curve.push((f, e));
        }
    }
    Ok((curve, trained))
}

/// The training compute a saved base checkpoint records.
pub fn checkpoint_flops(dir: &Path) -> anyhow::Result<f64> {
    let ckpt: Checkpoint = crate::cmd::open(dir)?;
    provenance::sunk_flops(&ckpt)
        .with_context(|| format!("{} records no training compute", dir.display()))
}
