use crate::progress::bytes_bar;
use anyhow::{bail, Context};
use moegrow_core::checkpoint::{parse_size, write_checkpoint, WriteOptions};
use moegrow_core::schema::layout::{output_tensors, Storage};
use moegrow_core::{ExpertLayout, ModelConfig};
use std::path::PathBuf;

/// `--dtype` and `--block` as a storage: the source's when neither is given.
pub fn storage(cfg: &ModelConfig, dtype: Option<&str>, block: Option<&str>) -> anyhow::Result<Storage> {
    let block = match block {
        Some(b) => {
            let parts: Vec<usize> = b
                .split(['x', 'X', ','])
                .map(|p| p.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--block `{b}`: expected ROWSxCOLS, e.g. 128x128"))?;
            match parts.as_slice() {
                [r, c] if *r > 0 && *c > 0 => [*r, *c],
                _ => bail!("--block `{b}`: expected two positive sizes, e.g. 128x128"),
            }
        }
        None => cfg.quant.as_ref().map_or([128, 128], |q| q.block),
    };
    match dtype {
        None if block != cfg.quant.as_ref().map_or([128, 128], |q| q.block) => {
            bail!("--block needs --dtype fp8")
        }
        None => Ok(Storage::AsSource),
        // Requantising keeps the source's scale format (`ue8m0`: powers of two).
        Some(d) => Ok(match Storage::parse(d, block)? {
            Storage::Fp8(mut q) if q.format == moegrow_core::quant::QuantFormat::Fp8E4M3 => {
                q.pow2 = cfg.quant.as_ref().is_some_and(|s| s.pow2_scales);
                Storage::Fp8(q)
            }
            other => other,
        }),
    }
}

#[derive(clap::Args)]
pub struct Args {
    pub source: PathBuf,
    pub out: PathBuf,
    /// Expert layout to write: per-expert or fused (default: the source's).
    #[arg(long)]
    pub layout: Option<String>,
    /// Storage dtype to write: f32, bf16 or f16 (float8 and MXFP4 weights dequantised), fp8
    /// (the linear weights block-quantised to e4m3 with F32 scales), or mxfp4 (gpt-oss's routed
    /// experts, as the hub ships them) (default: the source's, tensor by tensor).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Block size of --dtype fp8, rows x cols (default: the source's blocks, or 128x128).
    #[arg(long)]
    pub block: Option<String>,
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
    let storage = storage(&ckpt.config, a.dtype.as_deref(), a.block.as_deref())?;
    let mut config = ckpt.config.clone();
    storage.rewrite(&mut config);
    let tensors = output_tensors(&ckpt, layout, storage)?;
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
