use crate::fmt::human;
use moegrow_core::analysis::{expert_norm_profile, Summary};
use moegrow_core::Checkpoint;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub checkpoint: PathBuf,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// Also draw the expert weight-norm profile (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Where to compute the statistics (auto: the GPU when an adapter exists).
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::device::Device,
}

/// The expert weight-norm profile, on the GPU when one is given.
pub fn norm_profile(
    ckpt: &Checkpoint,
    gpu: &Option<moegrow_core::gpu::Gpu>,
) -> anyhow::Result<Vec<Option<f64>>> {
    Ok(match gpu {
        Some(g) => moegrow_core::gpu::stats::expert_norm_profile_blocking(g, ckpt)?,
        None => expert_norm_profile(ckpt)?,
    })
}

/// Everything `inspect` reports (`--json` prints it; the text view is rendered from it): the
/// core's header-only summary (the browser explorer shows the same) plus the path, the norm
/// profile and where it was computed.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub summary: Summary,
    pub path: String,
    pub expert_norm_profile: Vec<Option<f64>>,
    pub statistics_device: String,
}

pub fn report(
    ckpt: &Checkpoint,
    path: &std::path::Path,
    gpu: &Option<moegrow_core::gpu::Gpu>,
) -> anyhow::Result<Report> {
    Ok(Report {
        summary: moegrow_core::analysis::summary(ckpt),
        path: path.display().to_string(),
        expert_norm_profile: norm_profile(ckpt, gpu)?,
        statistics_device: crate::device::describe(gpu),
    })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ckpt = super::open(&a.checkpoint)?;
    let gpu = crate::device::open(a.device)?;
    let r = report(&ckpt, &a.checkpoint, &gpu)?;
    if let Some(plot) = &a.plot {
        crate::plot::norm_profiles(
            plot,
            &[(a.checkpoint.display().to_string(), r.expert_norm_profile.clone())],
        )?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let s = &r.summary;
    let p = &s.parameters;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "checkpoint   {} ({} layout, {} file(s))",
        r.path,
        s.layout,
        s.files.len()
    );
    println!("family       {} ({})", s.family, s.model_type);
    let mtp = match s.mtp_layers {
        0 => String::new(),
        n => format!(", {n} multi-token-prediction block(s)"),
    };
    println!(
        "layers       {} ({} MoE){mtp}, hidden {}, vocab {}",
        s.layers,
        s.moe_layers.len(),
        s.hidden_size,
        s.vocab_size
    );
    println!("attention    {}", s.attention);
    println!("rope         {}", s.rope);
    let shared = match s.shared_expert_intermediate {
        Some(i) => format!(", shared expert FFN {i}"),
        None => String::new(),
    };
    println!(
        "experts      {} routed, top-{}, expert FFN {}{shared}",
        s.experts, s.top_k, s.expert_intermediate
    );
    println!("routing      {}", s.routing);
    println!(
        "parameters   {} total, {} activated per token ({:.1}%), {} in routed experts, {} embedding{}",
        human(p.total),
        human(p.activated),
        100.0 * p.activated as f64 / p.total.max(1) as f64,
        human(p.routed_experts),
        human(p.embedding),
        if p.mtp > 0 {
            format!("; {} more in the multi-token-prediction blocks", human(p.mtp))
        } else {
            String::new()
        }
    );
    if p.towers > 0 {
        println!(
            "towers       {} parameters outside the language model; carried verbatim: {}",
            human(p.towers),
            s.towers.join(", ")
        );
    }
    println!(
        "train FLOPs  {} per token (6 x activated)",
        human(s.train_flops_per_token)
    );
    let dt: Vec<String> = s
        .bytes_by_dtype
        .iter()
        .map(|(d, v)| {
            format!(
                "{d}: {} tensors, {:.2} MB",
                v.tensors,
                v.bytes as f64 / 1e6
            )
        })
        .collect();
    println!("tensors      {} ({})", s.tensors, dt.join("; "));
    println!(
        "expert weight-norm profile (mean over experts and gate/up/down of ||W||_F / sqrt(numel); computed on the {}):",
        r.statistics_device
    );
    let profile = &r.expert_norm_profile;
    let max = profile.iter().flatten().cloned().fold(0.0f64, f64::max);
    for (i, v) in profile.iter().enumerate() {
        match v {
            Some(v) => {
                let bar = "#".repeat(if max > 0.0 {
                    (v / max * 40.0).round() as usize
                } else {
                    0
                });
                println!("  layer {i:>3}  {v:.5}  {bar}");
            }
            None => println!("  layer {i:>3}  (dense)"),
        }
    }
    for n in &s.not_computed {
        println!("not computed {n}: forward, --verify and train refuse this checkpoint");
    }
    if let Some(plot) = &a.plot {
        println!("plot         {}", plot.display());
    }
    Ok(())
}
