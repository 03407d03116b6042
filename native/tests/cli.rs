//! The `moegrow` binary end to end: init → inspect → forward, and one clear error (never a
//! panic) for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moegrow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args(args)
        .output()
        .expect("runs")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The `logits` tensor (f32) of a safetensors file.
fn read_logits(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Copy a fixture checkpoint (without its reference outputs) into `dir`.
fn copy_fixture(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "reference.safetensors" {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

/// Rewrite a safetensors file with an edited header (data kept as is).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut c: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut c);
    std::fs::write(&p, serde_json::to_string(&c).unwrap()).unwrap();
}

#[test]
fn init_inspect_forward_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("tiny");
    let o = moegrow(&[
        "init",
        ckpt.to_str().unwrap(),
        "--preset",
        "tiny",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = moegrow(&[
        "inspect",
        ckpt.to_str().unwrap(),
        "--json",
        "--plot",
        tmp.path().join("p.svg").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["family"], "Qwen3-MoE");
    assert_eq!(s["layers"], 4);
    // tiny: embed + head 2·512·64, per layer: attn 64·64·2 + 32·64·2, norms 64·2 + 16·2,
    // router 8·64, experts 8·3·64·64; final norm 64.
    let per_layer = 2 * 64 * 64 + 2 * 32 * 64 + 2 * 64 + 2 * 16 + 8 * 64 + 8 * 3 * 64 * 64;
    let total = 2 * 512 * 64 + 4 * per_layer + 64;
    assert_eq!(s["parameters"]["total"], total);
    let inactive = 4 * 6 * 3 * 64 * 64;
    assert_eq!(s["parameters"]["activated"], total - inactive);
    assert_eq!(s["train_flops_per_token"], 6 * (total - inactive));
    let profile = s["expert_norm_profile"].as_array().unwrap();
    assert!(
        profile
            .iter()
            .all(|v| (v.as_f64().unwrap() - 0.02).abs() < 0.001),
        "{profile:?}"
    );
    let svg = std::fs::read_to_string(tmp.path().join("p.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Expert weight-norm profile"));

    let logits = tmp.path().join("logits.safetensors");
    let o = moegrow(&[
        "forward",
        ckpt.to_str().unwrap(),
        "--tokens",
        "1,5,9,42",
        "--output",
        logits.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&logits).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("logits").unwrap().shape(), [4, 512]);
    let o = moegrow(&["forward", ckpt.to_str().unwrap(), "--tokens", "1,5"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
}

#[test]
fn forward_output_equals_transformers_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l.safetensors");
    let o = moegrow(&[
        "forward",
        fixture("olmoe_fused_bf16").to_str().unwrap(),
        "--tokens",
        "1,5,9,42,3,17,60,8,33,2,50,11,27",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        read_logits(&out),
        read_logits(&fixture("olmoe_fused_bf16/reference.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() < 1e-4,
            "Failed at index {i}: computed {x} vs expected {y}"
        );
    }
}

#[test]
fn forward_on_the_gpu_equals_transformers_logits() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["deepseek_v2_experts_f32_noqlora", "qwen2_moe_fused_bf16"] {
        let out = tmp.path().join(format!("{name}.safetensors"));
        let o = moegrow(&[
            "forward",
            fixture(name).to_str().unwrap(),
            "--device",
            "gpu",
            "--tokens",
            "1,5,9,42,3,17,60,8,33,2,50,11,27",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (a, b) = (
            read_logits(&out),
            read_logits(&fixture(name).join("reference.safetensors")),
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() < 1e-3,
                "{name}: Failed at index {i}: computed {x} vs expected {y}"
            );
        }
    }
}

#[test]
fn inspect_counts_parameters_like_transformers() {
    for name in [
        "mixtral_fused_f32",
        "qwen2_moe_experts_bf16",
        "deepseek_v3_experts_f32",
        "deepseek_v2_experts_f32_noqlora",
    ] {
        let o = moegrow(&["inspect", fixture(name).to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let reference = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&reference).unwrap();
        let want: u64 = meta.metadata().as_ref().unwrap()["num_parameters"]
            .parse()
            .unwrap();
        assert_eq!(s["parameters"]["total"], want, "{name}");
    }
}

/// Each malformed input and the words its error must contain.
#[test]
fn malformed_inputs_fail_with_their_own_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let base = "qwen3_moe_experts_f32";
    let mut cases: Vec<(String, PathBuf, Vec<&str>, &str)> = Vec::new();
    let mut case = |label: &str, make: &dyn Fn(&Path) -> PathBuf, words: &str| {
        let dir = tmp.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let ckpt = make(&dir);
        cases.push((
            label.to_string(),
            ckpt,
            vec!["inspect"],
            Box::leak(words.to_string().into_boxed_str()),
        ));
    };
    case(
        "missing dir",
        &|d| d.join("nope"),
        "not a checkpoint directory",
    );
    case(
        "no config",
        &|d| {
            let c = copy_fixture(base, d);
            std::fs::remove_file(c.join("config.json")).unwrap();
            c
        },
        "config.json",
    );
    case(
        "config not json",
        &|d| {
            let c = copy_fixture(base, d);
            std::fs::write(c.join("config.json"), "{oops").unwrap();
            c
        },
        "not valid JSON",
    );
    case(
        "unsupported family",
        &|d| {
            let c = copy_fixture(base, d);
            edit_config(&c, |m| {
                m.insert("model_type".into(), "llama".into());
            });
            c
        },
        "unsupported model family `llama`",
    );
    case(
        "config key missing",
        &|d| {
            let c = copy_fixture(base, d);
            edit_config(&c, |m| {
                m.remove("num_hidden_layers");
            });
            c
        },
        "missing `num_hidden_layers`",
    );
    case(
        "rope without its parameters",
        &|d| {
            let c = copy_fixture(base, d);
            edit_config(&c, |m| {
                m.insert(
                    "rope_parameters".into(),
                    serde_json::json!({"rope_type": "linear"}),
                );
            });
            c
        },
        "rope type `linear` needs `rope_parameters.factor`",
    );
    case(
        "no weights",
        &|d| {
            let c = copy_fixture(base, d);
            std::fs::remove_file(c.join("model.safetensors")).unwrap();
            c
        },
        "no model.safetensors and no model.safetensors.index.json",
    );
    case(
        "truncated file",
        &|d| {
            let c = copy_fixture(base, d);
            let p = c.join("model.safetensors");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 100]).unwrap();
            c
        },
        "past the end of the data section",
    );
    case(
        "header length past end",
        &|d| {
            let c = copy_fixture(base, d);
            let p = c.join("model.safetensors");
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len() as u64;
            b[..8].copy_from_slice(&n.to_le_bytes());
            std::fs::write(&p, b).unwrap();
            c
        },
        "header length field says",
    );
    case(
        "overlapping offsets",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                let a = h["model.norm.weight"]["data_offsets"].clone();
                h.get_mut("model.layers.0.input_layernorm.weight").unwrap()["data_offsets"] = a;
            });
            c
        },
        "overlap",
    );
    case(
        "size disagrees with shape",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                h.get_mut("model.norm.weight").unwrap()["shape"] = serde_json::json!([3]);
            });
            c
        },
        "`model.norm.weight`: dtype F32 and shape [3] need 12 bytes",
    );
    case(
        "unsupported dtype",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                let t = h.get_mut("model.norm.weight").unwrap();
                t["dtype"] = "F7".into();
            });
            c
        },
        "unknown dtype F7",
    );
    case(
        "unmapped tensor",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                let t = h.remove("model.norm.weight").unwrap();
                h.insert("model.mtp.0.norm.weight".into(), t);
            });
            c
        },
        "`model.mtp.0.norm.weight` is not part of a Qwen3-MoE checkpoint",
    );
    case(
        "missing tensor",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                h.remove("model.layers.1.mlp.experts.3.up_proj.weight")
                    .unwrap();
            });
            c
        },
        "missing tensor `model.layers.1.mlp.experts.3.up_proj.weight`",
    );
    case(
        "shape disagrees with config",
        &|d| {
            let c = copy_fixture(base, d);
            edit_config(&c, |m| {
                m.insert("moe_intermediate_size".into(), 12.into());
            });
            c
        },
        "has shape [16, 32], but config.json implies [12, 32]",
    );
    case(
        "mixed layouts",
        &|d| {
            let c = copy_fixture(base, d);
            edit_header(&c.join("model.safetensors"), |h| {
                let t = h
                    .remove("model.layers.0.mlp.experts.0.up_proj.weight")
                    .unwrap();
                h.insert("model.layers.0.mlp.experts.down_proj".into(), t);
            });
            c
        },
        "",
    );
    case(
        "index names a missing shard",
        &|d| {
            let c = copy_fixture("qwen3_moe_experts_f32_sharded", d);
            let f = std::fs::read_dir(&c)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with("00003-of-00014.safetensors"))
                .unwrap();
            std::fs::remove_file(f).unwrap();
            c
        },
        "00003-of-00014.safetensors",
    );
    case(
        "index disagrees with shards",
        &|d| {
            let c = copy_fixture("qwen3_moe_experts_f32_sharded", d);
            let p = c.join("model.safetensors.index.json");
            let mut idx: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            idx["weight_map"]["model.norm.weight"] = "model-00001-of-00014.safetensors".into();
            std::fs::write(&p, idx.to_string()).unwrap();
            c
        },
        "puts tensor `model.norm.weight` in model-00001-of-00014.safetensors",
    );
    let mut failures = Vec::new();
    for (label, ckpt, _, words) in &cases {
        let o = moegrow(&["inspect", ckpt.to_str().unwrap()]);
        let err = stderr(&o);
        if o.status.code() != Some(1) || err.contains("panicked") || !err.starts_with("error: ") {
            failures.push(format!(
                "{label}: exit {:?}, stderr: {err}",
                o.status.code()
            ));
        } else if label == "mixed layouts" {
            if !(err.contains("mixes expert layouts") || err.contains("has shape")) {
                failures.push(format!("{label}: unclear message: {err}"));
            }
        } else if !err.contains(words) {
            failures.push(format!("{label}: expected `{words}` in: {err}"));
        }
    }
    // Bad arguments to forward.
    let ok = fixture(base);
    for (args, words) in [
        (
            vec!["forward", ok.to_str().unwrap(), "--tokens", "1,x,3"],
            "token `x` is not a non-negative integer",
        ),
        (
            vec!["forward", ok.to_str().unwrap(), "--tokens", "1,96"],
            "token id 96 at position 1 is outside the vocabulary (size 96)",
        ),
        (
            vec!["forward", ok.to_str().unwrap(), "--tokens", ","],
            "at least one token",
        ),
    ] {
        let o = moegrow(&args);
        let err = stderr(&o);
        if o.status.code() != Some(1) || !err.contains(words) || err.contains("panicked") {
            failures.push(format!(
                "{args:?}: expected `{words}`, got exit {:?}: {err}",
                o.status.code()
            ));
        }
    }
    // RoPE scalings and other math moegrow does not compute: reading works, computing refuses
    // with the key named.
    let tmp2 = tempfile::tempdir().unwrap();
    let c = copy_fixture(base, tmp2.path());
    edit_config(&c, |m| {
        m.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "longrope", "factor": 4.0}),
        );
        m.insert("hidden_act".into(), "gelu".into());
    });
    let o = moegrow(&["inspect", c.to_str().unwrap()]);
    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("not computed") {
        failures.push(format!("inspect of a longrope config: {}", stderr(&o)));
    }
    let o = moegrow(&["forward", c.to_str().unwrap(), "--tokens", "1,2"]);
    let err = stderr(&o);
    if o.status.code() != Some(1) || !err.contains("rope type `longrope`") || !err.contains("`hidden_act` `gelu`") {
        failures.push(format!("forward of a longrope, gelu config: {err}"));
    }
    assert!(cases.len() >= 10);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn convert_refuses_to_overwrite_and_leaves_no_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "x").unwrap();
    let o = moegrow(&[
        "convert",
        fixture("mixtral_fused_f32").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists; pass --force"));
    assert!(out.join("keep").exists());
    let o = moegrow(&[
        "convert",
        fixture("mixtral_fused_f32").to_str().unwrap(),
        out.to_str().unwrap(),
        "--force",
        "--layout",
        "per-expert",
        "--dtype",
        "bf16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("keep").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "bfloat16");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn corpus_trains_a_tokenizer_and_reports_the_unigram_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("texts");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("{i}.txt")), format!("The borrow checker rejects program {i}. Lifetimes and ownership, again and again: {}.", "fn f() {} ".repeat(i % 5 + 1))).unwrap();
    }
    let out = tmp.path().join("out");
    let o = moegrow(&[
        "corpus",
        "--corpus",
        src.to_str().unwrap(),
        "--vocab-size",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("corpus.json")).unwrap()).unwrap();
    assert_eq!(
        s["documents"]["train"].as_u64().unwrap() + s["documents"]["heldout"].as_u64().unwrap(),
        40
    );
    assert!(s["vocab_size"].as_u64().unwrap() <= 300);
    let h = s["unigram_cross_entropy_heldout_nats"].as_f64().unwrap();
    assert!(h > 1.0 && h < (300f64).ln() + 0.5, "baseline {h}");
    let tk = std::fs::read_to_string(out.join("tokenizer.json")).unwrap();
    assert!(tk.contains("\"ByteLevel\"") && tk.contains("<|endoftext|>"));
}

#[test]
fn the_default_corpus_is_the_rust_documentation() {
    // run-all.sh installs the rust-docs component when it is missing.
    let o = moegrow(&["corpus", "--vocab-size", "512"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(s["documents"]["train"].as_u64().unwrap() > 100, "{s}");
    assert!(s["bytes"]["train"].as_u64().unwrap() > 1_000_000, "{s}");
}
