//! `moegrow bench gpu`: the GPU runtime's throughput on this machine's adapter — matmul
//! GFLOP/s on square and skinny shapes against the CPU GEMM in the same run, the MoE layer
//! (router + grouped experts) against one dense matmul of the same FLOPs, forward tokens/s on
//! the GPU against the CPU reference, and submissions and readbacks per forward pass.

use moegrow_core::gpu::ops::{
    matmul, moe_experts, route, upload_experts, GpuMatrix, MoeScratch, Region, RouterParams,
};
use moegrow_core::gpu::{Gpu, GpuModel};
use moegrow_core::reference::{Mat, ReferenceModel};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn random(n: usize, seed: u32) -> Vec<f32> {
    // A cheap deterministic fill; the values do not matter for timing.
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0)
                - 0.5
        })
        .collect()
}

/// Median seconds of `runs` submissions of `record`, each waited for by a 1-value readback.
fn time_gpu(
    gpu: &Gpu,
    runs: usize,
    mut record: impl FnMut(&mut moegrow_core::gpu::Recorder),
) -> anyhow::Result<f64> {
    let sync = gpu.zeros(1);
    let mut times = Vec::new();
    for i in 0..runs + 1 {
        let t = Instant::now();
        let mut rec = gpu.encoder();
        record(&mut rec);
        rec.submit();
        gpu.read_blocking(&sync)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64()); // the first run compiles pipelines
        }
    }
    Ok(median(times))
}

pub fn run(
    checkpoint: Option<std::path::PathBuf>,
    runs: usize,
    tokens: usize,
    json_out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let gpu = Gpu::new_blocking()?;
    let device = gpu.describe();
    eprintln!("bench gpu on {device}");
    let mut matmuls = Vec::new();
    for (label, m, k, n) in [
        ("square 512", 512, 512, 512),
        ("square 1024", 1024, 1024, 1024),
        ("skinny 8x2048x2048", 8, 2048, 2048),
        ("tall 2048x512x128", 2048, 512, 128),
    ] {
        let (a, w) = (random(m * k, 1), random(n * k, 2));
        let (ga, gw, out) = (
            gpu.upload(&a),
            GpuMatrix::upload(&gpu, n, k, &w),
            gpu.zeros(m * n),
        );
        let s = time_gpu(&gpu, runs, |rec| {
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
        let am = Mat::from_vec(m, k, a);
        let mut cpu_times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            std::hint::black_box(moegrow_core::reference::ops::linear(&am, &w, n));
            cpu_times.push(t.elapsed().as_secs_f64());
        }
        let c = median(cpu_times);
        let flops = 2.0 * (m * k * n) as f64;
        matmuls.push(json!({"shape": label, "gpu_gflops": flops / s / 1e9, "cpu_gflops": flops / c / 1e9, "gpu_over_cpu": c / s}));
    }

    // MoE layer (router + plan + grouped gate/up + down + combine) vs one dense matmul chain
    // of the same FLOPs (tokens × hidden → top_k·3·inter equivalents).
    let (t, h, e, k, inter) = (tokens, 512, 16, 2, 512);
    let x = gpu.upload(&random(t * h, 3));
    let router = GpuMatrix::upload(&gpu, e, h, &random(e * h, 4));
    let gu = upload_experts(&gpu, e, 2 * inter, h, &random(e * 2 * inter * h, 5));
    let dn = upload_experts(&gpu, e, h, inter, &random(e * h * inter, 6));
    let scratch = MoeScratch::new(&gpu, t, k, e, h, inter);
    let logits = gpu.zeros(t * e);
    let out = gpu.zeros(t * h);
    let moe_cfg = moegrow_core::config::MoeConfig {
        num_experts: e,
        top_k: k,
        intermediate: inter,
        router: moegrow_core::config::RouterConfig {
            scoring: moegrow_core::config::Scoring::Softmax,
            normalize: true,
            routed_scaling_factor: 1.0,
            group_limit: None,
            correction_bias: false,
        },
        shared: None,
    };
    let moe_s = time_gpu(&gpu, runs, |rec| {
        matmul(
            rec,
            &x,
            Region::dense(t, h),
            &router,
            None,
            &logits,
            Region::dense(t, e),
            false,
        );
        route(
            rec,
            &logits,
            None,
            &scratch.chosen,
            &scratch.weights,
            RouterParams::new(t, &moe_cfg),
        );
        moe_experts(rec, &x, t, k, e, h, inter, &gu, &dn, &scratch, &out, Default::default());
    })?;
    // Dense equivalent: [t, h] × [k·2·inter, h]ᵀ then [t, k·inter] × [h, k·inter]ᵀ.
    let w1 = GpuMatrix::upload(&gpu, k * 2 * inter, h, &random(k * 2 * inter * h, 7));
    let w2 = GpuMatrix::upload(&gpu, h, k * inter, &random(h * k * inter, 8));
    let (mid, dout) = (gpu.zeros(t * k * 2 * inter), gpu.zeros(t * h));
    let dense_s = time_gpu(&gpu, runs, |rec| {
        matmul(
            rec,
            &x,
            Region::dense(t, h),
            &w1,
            None,
            &mid,
            Region::dense(t, k * 2 * inter),
            false,
        );
        matmul(
            rec,
            &mid,
            Region::cols(t, k * 2 * inter, 0, k * inter),
            &w2,
            None,
            &dout,
            Region::dense(t, h),
            false,
        );
    })?;
    let moe = json!({"tokens": t, "hidden": h, "experts": e, "top_k": k, "expert_ffn": inter, "moe_s": moe_s, "dense_same_flops_s": dense_s, "moe_over_dense_throughput": dense_s / moe_s});

    // Forward pass of a checkpoint: GPU vs the CPU reference, and submissions/readbacks.
    let forward = match checkpoint {
        Some(path) => {
            let ckpt = moegrow_core::Checkpoint::open(&path)?;
            let v = ckpt.config.vocab_size as u32;
            let toks: Vec<u32> = (0..tokens as u32).map(|i| (i * 7919 + 13) % v).collect();
            let g = GpuModel::load(&gpu, &ckpt)?;
            g.forward_blocking(&toks, false)?;
            let (s0, r0) = (
                gpu.submissions.load(Ordering::Relaxed),
                gpu.readbacks.load(Ordering::Relaxed),
            );
            let mut gt = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                g.forward_blocking(&toks, false)?;
                gt.push(t.elapsed().as_secs_f64());
            }
            let (s1, r1) = (
                gpu.submissions.load(Ordering::Relaxed),
                gpu.readbacks.load(Ordering::Relaxed),
            );
            let cpu = ReferenceModel::load(&ckpt)?;
            let mut ct = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                cpu.forward(&toks)?;
                ct.push(t.elapsed().as_secs_f64());
            }
            let (gs, cs) = (median(gt), median(ct));
            json!({
                "checkpoint": path.display().to_string(),
                "tokens": tokens,
                "gpu_tokens_per_s": tokens as f64 / gs,
                "cpu_tokens_per_s": tokens as f64 / cs,
                "gpu_over_cpu": cs / gs,
                "submissions_per_forward": (s1 - s0) as f64 / runs as f64,
                "readbacks_per_forward": (r1 - r0) as f64 / runs as f64,
            })
        }
        None => serde_json::Value::Null,
    };
    let result = json!({"device": device, "matmul": matmuls, "moe_layer": moe, "forward": forward});
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(p) = json_out {
        std::fs::write(p, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}
