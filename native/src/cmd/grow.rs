use crate::fmt::human;
use crate::progress::bytes_bar;
use anyhow::{bail, Context};
use moegrow_core::analysis::{param_counts_for, ParamCounts};
use moegrow_core::checkpoint::{parse_size, write_checkpoint, WriteOptions};
use moegrow_core::growth::{AuxCoef, DepthMethod, GrowthOptions, GrowthPlan, NewExperts, NoiseOn};
use moegrow_core::reference::forward_streamed;
use moegrow_core::ExpertLayout;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    pub source: PathBuf,
    pub output: PathBuf,
    /// Depth growth factor K (each layer appears K times).
    #[arg(long)]
    pub depth: Option<usize>,
    /// interpose (0,0,1,1,…) or stack (0,1,…,0,1,…).
    #[arg(long, default_value = "interpose")]
    pub depth_method: DepthMethod,
    /// Layers at the start that are not duplicated.
    #[arg(long, default_value_t = 0)]
    pub keep_first: usize,
    /// Layers at the end that are not duplicated.
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    /// Zero o_proj and the down projections of the repeated copies (each copy an exact identity).
    #[arg(long)]
    pub zero_init_copies: bool,
    /// Any other layer order, e.g. 0,0,1,2,2,3 (replaces --depth).
    #[arg(long, value_delimiter = ',')]
    pub layer_map: Option<Vec<usize>>,
    /// Width growth: multiply the routed experts (and top-k) by M.
    #[arg(long)]
    pub experts: Option<usize>,
    /// New experts as e0,e0',e1,e1',… instead of appended.
    #[arg(long)]
    pub interleave_copies: bool,
    /// α: noise std relative to each copied tensor's std (0.01 is the paper's; 0 copies
    /// exactly).
    #[arg(long, default_value_t = 0.01)]
    pub noise: f32,
    /// copies (noise on the copies) or both (+ε on the original, −ε on the copy).
    #[arg(long, default_value = "copies")]
    pub noise_on: NoiseOn,
    /// Leave the copied router rows and routing bias without noise.
    #[arg(long)]
    pub no_router_noise: bool,
    /// copy (the method) or random (freshly drawn experts, the ablation).
    #[arg(long, default_value = "copy")]
    pub new_experts: NewExperts,
    /// keep router_aux_loss_coef, or scale it by 1/M.
    #[arg(long, default_value = "keep")]
    pub aux_coef: AuxCoef,
    /// Apply width growth before depth growth (default: depth first).
    #[arg(long)]
    pub width_first: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Expert layout to write (default: the source's).
    #[arg(long)]
    pub layout: Option<String>,
    /// Storage dtype to write, as for `convert` (bf16 dequantises a float8 or MXFP4 source).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Block size of --dtype fp8, rows x cols.
    #[arg(long)]
    pub block: Option<String>,
    #[arg(long, default_value = "5GB")]
    pub max_shard_size: String,
    /// Print the plan and sizes; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the reference forward pass on a probe sequence before and after and compare.
    #[arg(long)]
    pub verify: bool,
    /// Probe tokens for --verify (default: 16 ids spread over the vocabulary).
    #[arg(long)]
    pub probe: Option<String>,
    #[arg(long)]
    pub force: bool,
    /// Grow a checkpoint of a family moegrow has no schema for: infer the layers, experts,
    /// router and config keys from tensor names and shapes, print what was inferred, and
    /// refuse anything ambiguous. Depth (interposed or stacked) and width (appended copies)
    /// growth; the math is unknown, so `--verify` is not available.
    #[arg(long)]
    pub infer_schema: bool,
}

impl Args {
    /// The flags as `core`'s growth options (which build and check the plan).
    pub fn options(&self) -> GrowthOptions {
        GrowthOptions {
            depth: self.depth,
            depth_method: self.depth_method,
            keep_first: self.keep_first,
            keep_last: self.keep_last,
            zero_init_copies: self.zero_init_copies,
            layer_map: self.layer_map.clone(),
            experts: self.experts,
            interleave_copies: self.interleave_copies,
            noise: self.noise,
            noise_on: self.noise_on,
            router_noise: !self.no_router_noise,
            new_experts: self.new_experts,
            aux_coef: self.aux_coef,
            width_first: self.width_first,
            seed: self.seed,
        }
    }
}

pub fn plan(a: &Args) -> anyhow::Result<GrowthPlan> {
    Ok(a.options().plan()?)
}

fn print_counts(label: &str, p: &ParamCounts) {
    println!(
        "{label:<7} {} total, {} activated, {} train FLOPs/token",
        human(p.total),
        human(p.activated),
        human(p.train_flops_per_token())
    );
}

/// Free bytes on the file system that will hold `out`.
fn available_space(out: &Path) -> Option<u64> {
    let mut dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    while !dir.exists() {
        dir = dir.parent()?.to_path_buf();
    }
    fs4::available_space(&dir).ok()
}

/// Refuse to start a write that cannot finish: the output plus 64 MB of slack must fit.
fn ensure_space(out: &Path, needed: u64, free: Option<u64>) -> anyhow::Result<()> {
    match free {
        Some(free) if free < needed + (64 << 20) => bail!(
            "not enough disk space for {}: it needs {:.2} GB, {:.2} GB are free",
            out.display(),
            needed as f64 / 1e9,
            free as f64 / 1e9
        ),
        _ => Ok(()),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.infer_schema {
        return run_inferred(&a);
    }
    let plan = plan(&a)?;
    let src = super::open(&a.source)?;
    for w in src.warnings() {
        eprintln!("warning: {w}");
    }
    let layout = match a.layout.as_deref() {
        None => src.layout,
        Some("per-expert") => ExpertLayout::PerExpert,
        Some("fused") => ExpertLayout::Fused,
        Some(other) => bail!("unknown layout `{other}` (per-expert or fused)"),
    };
    let mut grown = plan
        .apply(&src)
        .with_context(|| format!("cannot grow {}", a.source.display()))?;
    let storage = super::convert::storage(&src.config, a.dtype.as_deref(), a.block.as_deref())?;
    storage.rewrite(&mut grown.config);
    let tensors = grown.tensors_as(layout, storage)?;
    let out_bytes: u64 = tensors.iter().map(|t| t.nbytes() as u64).sum();
    let before = param_counts_for(&src.config);
    let after = param_counts_for(&grown.config);
    println!("plan    {}", serde_json::to_string(&plan)?);
    for n in &grown.notes {
        println!("        {n}");
    }
    print_counts("before", &before);
    print_counts("after", &after);
    let size = if out_bytes >= 1_000_000_000 {
        format!("{:.2} GB", out_bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", out_bytes as f64 / 1e6)
    };
    println!(
        "output  {} tensors, {size} ({} layout)",
        tensors.len(),
        layout.name()
    );
    if a.dry_run {
        return Ok(());
    }
    if a.output.exists() && !a.force {
        bail!(
            "{} already exists; pass --force to replace it",
            a.output.display()
        );
    }
    ensure_space(&a.output, out_bytes, available_space(&a.output))?;
    let config_path = a.source.join("config.json");
    let config_text = std::fs::read(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let provenance = moegrow_core::growth::provenance::record(
        &a.source.display().to_string(),
        &config_text,
        &src,
        &plan,
        &grown.config,
        layout,
    );
    let (metadata, extra_files) = moegrow_core::growth::provenance::outputs(&provenance);
    let bar = bytes_bar(out_bytes, "grow");
    let mut since_release = 0u64;
    let opts = WriteOptions {
        max_shard_bytes: parse_size(&a.max_shard_size)?,
        force: a.force,
        metadata: metadata.into_iter().collect(),
        extra_files,
    };
    let summary = write_checkpoint(
        &a.output,
        &grown.config.to_json_string(),
        &tensors,
        Some(&a.source),
        &opts,
        |n| {
            bar.inc(n);
            // Drop the source pages we have touched every 32 MB: RSS stays bounded, and the
            // kernel's page cache makes re-reads cheap.
            since_release += n;
            if since_release >= 32 << 20 {
                src.release_memory();
                since_release = 0;
            }
        },
    )?;
    bar.finish_and_clear();
    println!(
        "wrote   {} ({} files)",
        a.output.display(),
        summary.files.len()
    );
    if let Some(s) = grown.fp8_noise_survival() {
        use moegrow_core::quant::QuantFormat;
        let (label, what, bits) = match grown.config.quant.as_ref().map(|q| q.format) {
            Some(QuantFormat::Mxfp4) => ("mxfp4", "MXFP4", "e2m1 keeps 1 mantissa bit"),
            Some(QuantFormat::Int4) => ("int4", "int4", "16 levels per group"),
            _ => ("fp8", "float8", "e4m3 keeps 3 mantissa bits"),
        };
        println!(
            "{label:<7} {:.0}% of the width noise survived requantising the {what} experts{}",
            100.0 * s,
            if s < 0.5 {
                format!("; most of it was rounded away ({bits}): raise --noise or grow with --dtype bf16")
            } else {
                String::new()
            }
        );
        if let Some(a) = grown.quantised_noise_amplification() {
            println!(
                "{label:<7} the requantised copies sit {a:.1}× the added noise away from their sources{}",
                if a > 2.0 { " (rounding moved values by whole steps; --dtype bf16 keeps the noise as asked)" } else { "" }
            );
        }
    }
    if a.verify {
        verify(&a, &src)?;
    }
    Ok(())
}

fn verify(a: &Args, src: &moegrow_core::Checkpoint) -> anyhow::Result<()> {
    let grown = super::open(&a.output)?;
    let v = src.config.vocab_size as u32;
    let tokens: Vec<u32> = match &a.probe {
        Some(p) => super::forward::parse_tokens(p)?,
        None => (0..16u32).map(|i| (i * 7919 + 13) % v).collect(),
    };
    // One layer's weights in f32 at a time, the touched pages of both checkpoints dropped
    // after each: verifying a 30B model takes a few GB, not the model in f32.
    let before = forward_streamed(src, &tokens, || src.release_memory())?.logits;
    let after = forward_streamed(&grown, &tokens, || grown.release_memory())?.logits;
    let r = moegrow_core::analysis::compare_logits(&before, &after);
    println!(
        "verify  {} probe tokens: max |Δlogit| {:.3e}, mean KL(base‖grown) {:.3e}, top-1 agreement {:.1}%",
        tokens.len(),
        r.max_abs_diff,
        r.mean_kl,
        100.0 * r.top1_agreement
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_cannot_fit_is_refused_before_it_starts() {
        let err = ensure_space(Path::new("/data/out"), 5_000_000_000, Some(1_000_000_000))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "not enough disk space for /data/out: it needs 5.00 GB, 1.00 GB are free"
        );
        assert!(ensure_space(Path::new("o"), 1_000, Some(1 << 30)).is_ok());
        assert!(
            ensure_space(Path::new("o"), 1_000, None).is_ok(),
            "unknown free space does not block"
        );
        assert!(
            available_space(Path::new("/tmp/surely/not/here/out")).is_some(),
            "walks up to an existing directory"
        );
    }
}

/// `grow --infer-schema`: the schema from tensor names and shapes
/// ([`moegrow_core::growth::inferred`]), the options it supports, the same atomic writer.
fn run_inferred(a: &Args) -> anyhow::Result<()> {
    use moegrow_core::growth::inferred::{grow, Inferred, InferredPlan, RawCheckpoint};
    use moegrow_core::growth::LayerMap;
    let unsupported = [
        (a.zero_init_copies, "--zero-init-copies"),
        (a.interleave_copies, "--interleave-copies"),
        (a.noise_on != NoiseOn::Copies, "--noise-on"),
        (a.no_router_noise, "--no-router-noise"),
        (a.new_experts != NewExperts::Copy, "--new-experts"),
        (a.aux_coef != AuxCoef::Keep, "--aux-coef"),
        (a.width_first, "--width-first"),
        (a.layout.is_some(), "--layout"),
        (a.dtype.is_some(), "--dtype"),
        (a.block.is_some(), "--block"),
        (a.verify, "--verify"),
        (a.probe.is_some(), "--probe"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        bail!("{flag} needs the family's schema and is not available with --infer-schema");
    }
    let ck = RawCheckpoint::open(&a.source).with_context(|| format!("cannot read {}", a.source.display()))?;
    let schema = Inferred::infer(&ck).with_context(|| format!("cannot infer the schema of {}", a.source.display()))?;
    println!("inferred (from tensor names and shapes):");
    for line in schema.describe() {
        println!("        {line}");
    }
    let n = schema.num_layers;
    let map = match (&a.layer_map, a.depth) {
        (Some(m), _) => LayerMap::explicit(n, m)?,
        (None, Some(k)) => match a.depth_method {
            DepthMethod::Interpose => LayerMap::interpose(n, k, a.keep_first, a.keep_last)?,
            DepthMethod::Stack => LayerMap::stack(n, k, a.keep_first, a.keep_last)?,
        },
        (None, None) => LayerMap::interpose(n, 1, 0, 0)?,
    };
    let plan = InferredPlan {
        sources: map.sources(),
        width: a.experts.unwrap_or(1),
        noise: a.noise,
        seed: a.seed,
    };
    if plan.width == 0 {
        bail!("--experts must be at least 1");
    }
    let (config, tensors) = grow(&ck, &schema, &plan).with_context(|| format!("cannot grow {}", a.source.display()))?;
    let out_bytes: u64 = tensors.iter().map(|t| t.nbytes() as u64).sum();
    println!(
        "plan    depth {} → {} layers, experts ×{}, noise {}",
        n,
        plan.sources.len(),
        plan.width,
        plan.noise
    );
    println!("output  {} tensors, {:.1} MB", tensors.len(), out_bytes as f64 / 1e6);
    println!("        moegrow does not know this family's math: check the result in transformers (no --verify)");
    if a.dry_run {
        return Ok(());
    }
    if a.output.exists() && !a.force {
        bail!("{} already exists; pass --force to replace it", a.output.display());
    }
    ensure_space(&a.output, out_bytes, available_space(&a.output))?;
    let record = serde_json::json!({
        "source": a.source.display().to_string(),
        "inferred_schema": schema.describe(),
        "layer_sources": plan.sources,
        "experts_factor": plan.width,
        "noise": plan.noise,
        "seed": plan.seed,
    });
    let opts = WriteOptions {
        max_shard_bytes: parse_size(&a.max_shard_size)?,
        force: a.force,
        metadata: [("moegrow_growth".to_string(), record.to_string())].into(),
        extra_files: vec![("growth.json".to_string(), serde_json::to_vec_pretty(&record)?)],
    };
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(config))?;
    text.push('\n');
    let bar = bytes_bar(out_bytes, "grow");
    let mut since_release = 0u64;
    let summary = write_checkpoint(&a.output, &text, &tensors, Some(&a.source), &opts, |b| {
        bar.inc(b);
        since_release += b;
        if since_release >= 32 << 20 {
            ck.release_memory();
            since_release = 0;
        }
    })?;
    bar.finish_and_clear();
    println!("wrote   {} ({} files)", a.output.display(), summary.files.len());
    Ok(())
}
