//! Checkpoints made from the real hub configs (`fixtures/hub/`, by `fixtures/hub/generate.py`):
//! the hub's on-disk format (per-expert, sharded, FP8 with block scales where the hub ships FP8,
//! multi-token-prediction layers, YaRN RoPE, the `kimi_k2` alias) with transformers' outputs.
//! Each opens, runs within 1e-4 of transformers on the CPU and 1e-3 on the GPU, grows with
//! every plan keeping what it must keep, and converts between FP8 and bf16.

use moegrow_core::growth::{DepthMethod, GrowthOptions};
use moegrow_core::reference::{forward_streamed, ReferenceModel};
use moegrow_core::schema::layout::Storage;
use moegrow_core::{Checkpoint, DType, ExpertLayout, TensorSource};
use moegrow_integration_tests::*;
use std::path::{Path, PathBuf};

fn hub_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir().join("hub"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("reference.safetensors").exists())
        .collect();
    v.sort();
    assert!(
        v.len() >= 7,
        "expected a fixture per hub config, found {}",
        v.len()
    );
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().to_string()
}

fn write<S: TensorSource + ?Sized>(
    src: &S,
    out: &Path,
    layout: ExpertLayout,
    storage: Storage,
) -> Checkpoint {
    write_as(src, out, layout, storage)
}

#[test]
fn hub_checkpoints_match_transformers_on_the_cpu() {
    let mut failures = Vec::new();
    for dir in hub_fixtures() {
        let n = name(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{n}: {e}"));
        let r = Reference::load(&dir);
        let out = forward_streamed(&ckpt, &r.tokens, || {}).unwrap_or_else(|e| panic!("{n}: {e}"));
        let (d, i) = max_abs_diff(&out.logits.data, &r.get("logits").1);
        if d > 1e-4 {
            failures.push(format!("{n}: logit {i} differs from transformers by {d:e}"));
        }
        for (l, h) in out.hidden_states.iter().enumerate() {
            let (d, i) = max_abs_diff(&h.data, &r.get(&format!("hidden_states.{l}")).1);
            if d > 1e-4 {
                failures.push(format!(
                    "{n}: hidden state {l} element {i} differs by {d:e}"
                ));
            }
        }
        for (l, rl) in out.router_logits.iter().enumerate() {
            if let Some(m) = rl {
                let (d, i) = max_abs_diff(&m.data, &r.get(&format!("router_logits.{l}")).1);
                if d > 1e-4 {
                    failures.push(format!("{n}: router logit {l}/{i} differs by {d:e}"));
                }
            }
        }
        let params: u64 = r.metadata["num_parameters"].parse().unwrap();
        let ours = moegrow_core::analysis::param_counts(&ckpt).total;
        if ours != params {
            failures.push(format!(
                "{n}: {ours} parameters, transformers counts {params}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hub_checkpoints_grow_keeping_the_function() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in hub_fixtures() {
        let n = name(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let r = Reference::load(&dir);
        let base = ReferenceModel::load(&ckpt)
            .unwrap()
            .forward(&r.tokens)
            .unwrap()
            .logits;
        let plans = [
            ("w2", GrowthOptions::width(2, 0.0)),
            (
                "d2-zero-w2",
                GrowthOptions {
                    depth: Some(2),
                    zero_init_copies: true,
                    ..GrowthOptions::width(2, 0.0)
                },
            ),
            (
                "d2-w2-noise",
                GrowthOptions {
                    depth: Some(2),
                    ..GrowthOptions::width(2, 0.01)
                },
            ),
            ("stack2", GrowthOptions::depth(2, DepthMethod::Stack)),
        ];
        for (plan_name, o) in plans {
            let plan = o.plan().unwrap();
            let grown = match plan.apply(&ckpt) {
                Ok(g) => g,
                // DeepSeek's and ERNIE's dense first layers cannot be stacked: refused with the
                // reason.
                Err(e) if plan_name == "stack2" => {
                    let e = e.to_string();
                    assert!(e.contains("first_k_dense_replace") || e.contains("moe_layer_start_index"), "{n}: {e}");
                    continue;
                }
                Err(e) => panic!("{n} {plan_name}: {e}"),
            };
            let out = tmp.path().join(format!("{n}-{plan_name}"));
            let g = write(&grown, &out, ckpt.layout, Storage::AsSource);
            assert_eq!(
                g.config.mtp_layers, ckpt.config.mtp_layers,
                "{n} {plan_name}"
            );
            let logits = forward_streamed(&g, &r.tokens, || {}).unwrap().logits;
            if plan_name == "w2" || plan_name == "d2-zero-w2" {
                let (d, i) = max_abs_diff(&logits.data, &base.data);
                assert!(
                    d <= 1e-4,
                    "{n} {plan_name}: kept the function? logit {i} moved by {d:e}"
                );
            }
        }
    }
}

#[test]
fn quantised_hub_checkpoints_convert_to_bf16_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in hub_fixtures() {
        let n = name(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let Some(q) = ckpt.config.quant.clone() else {
            continue;
        };
        let r = Reference::load(&dir);
        let bf16 = write(
            &ckpt,
            &tmp.path().join(format!("{n}-bf16")),
            ckpt.layout,
            Storage::Values(DType::BF16),
        );
        assert!(
            bf16.config.quant.is_none(),
            "{n}: quantization_config removed"
        );
        assert!(bf16
            .entries()
            .iter()
            .all(|e| e.dtype != DType::F8E4M3 && e.scale.is_none()));
        let a = ReferenceModel::load(&bf16)
            .unwrap()
            .forward(&r.tokens)
            .unwrap()
            .logits;
        let (d, _) = max_abs_diff(&a.data, &r.get("logits").1);
        assert!(
            d < 5e-2,
            "{n}: bf16 rounding of the dequantised weights moved a logit by {d}"
        );
        // compressed-tensors int4 is read, grown and dequantised, never written from values:
        // asked for, it is refused with the way out.
        if q.format == moegrow_core::quant::QuantFormat::Int4 {
            let e = moegrow_core::schema::layout::output_tensors(&ckpt, ckpt.layout, Storage::Fp8(moegrow_core::quant::BlockQuant::fp8([128, 128], DType::F32, false)))
                .err()
                .unwrap_or_else(|| panic!("{n}: int4 requantised to fp8"))
                .to_string();
            assert!(e.contains("int4") && e.contains("--dtype bf16"), "{n}: {e}");
            let e = moegrow_core::schema::layout::output_tensors(&ckpt, ExpertLayout::Fused, Storage::AsSource).err().unwrap().to_string();
            assert!(e.contains("per-expert"), "{n}: {e}");
            continue;
        }
        // Back to FP8 in the source's blocks from an exact (f32) dequantisation: the float8
        // bytes as the hub stored them (dequantised values requantise to themselves).
        let f32 = write(
            &ckpt,
            &tmp.path().join(format!("{n}-f32")),
            ckpt.layout,
            Storage::Values(DType::F32),
        );
        let back = write(
            &f32,
            &tmp.path().join(format!("{n}-fp8")),
            ckpt.layout,
            Storage::Fp8(match q.format {
                moegrow_core::quant::QuantFormat::Mxfp4 => moegrow_core::quant::BlockQuant::mxfp4(),
                _ => moegrow_core::quant::BlockQuant::fp8(q.block, DType::F32, q.pow2_scales),
            }),
        );
        let mut same = 0;
        let mut total = 0;
        for e in ckpt.entries().iter().filter(|e| e.scale.is_some()) {
            total += 1;
            let eq = ckpt.bytes(e.role).unwrap() == back.bytes(e.role).unwrap();
            // Power-of-two (`ue8m0`) scales are not idempotent in bytes: a block whose largest
            // value rounded down to 224·s requantises with s/2 and twice the codes — the same
            // values. So: values always, bytes where the scales are free.
            assert_eq!(
                moegrow_core::schema::read_f32(&ckpt, e.role).unwrap(),
                moegrow_core::schema::read_f32(&back, e.role).unwrap(),
                "{n}: {} dequantises differently after the round trip",
                e.name
            );
            same += eq as usize;
        }
        assert!(
            total > 0 && (q.pow2_scales || same * 10 >= total * 9),
            "{n}: {same} of {total} float8 tensors round-trip exactly"
        );
    }
}

#[test]
fn hub_checkpoints_match_transformers_on_the_gpu() {
    let gpu = moegrow_core::gpu::Gpu::new_blocking().expect("a GPU adapter (lavapipe in CI)");
    for dir in hub_fixtures() {
        let n = name(&dir);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let r = Reference::load(&dir);
        // Qwen3-Next's Gated DeltaNet has no WGSL kernels: refused with the reason.
        if ckpt.config.linear_attention.is_some() {
            let e = moegrow_core::gpu::GpuModel::load(&gpu, &ckpt).err().unwrap_or_else(|| panic!("{n}: loaded"));
            assert!(e.to_string().contains("Gated DeltaNet") && e.to_string().contains("CPU"), "{n}: {e}");
            continue;
        }
        let model = moegrow_core::gpu::GpuModel::load(&gpu, &ckpt).unwrap();
        let out = model.forward_blocking(&r.tokens, false).unwrap();
        let (d, i) = max_abs_diff(&out.logits.data, &r.get("logits").1);
        assert!(
            d <= 1e-3,
            "{n}: GPU logit {i} differs from transformers by {d:e}"
        );
    }
}

/// The plans of `fixtures/hub/check_grown.sh`, as the CLI builds them.
fn plan(name: &str) -> Option<GrowthOptions> {
    Some(match name {
        "w2" => GrowthOptions::width(2, 0.0),
        "w2-noise" => GrowthOptions {
            seed: 1,
            ..GrowthOptions::width(2, 0.01)
        },
        "d2-zero-w2" => GrowthOptions {
            depth: Some(2),
            zero_init_copies: true,
            ..GrowthOptions::width(2, 0.0)
        },
        "d2-w2-noise" => GrowthOptions {
            depth: Some(2),
            seed: 2,
            ..GrowthOptions::width(2, 0.01)
        },
        "stack2" => GrowthOptions::depth(2, DepthMethod::Stack),
        _ => return None,
    })
}

/// `check_grown.sh` grew every hub fixture, converted the FP8 ones to bf16, loaded each output in
/// transformers (FP8 through its own FP8 loader) and committed the logits. moegrow produces the
/// same outputs again (seeded, byte-reproducible) and its forward pass of them must match
/// transformers' within 1e-4; the record must show every output loaded with no missing tensor
/// (the unexpected ones are the multi-token-prediction layers transformers ignores).
#[test]
fn grown_hub_checkpoints_match_what_transformers_computes_for_them() {
    let hub = fixtures_dir().join("hub");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hub.join("transformers_loads_grown.json")).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(hub.join("grown_reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (key, r) in record.as_object().unwrap() {
        let (fixture, plan_name) = key.split_once('/').unwrap();
        assert!(
            r["loaded"].as_bool().unwrap() && r["missing_keys"].as_array().unwrap().is_empty(),
            "{key}: {r}"
        );
        let layers = r["num_hidden_layers"].as_u64().unwrap();
        for k in r["unexpected_keys"].as_array().unwrap() {
            assert!(
                k.as_str()
                    .unwrap()
                    .starts_with(&format!("model.layers.{layers}.")),
                "{key}: unexpected key {k} is not a multi-token-prediction tensor"
            );
        }
        let src = Checkpoint::open(hub.join(fixture)).unwrap();
        let tokens = Reference::load(&hub.join(fixture)).tokens;
        let out = tmp.path().join(key.replace('/', "@"));
        let ours = match plan(plan_name) {
            Some(o) => {
                let grown = o.plan().unwrap().apply(&src).unwrap();
                let g = write(&grown, &out, src.layout, Storage::AsSource);
                forward_streamed(&g, &tokens, || {}).unwrap().logits
            }
            None => {
                assert_eq!(plan_name, "bf16");
                let b = write(&src, &out, src.layout, Storage::Values(DType::BF16));
                forward_streamed(&b, &tokens, || {}).unwrap().logits
            }
        };
        let view = st.tensor(key).unwrap();
        let want: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let (d, i) = max_abs_diff(&ours.data, &want);
        assert!(
            d <= 1e-4,
            "{key}: moegrow's logit {i} differs from transformers' by {d:e}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "{checked} grown hub checkpoints checked");
    for dir in hub_fixtures() {
        let n = name(&dir);
        assert!(
            record.get(format!("{n}/w2")).is_some(),
            "{n} is not in transformers_loads_grown.json: run tests/fixtures/hub/check_grown.sh"
        );
    }
}
