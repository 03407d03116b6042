//! The full GPU forward pass against transformers, for every fixture (six families, both
//! layouts, f32 and bf16): logits, every hidden state and every router's logits within 1e-3.
//! Runs on whatever adapter the machine has — Mesa's lavapipe in CI — and fails without one.

use moegrow_core::gpu::{Gpu, GpuModel};
use moegrow_core::Checkpoint;
use moegrow_integration_tests::*;

const TOL: f32 = 1e-3;

fn check(
    name: &str,
    what: &str,
    cols: usize,
    got: &[f32],
    want: &[f32],
    failures: &mut Vec<String>,
) {
    let (d, i) = max_abs_diff(got, want);
    if d.is_nan() || d > TOL {
        failures.push(format!(
            "{name} {what}: failed at index [{}, {}]: computed {} vs expected {} (|diff| {d:.2e})",
            i / cols,
            i % cols,
            got[i],
            want[i]
        ));
    }
}

#[test]
fn gpu_forward_matches_transformers_on_every_fixture() {
    let gpu = Gpu::new_blocking().expect("a GPU adapter (CI: Mesa lavapipe)");
    eprintln!("adapter: {}", gpu.describe());
    let mut failures = Vec::new();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let reference = Reference::load(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let model = GpuModel::load(&gpu, &ckpt).unwrap();
        let out = model.forward_blocking(&reference.tokens, true).unwrap();
        let (shape, logits) = reference.get("logits");
        check(
            &name,
            "logits",
            shape[1],
            &out.logits.data,
            logits,
            &mut failures,
        );
        for (i, hs) in out.hidden_states.iter().enumerate() {
            let (shape, want) = reference.get(&format!("hidden_states.{i}"));
            check(
                &name,
                &format!("hidden_states.{i}"),
                shape[1],
                &hs.data,
                want,
                &mut failures,
            );
        }
        for l in ckpt.config.moe_layers() {
            let (shape, want) = reference.get(&format!("router_logits.{l}"));
            check(
                &name,
                &format!("router_logits.{l}"),
                shape[1],
                &out.router_logits[l].as_ref().unwrap().data,
                want,
                &mut failures,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gpu_forward_with_every_weight_split_across_bindings() {
    // Lower the binding limit so that embeddings, projections and the fused experts all come
    // in several parts: the split paths must give the same logits.
    let mut gpu = Gpu::new_blocking().expect("a GPU adapter");
    gpu.weight_part_bytes = 4096;
    for name in ["qwen2_moe_fused_f32", "deepseek_v3_experts_bf16"] {
        let dir = fixtures_dir().join(name);
        let reference = Reference::load(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let out = GpuModel::load(&gpu, &ckpt)
            .unwrap()
            .forward_blocking(&reference.tokens, false)
            .unwrap();
        let mut failures = Vec::new();
        let (shape, logits) = reference.get("logits");
        check(
            name,
            "logits (split)",
            shape[1],
            &out.logits.data,
            logits,
            &mut failures,
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn activations_past_the_binding_limit_are_a_clear_error() {
    let mut gpu = Gpu::new_blocking().expect("a GPU adapter");
    gpu.max_binding_bytes = 1024;
    let ckpt = Checkpoint::open(fixtures_dir().join("olmoe_experts_f32")).unwrap();
    let err = GpuModel::load(&gpu, &ckpt)
        .unwrap()
        .forward_blocking(&[1, 2, 3, 4, 5], false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("storage-binding limit; run fewer tokens"),
        "{err}"
    );
}

#[test]
fn one_submission_and_one_readback_per_forward() {
    let gpu = Gpu::new_blocking().expect("a GPU adapter");
    let dir = fixtures_dir().join("mixtral_experts_f32");
    let ckpt = Checkpoint::open(&dir).unwrap();
    let model = GpuModel::load(&gpu, &ckpt).unwrap();
    let tokens = Reference::load(&dir).tokens;
    model.forward_blocking(&tokens, false).unwrap();
    let (s0, r0) = (
        gpu.submissions.load(std::sync::atomic::Ordering::Relaxed),
        gpu.readbacks.load(std::sync::atomic::Ordering::Relaxed),
    );
    model.forward_blocking(&tokens, false).unwrap();
    let (s1, r1) = (
        gpu.submissions.load(std::sync::atomic::Ordering::Relaxed),
        gpu.readbacks.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(r1 - r0, 1, "readbacks per forward");
    assert_eq!(
        s1 - s0,
        2,
        "submissions per forward: the recorded pass plus the readback copy"
    );
}

#[test]
fn gpu_expert_norm_profile_equals_the_cpu_one() {
    let mut gpu = Gpu::new_blocking().expect("a GPU adapter");
    for (name, limit) in [
        ("deepseek_v2_fused_bf16", None),
        ("mixtral_experts_f32", Some(2048u64)),
        ("qwen2_moe_experts_f32", None),
    ] {
        if let Some(l) = limit {
            gpu.weight_part_bytes = l; // several parts per layer
        }
        let ckpt = Checkpoint::open(fixtures_dir().join(name)).unwrap();
        let cpu = moegrow_core::analysis::expert_norm_profile(&ckpt).unwrap();
        let on_gpu = moegrow_core::gpu::stats::expert_norm_profile_blocking(&gpu, &ckpt).unwrap();
        assert_eq!(cpu.len(), on_gpu.len());
        for (l, (a, b)) in cpu.iter().zip(&on_gpu).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() < 1e-6 * a.abs().max(1.0),
                    "{name} layer {l}: CPU {a} vs GPU {b}"
                ),
                (None, None) => {}
                _ => panic!("{name} layer {l}: dense/MoE disagree"),
            }
        }
    }
}
