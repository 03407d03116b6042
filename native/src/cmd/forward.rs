use anyhow::{bail, Context};
use moegrow_core::checkpoint::{header_bytes, write_safetensors, OutputTensor};
use moegrow_core::dtype::encode_f32;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::DType;
use std::borrow::Cow;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub checkpoint: PathBuf,
    /// Comma-separated token ids, e.g. 1,5,9,42.
    #[arg(long)]
    pub tokens: String,
    /// Write `logits` (f32 [T, V]) to this safetensors file instead of printing the top 5.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Time N forward passes after loading and print JSON timings instead of the top 5 (the
    /// throughput benchmark against transformers, `tests/bench/forward_vs_transformers.py`).
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
    /// Where to run: the CPU reference (default) or the WGSL kernels on the GPU.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::device::Device,
}

pub fn parse_tokens(s: &str) -> anyhow::Result<Vec<u32>> {
    let tokens: Vec<u32> = s
        .split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("token `{t}` is not a non-negative integer"))
        })
        .collect::<anyhow::Result<_>>()?;
    if tokens.is_empty() {
        bail!("--tokens needs at least one token id");
    }
    Ok(tokens)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let tokens = parse_tokens(&a.tokens)?;
    let started = std::time::Instant::now();
    let ckpt = super::open(&a.checkpoint)?;
    let gpu = crate::device::open(a.device)?;
    let gpu_model = match &gpu {
        Some(g) => Some(moegrow_core::gpu::GpuModel::load(g, &ckpt)?),
        None => None,
    };
    // Timing repeats the pass: the CPU model is decoded once and kept. A single pass streams
    // the checkpoint one layer at a time, so memory is one layer's f32 weights, not the model's.
    let model = match (&gpu_model, a.bench) {
        (None, Some(_)) => Some(ReferenceModel::load(&ckpt)?),
        _ => None,
    };
    let run = |tokens: &[u32]| -> anyhow::Result<moegrow_core::reference::Mat> {
        Ok(match (&gpu_model, &model) {
            (Some(g), _) => g.forward_blocking(tokens, false)?.logits,
            (None, Some(m)) => m.forward(tokens)?.logits,
            (None, None) => {
                moegrow_core::reference::forward_streamed(&ckpt, tokens, || {
                    ckpt.release_memory()
                })?
                .logits
            }
        })
    };
    let load_s = started.elapsed().as_secs_f64();
    if let Some(n) = a.bench {
        run(&tokens)?; // warm-up: pipeline compilation on the GPU
        let mut times: Vec<f64> = (0..n.max(1))
            .map(|_| {
                let t = std::time::Instant::now();
                run(&tokens).map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{}",
            serde_json::json!({
                "load_s": load_s,
                "runs": times.len(),
                "tokens": tokens.len(),
                "median_forward_s": median,
                "tokens_per_s": tokens.len() as f64 / median,
                "device": crate::device::describe(&gpu),
            })
        );
        return Ok(());
    }
    let logits = run(&tokens)?;
    let (t, v) = (logits.rows, logits.cols);
    match a.output {
        Some(path) => {
            let bytes = encode_f32(DType::F32, &logits.data);
            let bytes = &bytes[..];
            let tensor = OutputTensor {
                pieces: None,
                name: "logits".into(),
                dtype: DType::F32,
                shape: vec![t, v],
                data: Box::new(move || Ok(Cow::Borrowed(bytes))),
            };
            // Write beside the target and rename, so a failure leaves no partial file.
            let tmp = path.with_extension("safetensors.moegrow-tmp");
            write_safetensors(
                &tmp,
                &[&tensor],
                &header_bytes(&[&tensor], &Default::default()),
                |_| {},
            )?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote logits [{t}, {v}] to {}", path.display());
        }
        None => {
            for (pos, tok) in tokens.iter().enumerate() {
                let row = logits.row(pos);
                let top = moegrow_core::reference::routing::top_k(row, 5.min(v));
                let list: Vec<String> = top
                    .iter()
                    .map(|&i| format!("{i} ({:.3})", row[i]))
                    .collect();
                println!("pos {pos:>3} token {tok:>6} -> {}", list.join(", "));
            }
        }
    }
    Ok(())
}
