//! Growth against the transformers fixtures: width ×2 without noise and zero-initialised depth
//! copies keep transformers' logits; interposition and stacking put exactly the expected
//! tensors at each index; noise has the requested relative size and touches only what it should;
//! output is reproducible from the seed.

use moegrow_core::growth::stages::std_dev;
use moegrow_core::growth::*;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::{Checkpoint, ExpertLayout, LayerRole, Proj, Role};
use moegrow_integration_tests::*;
use std::path::{Path, PathBuf};

fn logits_match(name: &str, grown: &Checkpoint, dir: &Path) -> Result<(), String> {
    let reference = Reference::load(dir);
    let logits = ReferenceModel::load(grown)
        .unwrap()
        .forward(&reference.tokens)
        .unwrap()
        .logits;
    let (d, i) = max_abs_diff(&logits.data, &reference.get("logits").1);
    if d <= 1e-4 {
        Ok(())
    } else {
        Err(format!(
            "{name}: failed at index {i}: |Δlogit| {d:.2e} > 1e-4"
        ))
    }
}

#[test]
fn width_x2_without_noise_keeps_transformers_logits_for_every_family_and_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for layout in [ExpertLayout::PerExpert, ExpertLayout::Fused] {
            let out = tmp.path().join(format!("{name}-{}", layout.name()));
            let g = grow(&dir, &out, vec![width(2, 0.0)], 0, Some(layout));
            assert_eq!(g.config.moe.num_experts, 16);
            assert_eq!(g.config.moe.top_k, 4);
            if let Err(e) = logits_match(&format!("{name} → {}", layout.name()), &g, &dir) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn zero_initialised_depth_copies_are_exact_and_compose_with_width() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let out = tmp.path().join(&name);
        let g = grow(
            &dir,
            &out,
            vec![depth(DepthMethod::Interpose, true), width(2, 0.0)],
            0,
            None,
        );
        assert_eq!(g.config.num_layers, 6);
        if let Err(e) = logits_match(&name, &g, &dir) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn interposition_and_stacking_place_exactly_the_expected_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    for (fixture, method, order) in [
        (
            "qwen2_moe_fused_f32",
            DepthMethod::Interpose,
            vec![0, 0, 1, 1, 2, 2],
        ),
        (
            "qwen2_moe_fused_f32",
            DepthMethod::Stack,
            vec![0, 1, 2, 0, 1, 2],
        ),
        (
            "mixtral_experts_bf16",
            DepthMethod::Stack,
            vec![0, 1, 2, 0, 1, 2],
        ),
        (
            "deepseek_v2_experts_f32",
            DepthMethod::Interpose,
            vec![0, 0, 1, 1, 2, 2],
        ),
    ] {
        let dir = fixtures_dir().join(fixture);
        let src = Checkpoint::open(&dir).unwrap();
        let out = tmp.path().join(format!("{fixture}-{method:?}"));
        let g = grow(&dir, &out, vec![depth(method, false)], 0, None);
        assert_eq!(g.config.num_layers, order.len());
        for e in g.entries() {
            let src_role = match e.role {
                Role::Layer(i, r) => Role::Layer(order[i], r),
                r => r,
            };
            assert!(
                g.bytes(e.role).unwrap() == src.bytes(src_role).unwrap(),
                "{fixture} {method:?}: {} is not a copy of {src_role:?}",
                e.name
            );
        }
        // Per-layer config lists follow the map (Qwen2 layer 1 is dense).
        let dense: Vec<usize> = (0..g.config.num_layers)
            .filter(|&i| !g.config.is_moe(i))
            .collect();
        let want: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, &s)| !src.config.is_moe(s))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(dense, want, "{fixture} {method:?}");
    }
}

/// Relative std of (grown − source) for each routed expert matrix of copy `c`.
fn relative_noise(
    src: &Checkpoint,
    g: &Checkpoint,
    layer: usize,
    e_src: usize,
    j: usize,
    p: Proj,
) -> f32 {
    let a = src.expert_f32(layer, e_src, p).unwrap();
    let b = g.expert_f32(layer, j, p).unwrap();
    let d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    std_dev(&d) / std_dev(&a)
}

#[test]
fn noise_has_the_requested_relative_std_and_touches_only_the_copies() {
    let dir = fixtures_dir().join("qwen3_moe_experts_f32");
    let src = Checkpoint::open(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let alpha = 0.05;
    let g = grow(
        &dir,
        &tmp.path().join("copies"),
        vec![width(2, alpha)],
        7,
        None,
    );
    let mut ratios = Vec::new();
    for l in 0..3 {
        for e in 0..8 {
            for p in Proj::ALL {
                assert_eq!(
                    src.expert_bytes(l, e, p).unwrap().1,
                    g.expert_bytes(l, e, p).unwrap().1,
                    "original expert {e} changed"
                );
                ratios.push(relative_noise(&src, &g, l, e, e + 8, p));
            }
        }
        // Router: original rows untouched, copied rows noised by alpha·std(router).
        let (r0, r1) = (
            src.f32(Role::Layer(l, LayerRole::Router)).unwrap(),
            g.f32(Role::Layer(l, LayerRole::Router)).unwrap(),
        );
        assert_eq!(&r1[..r0.len()], &r0[..]);
        let d: Vec<f32> = r1[r0.len()..].iter().zip(&r0).map(|(b, a)| b - a).collect();
        let rr = std_dev(&d) / std_dev(&r0);
        assert!((rr / alpha - 1.0).abs() < 0.1, "router noise ratio {rr}");
    }
    let mean = ratios.iter().sum::<f32>() / ratios.len() as f32;
    assert!(
        (mean / alpha - 1.0).abs() < 0.05,
        "mean relative noise {mean}, want {alpha}"
    );
    assert!(
        ratios.iter().all(|r| (r / alpha - 1.0).abs() < 0.3),
        "{ratios:?}"
    );

    // `both`: +ε on the original, −ε on the copy, so the pair's mean is the source.
    let mut step = GrowthOptions {
        noise_on: NoiseOn::Both,
        router_noise: false,
        ..GrowthOptions::width(2, alpha)
    };
    let g = grow(
        &dir,
        &tmp.path().join("both"),
        vec![Step::Options(step.clone())],
        7,
        None,
    );
    for e in 0..8 {
        let a = src.expert_f32(0, e, Proj::Up).unwrap();
        let (o, c) = (
            g.expert_f32(0, e, Proj::Up).unwrap(),
            g.expert_f32(0, e + 8, Proj::Up).unwrap(),
        );
        for i in 0..a.len() {
            assert!(
                ((o[i] + c[i]) / 2.0 - a[i]).abs() < 1e-6,
                "expert {e} index {i}"
            );
        }
        let r = relative_noise(&src, &g, 0, e, e, Proj::Up);
        assert!((r / alpha - 1.0).abs() < 0.3, "original's noise {r}");
    }
    assert_eq!(
        src.bytes(Role::Layer(0, LayerRole::Router)).unwrap(),
        &g.bytes(Role::Layer(0, LayerRole::Router)).unwrap()
            [..src.bytes(Role::Layer(0, LayerRole::Router)).unwrap().len()]
    );

    // Random new experts: drawn with the source's std, unrelated to it.
    step.noise_on = NoiseOn::Copies;
    step.new_experts = NewExperts::Random;
    let g = grow(
        &dir,
        &tmp.path().join("random"),
        vec![Step::Options(step)],
        7,
        None,
    );
    let (a, b) = (
        src.expert_f32(1, 3, Proj::Gate).unwrap(),
        g.expert_f32(1, 11, Proj::Gate).unwrap(),
    );
    assert!((std_dev(&b) / std_dev(&a) - 1.0).abs() < 0.15);
    let corr: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        / (a.len() as f32 * std_dev(&a) * std_dev(&b));
    assert!(
        corr.abs() < 0.2,
        "random expert correlates with its source: {corr}"
    );
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (PathBuf::from(p.file_name().unwrap()), b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_same_plan_and_seed_give_byte_identical_output() {
    let dir = fixtures_dir().join("deepseek_v3_fused_bf16");
    let tmp = tempfile::tempdir().unwrap();
    let steps = || vec![depth(DepthMethod::Interpose, false), width(2, 0.01)];
    grow(&dir, &tmp.path().join("a"), steps(), 11, None);
    grow(&dir, &tmp.path().join("b"), steps(), 11, None);
    grow(&dir, &tmp.path().join("c"), steps(), 12, None);
    assert_eq!(files(&tmp.path().join("a")), files(&tmp.path().join("b")));
    assert_ne!(files(&tmp.path().join("a")), files(&tmp.path().join("c")));
    // Width then depth reaches the same architecture; twins of copied layers then share noise.
    let g = grow(
        &dir,
        &tmp.path().join("wd"),
        vec![width(2, 0.01), depth(DepthMethod::Interpose, false)],
        11,
        None,
    );
    let a = Checkpoint::open(tmp.path().join("a")).unwrap();
    assert_eq!(
        (g.config.num_layers, g.config.moe.num_experts),
        (a.config.num_layers, a.config.moe.num_experts)
    );
    assert_eq!(
        g.expert_bytes(2, 9, Proj::Down).unwrap(),
        g.expert_bytes(3, 9, Proj::Down).unwrap()
    );
    assert_ne!(
        a.expert_bytes(2, 9, Proj::Down).unwrap(),
        a.expert_bytes(3, 9, Proj::Down).unwrap()
    );
}

#[test]
fn sigmoid_routing_without_renormalisation_keeps_the_function_by_halving_the_copies() {
    // The fixtures' DeepSeek-V3 renormalises; switch that off so each twin gets the full
    // sigmoid score, and check the grown model against the (transformers-checked) reference.
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("v3-unnormalised");
    std::fs::create_dir(&src_dir).unwrap();
    let fixture = fixtures_dir().join("deepseek_v3_experts_f32");
    std::fs::copy(
        fixture.join("model.safetensors"),
        src_dir.join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("config.json")).unwrap())
            .unwrap();
    cfg["norm_topk_prob"] = false.into();
    std::fs::write(src_dir.join("config.json"), cfg.to_string()).unwrap();
    let base = Checkpoint::open(&src_dir).unwrap();
    let tokens = Reference::load(&fixture).tokens;
    let want = ReferenceModel::load(&base)
        .unwrap()
        .forward(&tokens)
        .unwrap()
        .logits;
    let g = grow(
        &src_dir,
        &tmp.path().join("grown"),
        vec![width(2, 0.0)],
        0,
        None,
    );
    let got = ReferenceModel::load(&g)
        .unwrap()
        .forward(&tokens)
        .unwrap()
        .logits;
    let (d, i) = max_abs_diff(&got.data, &want.data);
    assert!(d <= 1e-4, "failed at index {i}: |Δlogit| {d}");
    let (a, b) = (
        base.expert_f32(1, 2, Proj::Down).unwrap(),
        g.expert_f32(1, 10, Proj::Down).unwrap(),
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x * 0.5 - y).abs() < 1e-7),
        "copies' down projections are halved"
    );
}
