//! Checkpoints written by moegrow: a read-and-write-back is identical tensor by tensor, a layout
//! change keeps the model's function exactly, sharding and dtype conversion behave as
//! transformers expects.

use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::reference::ReferenceModel;
use moegrow_core::{Checkpoint, DType, ExpertLayout, ModelConfig};
use moegrow_integration_tests::*;
use std::path::Path;

fn write(
    ckpt: &Checkpoint,
    src: &Path,
    out: &Path,
    layout: ExpertLayout,
    dtype: Option<DType>,
    max_shard: u64,
) {
    let tensors = ckpt.export(layout, dtype).unwrap();
    let opts = WriteOptions {
        max_shard_bytes: max_shard,
        ..Default::default()
    };
    write_checkpoint(
        out,
        &ckpt.config.to_json_string(),
        &tensors,
        Some(src),
        &opts,
        |_| {},
    )
    .unwrap();
}

#[test]
fn write_back_is_identical_tensor_by_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let a = Checkpoint::open(&dir).unwrap();
        let out = tmp.path().join(&name);
        write(&a, &dir, &out, a.layout, None, u64::MAX);
        let b = Checkpoint::open(&out).unwrap();
        assert_eq!(a.layout, b.layout, "{name}");
        assert_eq!(a.entries().len(), b.entries().len(), "{name}");
        for (ea, eb) in a.entries().iter().zip(b.entries()) {
            assert_eq!(
                (&ea.name, ea.dtype, &ea.shape),
                (&eb.name, eb.dtype, &eb.shape),
                "{name}"
            );
            assert!(
                a.bytes(ea.role).unwrap() == b.bytes(eb.role).unwrap(),
                "{name}: tensor {} differs",
                ea.name
            );
        }
        let ca: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let cb: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(ca, cb, "{name}: config.json changed");
        assert!(
            out.join("generation_config.json").exists(),
            "{name}: generation_config.json not copied"
        );
    }
}

#[test]
fn changing_the_expert_layout_keeps_every_expert_and_the_logits() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let a = Checkpoint::open(&dir).unwrap();
        let flipped = match a.layout {
            ExpertLayout::PerExpert => ExpertLayout::Fused,
            ExpertLayout::Fused => ExpertLayout::PerExpert,
        };
        let out = tmp.path().join(&name);
        write(&a, &dir, &out, flipped, None, u64::MAX);
        let b = Checkpoint::open(&out).unwrap();
        assert_eq!(b.layout, flipped, "{name}");
        for l in a.config.moe_layers() {
            for e in 0..a.config.moe.num_experts {
                for p in moegrow_core::Proj::ALL {
                    assert_eq!(
                        a.expert_bytes(l, e, p).unwrap(),
                        b.expert_bytes(l, e, p).unwrap(),
                        "{name}: layer {l} expert {e} {p:?}"
                    );
                }
            }
        }
        let reference = Reference::load(&dir);
        let logits = ReferenceModel::load(&b)
            .unwrap()
            .forward(&reference.tokens)
            .unwrap()
            .logits;
        let (d, i) = max_abs_diff(&logits.data, &reference.get("logits").1);
        assert!(
            d <= 1e-4,
            "{name} in {} layout: logits differ at {i} by {d}",
            flipped.name()
        );
    }
}

#[test]
fn sharded_output_has_an_index_and_reads_back() {
    let dir = fixtures_dir().join("qwen3_moe_experts_f32");
    let a = Checkpoint::open(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sharded");
    write(&a, &dir, &out, a.layout, None, 20_000);
    let shards = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        })
        .count();
    assert!(shards > 5, "expected several shards, got {shards}");
    let b = Checkpoint::open(&out).unwrap();
    assert_eq!(b.shards.len(), shards);
    for e in a.entries() {
        assert!(
            a.bytes(e.role).unwrap() == b.bytes(e.role).unwrap(),
            "{}",
            e.name
        );
    }
    // transformers' own sharded fixture reads to the same tensors.
    let hub = Checkpoint::open(fixtures_dir().join("qwen3_moe_experts_f32_sharded")).unwrap();
    for e in a.entries() {
        assert!(
            a.bytes(e.role).unwrap() == hub.bytes(e.role).unwrap(),
            "{}",
            e.name
        );
    }
}

#[test]
fn converting_to_bf16_matches_what_transformers_saves() {
    // Each family's bf16 fixture is transformers' own cast of its f32 fixture: our rounding must
    // agree bit for bit, and tensors transformers keeps in f32 (DeepSeek routers) stay f32.
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix("_f32") else {
            continue;
        };
        let hub_dir = fixtures_dir().join(format!("{stem}_bf16"));
        let a = Checkpoint::open(&dir).unwrap();
        let out = tmp.path().join(&name);
        write(&a, &dir, &out, a.layout, Some(DType::BF16), u64::MAX);
        let b = Checkpoint::open(&out).unwrap();
        let hub = Checkpoint::open(&hub_dir).unwrap();
        for e in a.entries() {
            assert_eq!(
                b.entry(e.role).unwrap().dtype,
                hub.entry(e.role).unwrap().dtype,
                "{name}: {}",
                e.name
            );
            assert!(
                b.bytes(e.role).unwrap() == hub.bytes(e.role).unwrap(),
                "{name}: {} rounds differently from torch",
                e.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "6 families x 2 layouts");
}

#[test]
fn hub_style_config_spellings_parse_the_same() {
    // The sharded fixture has a hub-style config (top-level rope_theta, num_experts,
    // torch_dtype); the plain one transformers 5's spelling.
    let a = ModelConfig::from_json_str(
        &std::fs::read_to_string(fixtures_dir().join("qwen3_moe_experts_f32/config.json")).unwrap(),
    )
    .unwrap();
    let b = ModelConfig::from_json_str(
        &std::fs::read_to_string(fixtures_dir().join("qwen3_moe_experts_f32_sharded/config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (a.rope_theta, a.moe.num_experts, a.moe.top_k),
        (b.rope_theta, b.moe.num_experts, b.moe.top_k)
    );
    assert!(b.raw.contains_key("rope_theta") && b.raw.contains_key("num_experts"));
    assert!(a.raw.contains_key("rope_parameters") && a.raw.contains_key("num_local_experts"));
}

/// `tests/fixtures/check_moegrow_writes.sh` wrote every fixture back with `moegrow convert` (same
/// layout, the other layout, f32→bf16) and loaded each in transformers; its record must cover
/// every fixture and show identical logits.
#[test]
fn transformers_loaded_every_checkpoint_moegrow_wrote() {
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("transformers_loads_moegrow.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["all_ok"], true);
    let checks = report["checks"].as_object().unwrap();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let other = if name.contains("_fused_") {
            "per-expert"
        } else {
            "fused"
        };
        for variant in ["same", other] {
            let c = &checks[&format!("{name}.{variant}")];
            assert_eq!(c["loaded"], true, "{name}.{variant}");
            assert!(
                c["max_abs_logit_diff"].as_f64().unwrap() <= 1e-4,
                "{name}.{variant}: {c}"
            );
        }
    }
    assert_eq!(report["init_tiny"]["loaded"], true);
}
