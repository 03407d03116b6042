//! The explorer's logic, natively: every file is a `ByteSource::Memory`, so opening, lazy
//! reads, the views and growth run here exactly as in the browser (the browser tests in
//! `tests/browser` cover `Blob`s, WebGPU and the page).

use crate::grow::{grow, preview, GrowOptions};
use crate::progress::Progress;
use crate::session::Session;
use crate::source::ByteSource;
use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::growth::provenance;
use moegrow_core::{Checkpoint, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn files_of(dir: &Path) -> Vec<(String, ByteSource)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                ByteSource::Memory(Arc::from(bytes)),
            )
        })
        .collect()
}

fn open(files: Vec<(String, ByteSource)>) -> Result<Session, String> {
    pollster::block_on(Session::open("ckpt".into(), files, || 0.0))
}

#[test]
fn opens_from_headers_and_reads_tensors_only_on_demand() {
    for name in [
        "qwen3_moe_experts_f32",
        "qwen3_moe_experts_f32_sharded",
        "mixtral_fused_bf16",
    ] {
        let dir = fixture(name);
        let s = open(files_of(&dir)).unwrap();
        let full = Checkpoint::open(&dir).unwrap();
        assert_eq!(
            moegrow_core::analysis::summary(&s.ckpt.borrow()),
            moegrow_core::analysis::summary(&full),
            "{name}: header-only summary differs from the memory-mapped one"
        );
        assert_eq!(
            s.ignored,
            vec!["reference.safetensors".to_string()],
            "{name}"
        );
        let role = Role::Layer(1, moegrow_core::LayerRole::Router);
        let e = s.ckpt.borrow().bytes(role).unwrap_err().to_string();
        assert!(
            e.contains("have not been read yet") && e.contains("mlp.gate"),
            "{e}"
        );
        pollster::block_on(s.load(&[role], &Progress::default())).unwrap();
        assert_eq!(
            s.ckpt.borrow().bytes(role).unwrap(),
            full.bytes(role).unwrap()
        );
        s.evict();
        assert_eq!(s.ckpt.borrow().resident_bytes(), 0);
    }
}

#[test]
fn bad_file_sets_get_clear_errors() {
    let dir = fixture("qwen3_moe_experts_f32_sharded");
    let mut files = files_of(&dir);
    files.retain(|(n, _)| n != "config.json");
    let e = open(files).err().unwrap();
    assert!(e.starts_with("no config.json among the files given"), "{e}");

    let mut files = files_of(&dir);
    files.retain(|(n, _)| n != "model-00003-of-00014.safetensors");
    let e = open(files).err().unwrap();
    assert_eq!(
        e,
        "model.safetensors.index.json lists model-00003-of-00014.safetensors, but that file was not given"
    );

    let mut files = files_of(&dir);
    files.retain(|(n, _)| n != "model.safetensors.index.json");
    let e = open(files).err().unwrap();
    assert!(e.contains("no model.safetensors.index.json"), "{e}");

    let mut files = files_of(&fixture("qwen3_moe_experts_f32"));
    for (n, src) in files.iter_mut() {
        if n == "model.safetensors" {
            let ByteSource::Memory(b) = src else {
                unreachable!()
            };
            *src = ByteSource::Memory(Arc::from(&b[..100]));
        }
    }
    let e = open(files).err().unwrap();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn views_match_the_fully_read_checkpoint() {
    let dir = fixture("qwen2_moe_experts_bf16");
    let s = open(files_of(&dir)).unwrap();
    let full = Checkpoint::open(&dir).unwrap();
    let p = Progress::default();
    let v = pollster::block_on(crate::profile::norm_profile(&s, None, &p)).unwrap();
    let want = moegrow_core::analysis::expert_norm_profile(&full).unwrap();
    assert_eq!(v["profile"], serde_json::json!(want));
    assert_eq!(v["device"], "CPU");
    let moe = full.config.moe_layers().next().unwrap();
    let sim = pollster::block_on(crate::profile::similarity(&s, moe, &p)).unwrap();
    assert_eq!(
        sim["cosine"],
        serde_json::json!(moegrow_core::analysis::expert_similarity(&full, moe).unwrap())
    );
    let dense = (0..full.config.num_layers)
        .find(|&l| !full.config.is_moe(l))
        .unwrap();
    let e = pollster::block_on(crate::profile::similarity(&s, dense, &p)).unwrap_err();
    assert_eq!(
        e,
        format!("layer {dense} is a dense layer; it has no experts")
    );
    assert_eq!(
        s.ckpt.borrow().resident_bytes(),
        0,
        "views leave nothing resident"
    );

    let name = "model.layers.0.mlp.shared_expert.up_proj.weight";
    let st = pollster::block_on(crate::tensors::stats(&s, name, 8, &p)).unwrap();
    let role = full.entries().iter().find(|e| e.name == name).unwrap().role;
    let vals = full.f32(role).unwrap();
    let mut acc = moegrow_core::analysis::StatsAccumulator::default();
    acc.push(&vals);
    assert_eq!(st["stats"], serde_json::json!(acc.finish()));
    let counts: u64 = st["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts as usize, vals.len());
    let e = pollster::block_on(crate::tensors::stats(&s, "nope", 8, &p)).unwrap_err();
    assert_eq!(e, "no tensor named `nope` in this checkpoint");
}

#[test]
fn routing_matches_the_reference_forward_pass() {
    let dir = fixture("qwen3_moe_experts_f32");
    let mut files = files_of(&dir);
    let tok = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/tokenizer.json"),
    )
    .unwrap();
    files.push(("tokenizer.json".into(), ByteSource::Memory(Arc::from(tok))));
    let s = open(files).unwrap();
    let p = Progress::default();
    let v = pollster::block_on(crate::router::run(&s, "The cat sat on the mat", None, &p)).unwrap();
    let ids: Vec<u32> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, vec![1, 3, 5, 6, 1, 7]);
    let full = Checkpoint::open(&dir).unwrap();
    let out = moegrow_core::reference::ReferenceModel::load(&full)
        .unwrap()
        .forward(&ids)
        .unwrap();
    for (l, ch) in out.choices.iter().enumerate() {
        let ch = ch.as_ref().unwrap();
        let got = &v["layers"][l];
        for (t, c) in ch.iter().enumerate() {
            assert_eq!(
                got["experts"][t],
                serde_json::json!(c.experts),
                "layer {l} token {t}"
            );
        }
        let load: u64 = got["load"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(
            load as usize,
            ids.len() * 2,
            "layer {l}: every token counted top-k times"
        );
    }
    let e = crate::router::tokenize(&s, "").unwrap_err();
    assert_eq!(e, "the prompt has no tokens");
    let s2 = open(files_of(&dir)).unwrap();
    assert_eq!(
        crate::router::tokenize(&s2, "1, 2 3").unwrap().0,
        vec![1, 2, 3]
    );
    assert!(crate::router::tokenize(&s2, "1 x")
        .unwrap_err()
        .contains("`x` is not a token id"));
    assert!(crate::router::tokenize(&s2, "96")
        .unwrap_err()
        .contains("outside the vocabulary (size 96)"));
}

/// The browser's growth writes the same files, byte for byte, as the native writer.
#[test]
fn growth_equals_the_native_writer() {
    for (name, opts) in [
        ("qwen3_moe_experts_f32", r#"{"experts": 2, "noise": 0}"#),
        (
            "qwen3_moe_experts_f32_sharded",
            r#"{"depth": 2, "experts": 2, "seed": 7, "max_shard_size": "40KB"}"#,
        ),
        (
            "deepseek_v3_fused_bf16",
            r#"{"depth": 2, "experts": 2, "layout": "per-expert"}"#,
        ),
        (
            "mixtral_fused_bf16",
            r#"{"depth": 2, "depth_method": "stack", "experts": 2, "new_experts": "random", "width_first": true}"#,
        ),
        // Block-quantised: FP8 weights with their `_scale_inv` grids, MXFP4 `_blocks`/`_scales`.
        ("hub/deepseek-v3", r#"{"depth": 2, "experts": 2, "seed": 3}"#),
        ("hub/gpt-oss-20b", r#"{"depth": 2, "experts": 2, "seed": 4}"#),
        // A multimodal wrapper: the vision tower carried verbatim next to the grown text model.
        ("hub/llama4-scout", r#"{"depth": 2, "experts": 2, "seed": 5}"#),
        ("hub/llama4-maverick", r#"{"depth": 2, "experts": 2, "seed": 6}"#),
        // compressed-tensors int4 experts (noisy copies requantised) inside Kimi-K2.5's wrapper.
        ("hub/kimi-k2.5", r#"{"depth": 2, "experts": 2, "seed": 8}"#),
    ] {
        let dir = fixture(name);
        let o: GrowOptions = serde_json::from_str(opts).unwrap();
        let s = open(files_of(&dir)).unwrap();
        let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut sink = |f: &str, b: &[u8], _: bool| -> Result<(), String> {
            got.entry(f.to_string()).or_default().extend_from_slice(b);
            Ok(())
        };
        let files = pollster::block_on(grow(&s, &o, &Progress::default(), &mut sink)).unwrap();
        assert_eq!(files.len(), got.len());
        let pv = preview(&s, &o).unwrap();
        let n_shards = pv["shards"].as_array().unwrap().len();
        assert!(
            name != "qwen3_moe_experts_f32_sharded" || n_shards > 1,
            "sharded output"
        );

        let src = Checkpoint::open(&dir).unwrap();
        let plan = o.plan().unwrap();
        let grown = plan.apply(&src).unwrap();
        let layout = match o.layout.as_deref() {
            Some("per-expert") => moegrow_core::ExpertLayout::PerExpert,
            _ => src.layout,
        };
        let tensors = grown.tensors(layout).unwrap();
        let record = provenance::record(
            "ckpt",
            &std::fs::read(dir.join("config.json")).unwrap(),
            &src,
            &plan,
            &grown.config,
            layout,
        );
        let (metadata, extra_files) = provenance::outputs(&record);
        let out = tempfile::tempdir().unwrap();
        let opts = WriteOptions {
            max_shard_bytes: moegrow_core::checkpoint::parse_size(&o.max_shard_size).unwrap(),
            metadata: metadata.into_iter().collect(),
            extra_files,
            force: false,
        };
        let summary = write_checkpoint(
            &out.path().join("g"),
            &grown.config.to_json_string(),
            &tensors,
            Some(&dir),
            &opts,
            |_| {},
        )
        .unwrap();
        let mut want: Vec<String> = summary.files.clone();
        want.sort();
        let mut have: Vec<String> = got.keys().cloned().collect();
        have.sort();
        assert_eq!(have, want, "{name}: file list");
        for f in &summary.files {
            let native = std::fs::read(out.path().join("g").join(f)).unwrap();
            assert!(
                native == got[f],
                "{name}: {f} differs from the native writer's"
            );
        }
        assert_eq!(s.ckpt.borrow().resident_bytes(), 0);
    }
}

#[test]
fn width_copies_without_noise_are_exact_twins() {
    let dir = fixture("olmoe_experts_f32");
    let s = open(files_of(&dir)).unwrap();
    let o: GrowOptions = serde_json::from_str(r#"{"experts": 2, "noise": 0}"#).unwrap();
    let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut sink = |f: &str, b: &[u8], _: bool| -> Result<(), String> {
        got.entry(f.to_string()).or_default().extend_from_slice(b);
        Ok(())
    };
    pollster::block_on(grow(&s, &o, &Progress::default(), &mut sink)).unwrap();
    let grown = open(
        got.into_iter()
            .map(|(n, b)| (n, ByteSource::Memory(Arc::from(b))))
            .collect(),
    )
    .unwrap();
    let e = grown.ckpt.borrow().config.moe.num_experts;
    let sim =
        pollster::block_on(crate::profile::similarity(&grown, 0, &Progress::default())).unwrap();
    let cos: Vec<f64> = serde_json::from_value(sim["cosine"].clone()).unwrap();
    let half = e / 2;
    for i in 0..half {
        assert!(
            (cos[i * e + i + half] - 1.0).abs() < 1e-6,
            "expert {i} and its copy: {}",
            cos[i * e + i + half]
        );
    }
    assert!(cos[1] < 0.9, "distinct experts are not twins: {}", cos[1]);
}

#[test]
fn a_cancelled_job_stops_with_cancelled_and_leaves_nothing_resident() {
    let s = open(files_of(&fixture("qwen3_moe_experts_f32"))).unwrap();
    let flag = std::rc::Rc::new(std::cell::Cell::new(true));
    let p = Progress::new(None, flag.clone());
    let e = pollster::block_on(crate::profile::norm_profile(&s, None, &p)).unwrap_err();
    assert_eq!(e, crate::progress::CANCELLED);
    let o: GrowOptions = serde_json::from_str(r#"{"experts": 2}"#).unwrap();
    let mut sink = |_: &str, _: &[u8], _: bool| -> Result<(), String> { Ok(()) };
    let e = pollster::block_on(grow(&s, &o, &p, &mut sink)).unwrap_err();
    assert_eq!(e, crate::progress::CANCELLED);
    s.evict();
    flag.set(false);
    assert!(pollster::block_on(crate::profile::norm_profile(&s, None, &p)).is_ok());
}

#[test]
fn grow_options_are_checked() {
    let s = open(files_of(&fixture("qwen3_moe_experts_f32"))).unwrap();
    let bad = |json: &str| preview(&s, &serde_json::from_str(json).unwrap()).unwrap_err();
    assert_eq!(
        bad(r#"{"depth": 2, "depth_method": "zigzag"}"#),
        "unknown depth method `zigzag` (interpose or stack)"
    );
    assert_eq!(
        bad(r#"{"experts": 2, "noise": -1}"#),
        "α must be a non-negative number, not -1"
    );
    assert!(bad(r#"{}"#).starts_with("nothing to grow"));
    assert!(bad(r#"{"experts": 2, "max_shard_size": "5 parsecs"}"#).contains("unknown size unit"));
    assert!(serde_json::from_str::<GrowOptions>(r#"{"experts": 2, "typo": 1}"#).is_err());
}

/// The checkpoints made from the real hub configs (FP8 with block scales, YaRN, MTP layers, the
/// kimi_k2 alias) open from their headers alone, summarise like `moegrow inspect`, and give the
/// norm profile and dequantised tensor statistics that the memory-mapped checkpoint gives.
#[test]
fn hub_checkpoints_open_and_run_every_view() {
    let hub = fixture("hub");
    let mut n = 0;
    for e in std::fs::read_dir(&hub).unwrap() {
        let dir = e.unwrap().path();
        if !dir.join("reference.safetensors").exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let s = open(files_of(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let full = Checkpoint::open(&dir).unwrap();
        assert_eq!(
            moegrow_core::analysis::summary(&s.ckpt.borrow()),
            moegrow_core::analysis::summary(&full),
            "{name}"
        );
        let p = Progress::default();
        let prof = pollster::block_on(crate::profile::norm_profile(&s, None, &p)).unwrap();
        let want = moegrow_core::analysis::expert_norm_profile(&full).unwrap();
        let got: Vec<Option<f64>> = serde_json::from_value(prof["profile"].clone()).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(
                a.zip(*b).is_none_or(|(a, b)| (a - b).abs() < 1e-9) && a.is_some() == b.is_some(),
                "{name}: profile {got:?} vs {want:?}"
            );
        }
        // A float8 weight's statistics are of its dequantised values.
        if let Some(e) = full.entries().iter().find(|e| e.scale.is_some()) {
            let st = pollster::block_on(crate::tensors::stats(&s, &e.name, 16, &p)).unwrap();
            let v = full.f32(e.role).unwrap();
            let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
            assert!(st["dequantised"].as_bool().unwrap(), "{name}");
            assert!((st["stats"]["mean"].as_f64().unwrap() - mean).abs() < 1e-6, "{name}: {st}");
        }
        n += 1;
    }
    assert!(n >= 7);
}
