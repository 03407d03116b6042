use crate::progress::bytes_bar;
use anyhow::{bail, Context};
use moegrow_core::checkpoint::{parse_size, write_checkpoint, WriteOptions};
use moegrow_core::{DType, ExpertLayout};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub source: PathBuf,
    pub out: PathBuf,
    /// Expert layout to write: per-expert or fused (default: the source's).
    #[arg(long)]
    pub layout: Option<String>,
    /// Storage dtype to write: f32, bf16 or f16 (default: the source's, tensor by tensor).
    #[arg(long)]
    pub dtype: Option<String>,
    #[arg(long, default_value = "5GB")]
    pub max_shard_size: String,
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ckpt = super::open(&a.source)?;
    let layout = match a.layout.as_deref() {
        None => ckpt.layout,
        Some("per-expert") => ExpertLayout::PerExpert,
        Some("fused") => ExpertLayout::Fused,
        Some(other) => bail!("unknown layout `{other}` (per-expert or fused)"),
    };
    let dtype = match &a.dtype {
        None => None,
        Some(d) => {
            Some(DType::parse(d).with_context(|| format!("unknown dtype `{d}` (f32, bf16, f16)"))?)
        }
    };
    let mut config = ckpt.config.clone();
    if let Some(d) = dtype {
        for key in ["dtype", "torch_dtype"] {
            if config.raw.contains_key(key) || key == "dtype" {
                config.raw.insert(key.into(), d.torch_name().into());
            }
        }
    }
    let tensors = ckpt.export(layout, dtype)?;
    let total: u64 = tensors.iter().map(|t| t.nbytes() as u64).sum();
    let bar = bytes_bar(total, "convert");
    let opts = WriteOptions {
        max_shard_bytes: parse_size(&a.max_shard_size)?,
        force: a.force,
        extra_files: Vec::new(),
        metadata: ckpt
            .metadata
            .iter()
            .filter(|(k, _)| *k != "format")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let s = write_checkpoint(
        &a.out,
        &config.to_json_string(),
        &tensors,
        Some(&a.source),
        &opts,
        |n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} layout): {} tensors, {:.1} MB in {} files",
        a.out.display(),
        layout.name(),
        s.tensors,
        s.bytes as f64 / 1e6,
        s.files.len()
    );
    Ok(())
}
