use crate::fmt::human;
use moegrow_core::analysis::expert_norm_profile;
use moegrow_core::Checkpoint;
use serde_json::json;
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

/// Everything `inspect` reports, as JSON (the text view is rendered from it): the core's
/// header-only summary (the browser explorer shows the same) plus the path, the norm profile
/// and where it was computed.
pub fn summary(
    ckpt: &Checkpoint,
    path: &std::path::Path,
    gpu: &Option<moegrow_core::gpu::Gpu>,
) -> anyhow::Result<serde_json::Value> {
    let mut s = moegrow_core::analysis::summary(ckpt);
    s["path"] = json!(path.display().to_string());
    s["expert_norm_profile"] = json!(norm_profile(ckpt, gpu)?);
    s["statistics_device"] = json!(crate::device::describe(gpu));
    Ok(s)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ckpt = super::open(&a.checkpoint)?;
    let gpu = crate::device::open(a.device)?;
    let s = summary(&ckpt, &a.checkpoint, &gpu)?;
    if let Some(plot) = &a.plot {
        let profile: Vec<Option<f64>> = serde_json::from_value(s["expert_norm_profile"].clone())?;
        crate::plot::norm_profiles(plot, &[(a.checkpoint.display().to_string(), profile)])?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let p = &s["parameters"];
    let (total, act) = (
        p["total"].as_u64().unwrap_or(0),
        p["activated"].as_u64().unwrap_or(0),
    );
    println!(
        "checkpoint   {} ({} layout, {} file(s))",
        s["path"].as_str().unwrap_or(""),
        s["layout"].as_str().unwrap_or(""),
        s["files"].as_array().map_or(0, |f| f.len())
    );
    println!(
        "family       {} ({})",
        s["family"].as_str().unwrap_or(""),
        s["model_type"].as_str().unwrap_or("")
    );
    println!(
        "layers       {} ({} MoE), hidden {}, vocab {}",
        s["layers"],
        s["moe_layers"].as_array().map_or(0, |m| m.len()),
        s["hidden_size"],
        s["vocab_size"]
    );
    println!("attention    {}", s["attention"].as_str().unwrap_or(""));
    let shared = match s["shared_expert_intermediate"].as_u64() {
        Some(i) => format!(", shared expert FFN {i}"),
        None => String::new(),
    };
    println!(
        "experts      {} routed, top-{}, expert FFN {}{shared}",
        s["experts"], s["top_k"], s["expert_intermediate"]
    );
    println!("routing      {}", s["routing"].as_str().unwrap_or(""));
    println!(
        "parameters   {} total, {} activated per token ({:.1}%), {} in routed experts, {} embedding",
        human(total),
        human(act),
        100.0 * act as f64 / total.max(1) as f64,
        human(p["routed_experts"].as_u64().unwrap_or(0)),
        human(p["embedding"].as_u64().unwrap_or(0))
    );
    println!(
        "train FLOPs  {} per token (6 x activated)",
        human(s["train_flops_per_token"].as_u64().unwrap_or(0))
    );
    let dt: Vec<String> = s["bytes_by_dtype"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(d, v)| {
                    format!(
                        "{d}: {} tensors, {:.2} MB",
                        v["tensors"],
                        v["bytes"].as_f64().unwrap_or(0.0) / 1e6
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!("tensors      {} ({})", s["tensors"], dt.join("; "));
    println!(
        "expert weight-norm profile (mean over experts and gate/up/down of ||W||_F / sqrt(numel); computed on the {}):",
        s["statistics_device"].as_str().unwrap_or("CPU")
    );
    let profile: Vec<Option<f64>> = serde_json::from_value(s["expert_norm_profile"].clone())?;
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
    if let Some(plot) = &a.plot {
        println!("plot         {}", plot.display());
    }
    Ok(())
}
