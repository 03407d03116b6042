//! `moegrow grow` and `moegrow compare` end to end: provenance, dry runs, --verify, and clear
//! refusals of bad plans that leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moegrow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args(args)
        .output()
        .expect("runs")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
        .to_string_lossy()
        .to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn grow_writes_a_checkpoint_with_provenance_and_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("grown");
    let o = moegrow(&[
        "grow",
        &fixture("qwen3_moe_fused_bf16"),
        out.to_str().unwrap(),
        "--experts",
        "2",
        "--noise",
        "0",
        "--verify",
        "--seed",
        "5",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("top-1 agreement 100.0%"), "{stdout}");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("growth.json")).unwrap()).unwrap();
    assert_eq!(g["seed"], 5);
    assert_eq!(g["source"]["experts"], 8);
    assert_eq!(g["result"]["experts"], 16);
    assert_eq!(g["source"]["config_sha256"].as_str().unwrap().len(), 64);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_experts_per_tok"], 4);
    assert!(out.join("generation_config.json").exists());
    // The same record travels inside the safetensors metadata.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["moegrow_growth"]).unwrap();
    assert_eq!(m, g);
    // The layout and dtype of the input are kept.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor("model.layers.0.mlp.experts.gate_up_proj")
        .unwrap();
    assert_eq!(t.shape(), [16, 32, 32]);
    assert_eq!(t.dtype(), safetensors::Dtype::BF16);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("grown");
    let o = moegrow(&[
        "grow",
        &fixture("mixtral_experts_f32"),
        out.to_str().unwrap(),
        "--depth",
        "2",
        "--experts",
        "2",
        "--dry-run",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("map [0, 0, 1, 1, 2, 2]")
            && stdout.contains("8 → 16 experts, top-2 → top-4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("before") && stdout.contains("after") && stdout.contains("FLOPs/token")
    );
    assert!(!out.exists());
}

#[test]
fn bad_plans_fail_clearly_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let out = tmp.path().join("out");
    let (o_s, e_s) = (out.to_str().unwrap(), existing.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--depth", "0"], "--depth must be at least 1"),
        (
            vec!["--depth", "2", "--keep-first", "2", "--keep-last", "2"],
            "--keep-first 2 plus --keep-last 2 exceed the 3 layers",
        ),
        (vec!["--experts", "0"], "--experts must be at least 1"),
        (vec!["--layer-map", "0,1,7"], "names layer 7"),
        (
            vec!["--experts", "3", "--noise-on", "both"],
            "needs --experts 2",
        ),
        (vec!["--zero-init-copies"], "need --depth"),
        (vec![], "nothing to grow"),
    ];
    let src = fixture("olmoe_experts_f32");
    let mut failures = Vec::new();
    for (extra, words) in cases {
        let mut args = vec!["grow", src.as_str(), o_s];
        args.extend(extra.iter());
        let o = moegrow(&args);
        let (_, err) = text(&o);
        if o.status.code() != Some(1) || !err.contains(words) || err.contains("panicked") {
            failures.push(format!(
                "{extra:?}: expected `{words}`, got {:?}: {err}",
                o.status.code()
            ));
        }
    }
    let o = moegrow(&["grow", src.as_str(), e_s, "--experts", "2"]);
    assert!(text(&o).1.contains("already exists; pass --force"));
    let o = moegrow(&[
        "grow",
        &fixture("deepseek_v2_experts_f32"),
        o_s,
        "--depth",
        "2",
        "--depth-method",
        "stack",
    ]);
    assert!(
        text(&o).1.contains("dense layers only at the start"),
        "{}",
        text(&o).1
    );
    let o = moegrow(&[
        "grow",
        &fixture("deepseek_v3_experts_f32"),
        o_s,
        "--experts",
        "2",
        "--interleave-copies",
    ]);
    assert!(
        text(&o).1.contains("contiguous expert groups"),
        "{}",
        text(&o).1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!out.exists());
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![existing], "temporary output left behind");
}

#[test]
fn compare_shows_the_stacking_seam() {
    // Grow one base by interposition and by stacking and compare all three: each grown
    // profile is the base's in the new order, and stacking's largest neighbour jump is the seam
    // from the last layer back to the first.
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("mixtral_experts_f32");
    let (i, s) = (tmp.path().join("interposed"), tmp.path().join("stacked"));
    assert!(
        moegrow(&["grow", &base, i.to_str().unwrap(), "--depth", "2"])
            .status
            .success()
    );
    assert!(moegrow(&[
        "grow",
        &base,
        s.to_str().unwrap(),
        "--depth",
        "2",
        "--depth-method",
        "stack"
    ])
    .status
    .success());
    let plot = tmp.path().join("cmp.png");
    let o = moegrow(&[
        "compare",
        &base,
        i.to_str().unwrap(),
        s.to_str().unwrap(),
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let profile = |k: usize| -> Vec<f64> {
        v[k]["expert_norm_profile"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (b, ip, st) = (profile(0), profile(1), profile(2));
    assert_eq!(ip, vec![b[0], b[0], b[1], b[1], b[2], b[2]]);
    assert_eq!(st, vec![b[0], b[1], b[2], b[0], b[1], b[2]]);
    // Interposition only ever steps between neighbouring base layers; stacking jumps from the
    // last layer back to the first.
    let max_jump = |p: &[f64]| {
        p.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max)
    };
    assert!(max_jump(&st) >= max_jump(&ip));
    assert!((max_jump(&st) - (b[2] - b[0]).abs()).abs() < 1e-12 || max_jump(&st) == max_jump(&b));
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |threads: &str, out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_moegrow"))
            .args([
                "grow",
                &fixture("deepseek_v2_fused_f32"),
                out.to_str().unwrap(),
                "--depth",
                "2",
                "--experts",
                "2",
                "--noise",
                "0.05",
                "--seed",
                "9",
            ])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        std::fs::read(out.join("model.safetensors")).unwrap()
    };
    let one = run("1", &tmp.path().join("one"));
    let four = run("4", &tmp.path().join("four"));
    assert!(one == four, "1 and 4 threads wrote different bytes");
}

/// A family moegrow has no schema for: plain `grow` refuses it and points at `--infer-schema`,
/// which prints what it inferred and writes the grown checkpoint; options that need the
/// family's math are refused by name.
#[test]
fn infer_schema_grows_a_family_without_a_schema() {
    let src = fixture("unknown/phi-3.5-moe-instruct");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("grown");
    let o = out.to_str().unwrap();
    let plain = moegrow(&["grow", &src, o, "--experts", "2"]);
    let (_, err) = text(&plain);
    assert!(!plain.status.success() && err.contains("phimoe") && err.contains("--infer-schema"), "{err}");
    let r = moegrow(&["grow", &src, o, "--infer-schema", "--experts", "2", "--depth", "2"]);
    let (stdout, err) = text(&r);
    assert!(r.status.success(), "{stdout}\n{err}");
    for want in ["inferred", "layers: 3 under `model.layers.`", "8 routed experts", "block_sparse_moe.gate.weight", "`num_local_experts`"] {
        assert!(stdout.contains(want), "`{want}` not in:\n{stdout}");
    }
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["num_hidden_layers"].as_u64(), cfg["num_local_experts"].as_u64()), (Some(6), Some(16)));
    assert!(out.join("growth.json").exists());
    let r = moegrow(&["grow", &src, tmp.path().join("v").to_str().unwrap(), "--infer-schema", "--verify"]);
    let (_, err) = text(&r);
    assert!(!r.status.success() && err.contains("--verify needs the family's schema"), "{err}");
}
