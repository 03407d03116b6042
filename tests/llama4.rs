//! Llama-4 as the hub ships it (`tests/fixtures/hub/llama4-*`, by `fixtures/hub/generate_llama4.py`):
//! the multimodal wrapper's vision tower and projector are carried byte for byte through growth
//! and conversion, its config keys kept, the language model's per-layer rules rewritten along
//! the layer map; the stacked input-major experts read and write back exactly; what moegrow
//! cannot write for Llama-4 is refused with the reason, and broken wrapped files by name.

use moegrow_core::growth::{DepthMethod, GrowthOptions};
use moegrow_core::schema::layout::{output_tensors, Storage};
use moegrow_core::{Checkpoint, DType, ExpertLayout, Role};
use moegrow_integration_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;

fn hub(name: &str) -> std::path::PathBuf {
    fixtures_dir().join("hub").join(name)
}

fn towers(c: &Checkpoint) -> BTreeMap<String, Vec<u8>> {
    c.entries()
        .iter()
        .filter(|e| matches!(e.role, Role::Carried(_)))
        .map(|e| (e.name.clone(), c.bytes(e.role).unwrap().to_vec()))
        .collect()
}

fn config_json(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn the_vision_tower_is_carried_byte_for_byte_through_growth_and_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hub("llama4-scout");
    let src = Checkpoint::open(&dir).unwrap();
    let before = towers(&src);
    assert!(before.keys().any(|n| n.starts_with("vision_model.")), "{:?}", before.keys());
    assert!(before.keys().any(|n| n.starts_with("multi_modal_projector.")));
    assert_eq!(src.layout, ExpertLayout::Fused);
    let cases: [(&str, GrowthOptions); 3] = [
        ("w2", GrowthOptions::width(2, 0.01)),
        ("d2", GrowthOptions::depth(2, DepthMethod::Interpose)),
        ("stack2", GrowthOptions::depth(2, DepthMethod::Stack)),
    ];
    for (name, o) in cases {
        let grown = o.plan().unwrap().apply(&src).unwrap();
        let out = tmp.path().join(name);
        let g = write_as(&grown, &out, ExpertLayout::Fused, Storage::AsSource);
        assert_eq!(towers(&g), before, "{name}: the towers changed");
        let (a, b) = (config_json(&dir), config_json(&out));
        assert_eq!(a["vision_config"], b["vision_config"], "{name}");
        assert_eq!(b["model_type"], "llama4");
        assert_eq!(b["text_config"]["model_type"], "llama4_text");
    }
    // bf16 → f32 → bf16: the towers convert with the rest and come back to the same bytes.
    let f32 = write_as(&src, &tmp.path().join("f32"), ExpertLayout::Fused, Storage::Values(DType::F32));
    assert!(f32.entries().iter().all(|e| e.dtype == DType::F32));
    assert_eq!(config_json(&tmp.path().join("f32"))["torch_dtype"], "float32", "the wrapper's dtype follows");
    let back = write_as(&f32, &tmp.path().join("bf16"), ExpertLayout::Fused, Storage::Values(DType::BF16));
    assert_eq!(towers(&back), before);
    for e in src.entries() {
        assert_eq!(back.bytes(e.role).unwrap(), src.bytes(e.role).unwrap(), "{}", e.name);
    }
}

#[test]
fn depth_growth_spells_out_the_moe_and_nope_layers() {
    let tmp = tempfile::tempdir().unwrap();
    // Maverick: MoE on 1, 3 (interleave step 2); NoPE on 3 (interval 4), neither listed.
    let src = Checkpoint::open(hub("llama4-maverick")).unwrap();
    for (name, method, moe, rope) in [
        ("interpose", DepthMethod::Interpose, vec![2, 3, 6, 7], vec![1, 1, 1, 1, 1, 1, 0, 0]),
        ("stack", DepthMethod::Stack, vec![1, 3, 5, 7], vec![1, 1, 1, 0, 1, 1, 1, 0]),
    ] {
        let grown = GrowthOptions::depth(2, method).plan().unwrap().apply(&src).unwrap();
        let out = tmp.path().join(name);
        let g = write_as(&grown, &out, ExpertLayout::Fused, Storage::AsSource);
        let text = &config_json(&out)["text_config"];
        assert_eq!(text["moe_layers"], serde_json::json!(moe), "{name}");
        assert_eq!(text["no_rope_layers"], serde_json::json!(rope), "{name}");
        assert_eq!(g.config.moe_layers().collect::<Vec<_>>(), moe, "{name}");
        // The chunked layers follow the RoPE ones.
        for (i, r) in rope.iter().enumerate() {
            assert_eq!(g.config.attention_chunk[i].is_some(), *r == 1, "{name}: layer {i}");
        }
    }
}

#[test]
fn what_transformers_cannot_read_is_refused_with_the_reason() {
    let src = Checkpoint::open(hub("llama4-scout")).unwrap();
    let e = output_tensors(&src, ExpertLayout::PerExpert, Storage::AsSource).err().unwrap().to_string();
    assert!(e.contains("Llama-4") && e.contains("stacked only"), "{e}");
    let q = moegrow_core::quant::BlockQuant::fp8([128, 128], DType::F32, false);
    let e = output_tensors(&src, ExpertLayout::Fused, Storage::Fp8(q)).err().unwrap().to_string();
    assert!(e.contains("Llama-4") && e.contains("bf16"), "{e}");
}

#[test]
fn a_stray_tensor_in_a_wrapped_checkpoint_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hub("llama4-scout");
    // Copy the fixture and add an unknown tensor to a new shard listed in the index.
    let out = tmp.path().join("stray");
    std::fs::create_dir(&out).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
    }
    let header = r#"{"audio_model.proj.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(out.join("extra.safetensors"), bytes).unwrap();
    let index_path = out.join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    index["weight_map"]["audio_model.proj.weight"] = "extra.safetensors".into();
    std::fs::write(&index_path, index.to_string()).unwrap();
    let e = Checkpoint::open(&out).err().unwrap().to_string();
    assert!(e.contains("audio_model.proj.weight") && e.contains("extra.safetensors"), "{e}");
    // And a wrapper without its text_config says so.
    let cfg = out.join("config.json");
    let mut c = config_json(&out);
    c.as_object_mut().unwrap().remove("text_config");
    std::fs::write(&cfg, c.to_string()).unwrap();
    let e = Checkpoint::open(&out).err().unwrap().to_string();
    assert!(e.contains("text_config"), "{e}");
}
