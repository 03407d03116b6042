//! `moegrow bench grow`: growth throughput and peak memory on a synthetic checkpoint of
//! several GB, against a plain copy of the same bytes measured in the same run.
//! `moegrow bench verify`: peak memory of `grow --verify` on synthetic checkpoints with
//! Qwen3-30B-A3B's real layer shape at two depths, to show it is flat in the layer count.

use anyhow::Context;
use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::init::{Initialiser, Preset};
use moegrow_core::{DType, ModelConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// GPU runtime: matmul GFLOP/s, MoE layer against dense matmul, forward tokens/s.
    Gpu {
        /// A checkpoint for the forward-pass comparison (e.g. one made by `init --preset base100m`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Tokens per forward pass and per MoE-layer call.
        #[arg(long, default_value_t = 256)]
        tokens: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Grow a synthetic checkpoint by depth ×2 and width ×2 and compare with copying its bytes.
    Grow {
        /// Number of MoE layers of the synthetic source (8 ≈ 3.3 GB in bf16).
        #[arg(long, default_value_t = 8)]
        layers: usize,
        /// Scratch directory (needs about 5× the source size free).
        #[arg(long, default_value = "/var/tmp/moegrow-bench")]
        dir: PathBuf,
        /// Write the results here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Alternating copy/grow rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Keep the scratch directory (and reuse a source left there by an earlier run).
        #[arg(long)]
        keep: bool,
    },
    /// Peak RSS of `grow --verify` on Qwen3-30B-A3B-shaped checkpoints (hidden 2048, 128
    /// experts of FFN 768, 32 query / 4 KV heads, bf16) at several depths.
    Verify {
        /// Layer counts to measure (each source is about 1.25 GB per layer plus 1.2 GB).
        #[arg(long, value_delimiter = ',', default_value = "4,8")]
        layers: Vec<usize>,
        #[arg(long, default_value = "/var/tmp/moegrow-bench-verify")]
        dir: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Run a child process to its end; its exit status and peak resident set in bytes (0 where
/// the platform does not report it).
fn run_measured(cmd: &mut Command) -> anyhow::Result<(bool, u64)> {
    let child = cmd.spawn()?;
    #[cfg(unix)]
    {
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes the status and the rusage we pass for a child we spawned.
        let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
        anyhow::ensure!(r > 0, "waiting for the child failed");
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        Ok((ok, ru.ru_maxrss as u64 * 1024))
    }
    #[cfg(not(unix))]
    {
        let mut child = child;
        Ok((child.wait()?.success(), 0))
    }
}

fn verify_bench(layers: &[usize], dir: &Path, json_out: Option<PathBuf>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for &n in layers {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let preset = Preset {
            name: "qwen3-30b-a3b-shape",
            vocab_size: 151936,
            hidden_size: 2048,
            num_layers: n,
            num_heads: 32,
            num_kv_heads: 4,
            head_dim: 128,
            num_experts: 128,
            top_k: 8,
            expert_intermediate: 768,
        };
        let cfg = ModelConfig::from_json(preset.config_json(DType::BF16))?;
        let src = dir.join("source");
        eprintln!("bench verify: writing a {n}-layer Qwen3-30B-A3B-shaped source (bf16)…");
        let init = Initialiser::new(&cfg, DType::BF16, 0, 0.02);
        write_checkpoint(
            &src,
            &cfg.to_json_string(),
            &init.tensors(),
            None,
            &WriteOptions {
                max_shard_bytes: 4_000_000_000,
                force: true,
                ..Default::default()
            },
            |_| {},
        )?;
        let counts = moegrow_core::analysis::param_counts_for(&cfg);
        let h = cfg.hidden_size as u64;
        let v = cfg.vocab_size as u64;
        let layer_f32 = (counts.total - 2 * v * h - h) / n as u64 * 4;
        let map: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        eprintln!("bench verify: grow --verify of {n} layers…");
        let t = Instant::now();
        let (ok, peak) = run_measured(
            Command::new(&exe)
                .arg("grow")
                .arg(&src)
                .arg(dir.join("grown"))
                .args(["--layer-map", &map.join(","), "--verify", "--force"])
                .stdout(std::process::Stdio::null()),
        )?;
        anyhow::ensure!(ok, "moegrow grow --verify failed on {n} layers");
        rows.push(json!({
            "layers": n,
            "source_bytes": dir_bytes(&src),
            "one_layer_f32_bytes": layer_f32,
            "peak_rss_bytes": peak,
            "budget_bytes": layer_f32 + 500_000_000,
            "within_budget": peak <= layer_f32 + 500_000_000,
            "seconds": t.elapsed().as_secs_f64(),
        }));
        std::fs::remove_dir_all(dir)?;
    }
    let peaks: Vec<u64> = rows.iter().filter_map(|r| r["peak_rss_bytes"].as_u64()).collect();
    let result = json!({
        "model": "Qwen3-30B-A3B layer shape (hidden 2048, 128 experts, FFN 768, 32/4 heads, vocab 151936, bf16)",
        "runs": rows,
        "peak_rss_growth_bytes": peaks.last().zip(peaks.first()).map(|(a, b)| *a as i64 - *b as i64),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(p) = json_out {
        std::fs::write(&p, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

/// Bytes the bench's growth (depth ×2, width ×2) will write.
fn param_bytes_after(cfg: &ModelConfig) -> anyhow::Result<u64> {
    use moegrow_core::growth::WidthStep;
    let deeper = moegrow_core::growth::depth::grow_config(
        cfg,
        &moegrow_core::growth::LayerMap::interpose(cfg.num_layers, 2, 0, 0)?,
    )?;
    let deeper = ModelConfig::from_json(serde_json::Value::Object(deeper))?;
    let (wider, _) = WidthStep::default().grow_config(&deeper)?;
    let wider = ModelConfig::from_json(serde_json::Value::Object(wider))?;
    Ok(
        moegrow_core::analysis::param_counts_for(&wider)
            .total
            * 2,
    )
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|r| {
            r.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Peak resident set of finished child processes, in bytes (Linux reports KiB).
#[cfg(unix)]
fn children_peak_rss() -> u64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as u64 * 1024
}

/// Not measured where `getrusage` does not exist (the report says 0).
#[cfg(not(unix))]
fn children_peak_rss() -> u64 {
    0
}

/// Flush file system buffers so one timed run does not pay for the last one's writes.
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and only flushes file system buffers.
    #[cfg(unix)]
    unsafe {
        libc::sync()
    };
}

/// Copy every safetensors file of `src` into `dst` through the page cache, as a baseline.
fn plain_copy(src: &Path, dst: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dst)?;
    let mut total = 0;
    for e in std::fs::read_dir(src)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let mut r = std::fs::File::open(&p)?;
            let mut w = std::io::BufWriter::with_capacity(
                8 << 20,
                std::fs::File::create(
                    dst.join(p.file_name().context("shard without a file name")?),
                )?,
            );
            total += std::io::copy(&mut r, &mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
    }
    Ok(total)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (layers, dir, json_out, keep, rounds) = match a.what {
        What::Gpu {
            checkpoint,
            runs,
            tokens,
            json,
        } => return super::bench_gpu::run(checkpoint, runs, tokens, json),
        What::Verify { layers, dir, json } => return verify_bench(&layers, &dir, json),
        What::Grow {
            layers,
            dir,
            json,
            keep,
            rounds,
        } => (layers, dir, json, keep, rounds),
    };
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(dir.join("grown"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let preset = Preset {
        name: "bench",
        vocab_size: 32000,
        hidden_size: 1024,
        num_layers: layers,
        num_heads: 16,
        num_kv_heads: 4,
        head_dim: 64,
        num_experts: 64,
        top_k: 4,
        expert_intermediate: 768,
    };
    let cfg = ModelConfig::from_json(preset.config_json(DType::BF16))?;
    let src = dir.join("source");
    let init = Initialiser::new(&cfg, DType::BF16, 0, 0.02);
    let tensors = init.tensors();
    let largest = tensors.iter().map(|t| t.nbytes() as u64).max().unwrap_or(0);
    if !(keep && src.join("config.json").exists()) {
        eprintln!(
            "bench: writing the synthetic source ({} layers, bf16)…",
            layers
        );
        write_checkpoint(
            &src,
            &cfg.to_json_string(),
            &tensors,
            None,
            &WriteOptions {
                max_shard_bytes: 2_000_000_000,
                force: true,
                ..Default::default()
            },
            |_| {},
        )?;
    }
    let src_bytes = dir_bytes(&src);

    // Baseline: copy the source's files until as many bytes are written as growth will write
    // (depth ×2 and width ×2 make it about 3.8× the source), so both meet the same disk
    // write-back pressure. Copy and grow alternate for `rounds` rounds; medians are reported,
    // because this machine's disk throughput drifts by 2× between runs.
    let target = param_bytes_after(&cfg)?;
    let exe = std::env::current_exe()?;
    let out = dir.join("grown");
    let (mut copy_runs, mut grow_runs) = (Vec::new(), Vec::new());
    let mut copied = 0;
    let mut grown_bytes = 0;
    for round in 0..rounds.max(1) {
        eprintln!("bench: round {} of {rounds}", round + 1);
        sync_disks();
        let t = Instant::now();
        copied = 0;
        let mut n = 0;
        while copied < target {
            copied += plain_copy(&src, &dir.join(format!("copy{n}")))?;
            n += 1;
        }
        copy_runs.push(t.elapsed().as_secs_f64());
        for r in 0..n {
            std::fs::remove_dir_all(dir.join(format!("copy{r}")))?;
        }
        sync_disks();
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        let status = Command::new(&exe)
            .arg("grow")
            .arg(&src)
            .arg(&out)
            .args([
                "--depth",
                "2",
                "--experts",
                "2",
                "--noise",
                "0.01",
                "--seed",
                "1",
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        grow_runs.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(status.success(), "moegrow grow failed");
        grown_bytes = dir_bytes(&out);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (copy_s, grow_s) = (
        median(&mut copy_runs.clone()),
        median(&mut grow_runs.clone()),
    );
    let peak = children_peak_rss();
    let copy_bps = copied as f64 / copy_s;
    let grow_bps = grown_bytes as f64 / grow_s;
    let result = json!({
        "source_bytes": src_bytes,
        "largest_tensor_bytes": largest,
        "copy": {"bytes": copied, "median_seconds": copy_s, "runs_seconds": copy_runs, "bytes_per_s": copy_bps},
        "grow": {"bytes_written": grown_bytes, "median_seconds": grow_s, "runs_seconds": grow_runs, "bytes_per_s": grow_bps, "peak_rss_bytes": peak},
        "grow_over_copy_throughput": grow_bps / copy_bps,
        "peak_rss_over_largest_tensor_plus_100mb": peak as f64 / (2.0 * largest as f64 + 100e6),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(p) = json_out {
        std::fs::write(&p, serde_json::to_string_pretty(&result)?)?;
    }
    if keep {
        std::fs::remove_dir_all(&out)?;
    } else {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
