//! Block-scaled FP8 checkpoints (DeepSeek-V3/R1, Kimi-K2, Qwen3-*-FP8): made here from the
//! transformers fixtures by quantising their linear weights to e4m3 with block scales (blocks
//! scaled down to the tiny shapes, ragged edge blocks included), then opened, run, grown,
//! re-laid-out and dequantised.

use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::growth::GrowthOptions;
use moegrow_core::quant::BlockQuant;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::schema::layout::{output_tensors, Storage};
use moegrow_core::{
    Checkpoint, DType, ExpertLayout, LayerRole, Proj, Role, TensorSource,
};
use moegrow_integration_tests::*;
use std::path::Path;

fn write<S: TensorSource + ?Sized>(src: &S, out: &Path, layout: ExpertLayout, storage: Storage) -> Checkpoint {
    write_as(src, out, layout, storage)
}

fn fp8(block: [usize; 2]) -> Storage {
    Storage::Fp8(BlockQuant::fp8(block, DType::F32, false))
}

fn logits(c: &Checkpoint, tokens: &[u32]) -> Vec<f32> {
    ReferenceModel::load(c).unwrap().forward(tokens).unwrap().logits.data
}

#[test]
fn quantised_checkpoints_open_run_and_dequantise() {
    let tmp = tempfile::tempdir().unwrap();
    for (fixture, block) in [
        ("qwen3_moe_experts_f32", [4, 8]),
        // kv_a_proj_with_mqa has 20 rows: the last 8-row block is ragged.
        ("deepseek_v3_experts_bf16", [8, 8]),
        ("mixtral_fused_f32", [4, 8]),
    ] {
        let src = Checkpoint::open(fixtures_dir().join(fixture)).unwrap();
        let q = write(&src, &tmp.path().join(format!("{fixture}-fp8")), src.layout, fp8(block));
        assert_eq!(q.config.quant.as_ref().unwrap().block, block);
        let e = |r: Role| q.entry(r).unwrap().clone();
        let expert = match q.layout {
            ExpertLayout::PerExpert => Role::Layer(1, LayerRole::Expert(3, Proj::Down)),
            ExpertLayout::Fused => Role::Layer(1, LayerRole::ExpertsDown),
        };
        for r in [expert, Role::Layer(1, LayerRole::Attn(moegrow_core::roles::AttnRole::O))] {
            assert_eq!(e(r).dtype, DType::F8E4M3, "{fixture} {r:?}");
            assert!(e(r).scale.is_some(), "{fixture} {r:?} has scales");
        }
        for r in [Role::Embed, Role::FinalNorm, Role::Layer(1, LayerRole::Router)] {
            assert_ne!(e(r).dtype, DType::F8E4M3, "{fixture}: {r:?} stays unquantised");
            assert!(e(r).scale.is_none());
        }
        // The reference model runs on the dequantised weights: the same logits as a plain
        // f32 copy of them.
        let tokens = Reference::load(&fixtures_dir().join(fixture)).tokens;
        let plain = write(&q, &tmp.path().join(format!("{fixture}-f32")), q.layout, Storage::Values(DType::F32));
        assert!(plain.config.quant.is_none() && !plain.config.raw.contains_key("quantization_config"));
        assert!(plain.entries().iter().all(|e| e.dtype != DType::F8E4M3 && e.scale.is_none()));
        assert_eq!(logits(&q, &tokens), logits(&plain, &tokens), "{fixture}");
        // e4m3 keeps 3 mantissa bits: the function moves, but stays close to the original.
        let (d, _) = max_abs_diff(&logits(&q, &tokens), &logits(&src, &tokens));
        assert!(d < 1.0, "{fixture}: quantisation moved a logit by {d}");

        // Per-expert ⇄ fused keeps every float8 byte and scale.
        let other = match q.layout {
            ExpertLayout::PerExpert => ExpertLayout::Fused,
            ExpertLayout::Fused => ExpertLayout::PerExpert,
        };
        let a = write(&q, &tmp.path().join(format!("{fixture}-other")), other, Storage::AsSource);
        let back = write(&a, &tmp.path().join(format!("{fixture}-back")), q.layout, Storage::AsSource);
        for (x, y) in q.entries().iter().zip(back.entries()) {
            assert_eq!((&x.name, x.dtype), (&y.name, y.dtype), "{fixture}");
            assert_eq!(q.bytes(x.role).unwrap(), back.bytes(y.role).unwrap(), "{fixture}: {}", x.name);
            if x.scale.is_some() {
                assert_eq!(q.read_scales(x.role).unwrap(), back.read_scales(y.role).unwrap());
            }
        }
        assert_eq!(logits(&a, &tokens), logits(&q, &tokens), "{fixture}: layout change");
    }
}

#[test]
fn width_growth_copies_float8_experts_exactly_and_requantises_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = "qwen3_moe_experts_f32";
    let src = Checkpoint::open(fixtures_dir().join(fixture)).unwrap();
    let q = write(&src, &tmp.path().join("fp8"), src.layout, fp8([4, 8]));
    let tokens = Reference::load(&fixtures_dir().join(fixture)).tokens;

    // α = 0: every copy's bytes and scales are its source's, and the function is kept.
    let plan = GrowthOptions::width(2, 0.0).plan().unwrap();
    let grown = plan.apply(&q).unwrap();
    let g = write(&grown, &tmp.path().join("w2"), q.layout, Storage::AsSource);
    let e = q.config.moe.num_experts;
    for l in 0..q.config.num_layers {
        for x in 0..e {
            for p in Proj::ALL {
                let r = |c: &Checkpoint, j: usize| Role::Layer(l, LayerRole::Expert(j % c.config.moe.num_experts, p));
                for j in [x, x + e] {
                    assert_eq!(q.bytes(r(&q, x)).unwrap(), g.bytes(r(&g, j)).unwrap(), "layer {l} expert {j}");
                    assert_eq!(q.read_scales(r(&q, x)).unwrap(), g.read_scales(r(&g, j)).unwrap());
                }
            }
        }
    }
    let (d, i) = max_abs_diff(&logits(&g, &tokens), &logits(&q, &tokens));
    assert!(d <= 1e-4, "α = 0 kept the function: logit {i} moved by {d:e}");

    // α = 0.01: noised copies are requantised with fresh scales; how much of the noise
    // survives e4m3 rounding is measured and reported.
    let plan = GrowthOptions::width(2, 0.01).plan().unwrap();
    let grown = plan.apply(&q).unwrap();
    let g = write(&grown, &tmp.path().join("w2-noise"), q.layout, Storage::AsSource);
    let survival = grown.fp8_noise_survival().expect("noised float8 experts were produced");
    eprintln!("fp8 noise survival at α = 0.01: {:.1}%", 100.0 * survival);
    assert!((0.0..=1.5).contains(&survival), "{survival}");
    let copy = Role::Layer(0, LayerRole::Expert(e + 2, Proj::Gate));
    assert_eq!(g.entry(copy).unwrap().dtype, DType::F8E4M3);
    let (a, b) = (
        q.f32(Role::Layer(0, LayerRole::Expert(2, Proj::Gate))).unwrap(),
        g.f32(copy).unwrap(),
    );
    let (d, _) = max_abs_diff(&a, &b);
    assert!(d < 0.2 * a.iter().fold(0f32, |m, v| m.max(v.abs())), "a copy stays near its source");

    // Growth straight to bf16 dequantises.
    let plan = GrowthOptions::width(2, 0.0).plan().unwrap();
    let grown = plan.apply(&q).unwrap();
    let b = write(&grown, &tmp.path().join("w2-bf16"), q.layout, Storage::Values(DType::BF16));
    assert!(b.entries().iter().all(|e| e.dtype != DType::F8E4M3));
    assert!(b.config.quant.is_none());
}

#[test]
fn broken_float8_checkpoints_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(fixtures_dir().join("qwen3_moe_experts_f32")).unwrap();
    let q = write(&src, &tmp.path().join("fp8"), src.layout, fp8([4, 8]));
    let all = output_tensors(&q, q.layout, Storage::AsSource).unwrap();
    let weight = "model.layers.0.mlp.experts.1.up_proj.weight";
    let cases: Vec<(&str, Box<dyn Fn(&str) -> bool>, &str)> = vec![
        ("no-scale", Box::new(|n: &str| n != format!("{weight}_scale_inv")), "has no"),
    ];
    for (name, keep, words) in cases {
        let tensors: Vec<_> = output_tensors(&q, q.layout, Storage::AsSource)
            .unwrap()
            .into_iter()
            .filter(|t| keep(&t.name))
            .collect();
        let out = tmp.path().join(name);
        write_checkpoint(&out, &q.config.to_json_string(), &tensors, None, &WriteOptions::default(), |_| {}).unwrap();
        let err = Checkpoint::open(&out).err().expect("refused").to_string();
        assert!(err.contains(weight) && err.contains(words), "{name}: {err}");
    }
    assert!(all.len() > src.entries().len(), "scales are extra tensors");
    // float8 weights without a quantization_config: their scales are unknown, so refused.
    let out = tmp.path().join("no-quant-config");
    let mut config = q.config.clone();
    config.raw.remove("quantization_config");
    let plain: Vec<_> = output_tensors(&q, q.layout, Storage::AsSource)
        .unwrap()
        .into_iter()
        .filter(|t| !t.name.ends_with("_scale_inv"))
        .collect();
    write_checkpoint(&out, &config.to_json_string(), &plain, None, &WriteOptions::default(), |_| {}).unwrap();
    let err = Checkpoint::open(&out).err().expect("refused").to_string();
    assert!(err.contains("quantization_config") && err.contains("is float8"), "{err}");
    // A scale on a tensor that is never quantised (the router) is unmapped.
    let mut tensors = output_tensors(&q, q.layout, Storage::AsSource).unwrap();
    let router = tensors.iter().position(|t| t.name == "model.layers.0.mlp.gate.weight").unwrap();
    let fake = moegrow_core::checkpoint::OutputTensor {
        pieces: None,
        name: "model.layers.0.mlp.gate.weight_scale_inv".into(),
        dtype: DType::F32,
        shape: vec![2, 4],
        data: Box::new(|| Ok(std::borrow::Cow::Owned(vec![0u8; 32]))),
    };
    tensors.insert(router + 1, fake);
    let out = tmp.path().join("router-scale");
    write_checkpoint(&out, &q.config.to_json_string(), &tensors, None, &WriteOptions::default(), |_| {}).unwrap();
    let err = Checkpoint::open(&out).err().expect("refused").to_string();
    assert!(err.contains("mlp.gate.weight_scale_inv"), "{err}");
}
