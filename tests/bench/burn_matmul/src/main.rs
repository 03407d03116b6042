//! moegrow's WGSL tiled matmul against burn-wgpu's matmul, on the same wgpu adapter, in one
//! process. Both compute out[m, n] = a[m, k] · w[n, k]ᵀ in f32 (moegrow stores weights
//! [out, in]). Timing follows `moegrow bench gpu` (`native/src/cmd/bench_gpu.rs`, `time_gpu`):
//! warm-up submissions are discarded (they compile pipelines; for burn they also autotune),
//! then the median wall time of `--runs` submissions, each waited for before the clock stops
//! (moegrow: a 1-value readback; burn: `Device::sync`).
//!
//! burn is timed in two layouts and the faster one is compared:
//! - `transpose_view`: w uploaded as [n, k], `a.matmul(w.transpose())` inside the timed region
//!   (the transpose is a stride swap, no copy);
//! - `pretransposed`: wᵀ transposed once on the host and uploaded as a contiguous [k, n]
//!   tensor outside the timed region, `a.matmul(wt)` inside it.
//!
//! Each shape also checks that burn and moegrow agree, and reports both sides' largest error
//! against an f64 CPU reference (every 16th row).
//!
//! Usage: `moegrow-bench-burn-matmul [--runs N] [--warmup N] [--json FILE]`.
//! Kept out of the main workspace (its own `[workspace]`) so that CI never builds burn.

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{DType, Device, Tensor, TensorData};
use moegrow_core::gpu::ops::{matmul, GpuMatrix, Region};
use moegrow_core::gpu::Gpu;
use serde_json::{json, Value};
use std::time::Instant;

const BURN_VERSION: &str = "0.22.1";
const BURN_FEATURES: &[&str] = &["std", "wgpu", "autotune"];

const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square 512", 512, 512, 512),
    ("square 1024", 1024, 1024, 1024),
    ("skinny 8x2048x2048", 8, 2048, 2048),
    ("tall 2048x512x128", 2048, 512, 128),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The same cheap deterministic fill as `moegrow bench gpu`.
fn random(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0)
                - 0.5
        })
        .collect()
}

/// Median seconds of `runs` submissions of `record` after `warmup` discarded ones, each waited
/// for by a 1-value readback (as `time_gpu` in `native/src/cmd/bench_gpu.rs`).
fn time_moegrow(
    gpu: &Gpu,
    warmup: usize,
    runs: usize,
    mut record: impl FnMut(&mut moegrow_core::gpu::Recorder),
) -> Result<f64> {
    let sync = gpu.zeros(1);
    let mut times = Vec::new();
    for i in 0..warmup + runs {
        let t = Instant::now();
        let mut rec = gpu.encoder();
        record(&mut rec);
        rec.submit();
        gpu.read_blocking(&sync)?;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

/// Median seconds of `runs` calls of `op` after `warmup` discarded ones (burn autotunes its
/// matmul on the first call of each shape), each waited for with `Device::sync`.
fn time_burn(
    device: &Device,
    warmup: usize,
    runs: usize,
    mut op: impl FnMut() -> Tensor<2>,
) -> Result<f64> {
    let mut times = Vec::new();
    for i in 0..warmup + runs {
        let t = Instant::now();
        let out = op();
        device.sync().map_err(|e| anyhow!("burn device sync: {e}"))?;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
        drop(out);
    }
    Ok(median(times))
}

fn burn_values(t: Tensor<2>) -> Result<Vec<f32>> {
    let data = t
        .try_into_data()
        .map_err(|e| anyhow!("burn readback: {e}"))?;
    Ok(data
        .as_slice::<f32>()
        .map_err(|e| anyhow!("burn data is not f32: {e:?}"))?
        .to_vec())
}

/// Largest |x − y| and the largest |y|, to check both sides computed the same product.
fn max_diff(x: &[f32], y: &[f32]) -> (f32, f32) {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).fold((0.0f32, 0.0f32), |(d, s), (a, b)| {
        (d.max((a - b).abs()), s.max(b.abs()))
    })
}

/// Largest |out − a·wᵀ| against an f64 CPU reference, on every 16th row of out[m, n].
fn max_err_f64(out: &[f32], a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> f64 {
    let mut err = 0.0f64;
    for i in (0..m).step_by(16) {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * w[j * k + p] as f64)
                .sum();
            err = err.max((out[i * n + j] as f64 - exact).abs());
        }
    }
    err
}

struct Args {
    runs: usize,
    warmup: usize,
    json: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 10,
        warmup: 2,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value("--runs")?.parse().context("--runs")?,
            "--warmup" => args.warmup = value("--warmup")?.parse().context("--warmup")?,
            "--json" => args.json = Some(value("--json")?.into()),
            "-h" | "--help" => {
                println!("usage: moegrow-bench-burn-matmul [--runs N] [--warmup N] [--json FILE]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.runs == 0 || args.warmup == 0 {
        bail!("--runs and --warmup must be at least 1");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;

    let gpu = Gpu::new_blocking()?;
    let moegrow_adapter = gpu.describe();
    eprintln!("moegrow on {moegrow_adapter}");

    // burn brings up its own wgpu device (its own feature and limit requests, so that nothing
    // we choose handicaps its kernels); we read back the adapter it picked to check that it is
    // the one moegrow uses.
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| anyhow!("burn could not initialise wgpu: {e}"))?;
    let binfo = setup.adapter.get_info();
    let burn_adapter = format!("{} ({:?}, {:?})", binfo.name, binfo.backend, binfo.device_type);
    eprintln!("burn {BURN_VERSION} on {burn_adapter}");
    let same_adapter = binfo.name == gpu.info.name
        && format!("{:?}", binfo.backend) == format!("{:?}", gpu.info.backend);
    if !same_adapter {
        eprintln!(
            "warning: burn picked a different adapter than moegrow; set CUBECL_WGPU_DEFAULT_DEVICE \
             (e.g. Cpu, DiscreteGpu(0)) to steer burn"
        );
    }
    drop(setup);
    let opts = (&device, DType::F32);

    let mut results = Vec::new();
    for &(label, m, k, n) in SHAPES {
        let (a, w) = (random(m * k, 1), random(n * k, 2));
        let flops = 2.0 * (m * k * n) as f64;

        // moegrow
        let (ga, gw, out) = (
            gpu.upload(&a),
            GpuMatrix::upload(&gpu, n, k, &w),
            gpu.zeros(m * n),
        );
        let moegrow_s = time_moegrow(&gpu, args.warmup, args.runs, |rec| {
            matmul(
                rec,
                &ga,
                Region::dense(m, k),
                &gw,
                None,
                &out,
                Region::dense(m, n),
                false,
            )
        })?;
        let moegrow_out = gpu.read_blocking(&out)?;
        drop((ga, gw, out));

        // burn: both layouts of the same product.
        let mut wt = vec![0.0f32; k * n];
        for (r, row) in w.chunks_exact(k).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                wt[c * n + r] = v;
            }
        }
        let ba = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), opts);
        let bw = Tensor::<2>::from_data(TensorData::new(w.clone(), [n, k]), opts);
        let bwt = Tensor::<2>::from_data(TensorData::new(wt, [k, n]), opts);
        device.sync().map_err(|e| anyhow!("burn upload: {e}"))?;

        let view_s = time_burn(&device, args.warmup, args.runs, || {
            ba.clone().matmul(bw.clone().transpose())
        })?;
        let view_out = burn_values(ba.clone().matmul(bw.clone().transpose()))?;
        let pre_s = time_burn(&device, args.warmup, args.runs, || {
            ba.clone().matmul(bwt.clone())
        })?;
        let pre_out = burn_values(ba.clone().matmul(bwt.clone()))?;

        let (view_diff, scale) = max_diff(&view_out, &moegrow_out);
        let (pre_diff, _) = max_diff(&pre_out, &moegrow_out);
        let (burn_layout, burn_s) = if pre_s < view_s {
            ("pretransposed", pre_s)
        } else {
            ("transpose_view", view_s)
        };
        let row = json!({
            "shape": label,
            "m": m, "k": k, "n": n,
            "moegrow_gflops": flops / moegrow_s / 1e9,
            "burn_gflops": flops / burn_s / 1e9,
            "moegrow_over_burn": burn_s / moegrow_s,
            "burn_layout": burn_layout,
            "burn_transpose_view_gflops": flops / view_s / 1e9,
            "burn_pretransposed_gflops": flops / pre_s / 1e9,
            "moegrow_ms": moegrow_s * 1e3,
            "burn_ms": burn_s * 1e3,
            "max_abs_diff_burn_vs_moegrow": view_diff.max(pre_diff),
            "max_abs_value": scale,
            "moegrow_max_abs_err_vs_f64": max_err_f64(&moegrow_out, &a, &w, m, k, n),
            "burn_max_abs_err_vs_f64": max_err_f64(&view_out, &a, &w, m, k, n)
                .max(max_err_f64(&pre_out, &a, &w, m, k, n)),
        });
        println!("{row}");
        if view_diff.max(pre_diff) > 1e-3 * scale.max(1.0) {
            bail!("{label}: burn and moegrow disagree (max |diff| {view_diff} / {pre_diff}, max |value| {scale})");
        }
        results.push(row);
    }

    let ratios: Vec<f64> = results
        .iter()
        .map(|r| r["moegrow_over_burn"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    let summary = json!({
        "summary": true,
        "moegrow_adapter": moegrow_adapter,
        "burn_adapter": burn_adapter,
        "same_adapter": same_adapter,
        "burn_version": BURN_VERSION,
        "burn_features": BURN_FEATURES,
        "burn_sync": "Device::sync",
        "moegrow_sync": "1-value readback",
        "runs": args.runs,
        "warmup": args.warmup,
        "statistic": "median",
        "moegrow_over_burn": results
            .iter()
            .map(|r| (r["shape"].as_str().unwrap_or("?").to_string(), r["moegrow_over_burn"].clone()))
            .collect::<serde_json::Map<String, Value>>(),
        "moegrow_over_burn_geomean": geomean,
    });
    println!("{summary}");

    if let Some(path) = args.json {
        let doc = json!({"results": results, "summary": summary});
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
