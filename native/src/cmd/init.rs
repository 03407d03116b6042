use crate::progress::bytes_bar;
use anyhow::Context;
use moegrow_core::checkpoint::{parse_size, write_checkpoint, WriteOptions};
use moegrow_core::init::{preset, Initialiser, PRESETS};
use moegrow_core::{DType, ModelConfig};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Output directory (must not exist unless --force).
    pub out: PathBuf,
    /// Architecture preset.
    #[arg(long, default_value = "tiny", value_parser = PRESETS.iter().map(|p| p.name).collect::<Vec<_>>())]
    pub preset: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Storage dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Standard deviation of the initial weights (transformers' initializer_range).
    #[arg(long, default_value_t = 0.02)]
    pub init_std: f32,
    #[arg(long, default_value = "5GB")]
    pub max_shard_size: String,
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let p = preset(&a.preset)?;
    let dtype = DType::parse(&a.dtype)
        .with_context(|| format!("unknown dtype `{}` (f32, bf16, f16)", a.dtype))?;
    let json = p.config_json(dtype);
    let config = ModelConfig::from_json(json.clone())?;
    let init = Initialiser::new(&config, dtype, a.seed, a.init_std);
    let tensors = init.tensors();
    let total: u64 = tensors.iter().map(|t| t.nbytes() as u64).sum();
    let bar = bytes_bar(total, "init");
    let opts = WriteOptions {
        max_shard_bytes: parse_size(&a.max_shard_size)?,
        force: a.force,
        extra_files: Vec::new(),
        metadata: [(
            "moegrow_init".to_string(),
            format!("preset={} seed={}", p.name, a.seed),
        )]
        .into(),
    };
    let summary = write_checkpoint(
        &a.out,
        &config.to_json_string(),
        &tensors,
        None,
        &opts,
        |n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} preset, seed {}, {}): {} tensors, {:.1} MB in {}",
        a.out.display(),
        p.name,
        a.seed,
        dtype.name(),
        summary.tensors,
        summary.bytes as f64 / 1e6,
        summary.files.join(", ")
    );
    Ok(())
}
