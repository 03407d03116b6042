//! `moegrow experiment --preset tiny` end to end: every arm runs, the report's own invariants
//! hold (equal extra FLOPs within 1%, every arm present, plots written, one verdict per claim),
//! and a second run reuses every finished arm.

use std::path::Path;
use std::process::Command;

fn moegrow(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args(args)
        .output()
        .expect("run moegrow");
    assert!(
        out.status.success(),
        "moegrow {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn tiny_study_runs_every_arm_and_keeps_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let o = out.to_str().unwrap();
    moegrow(&["experiment", "--preset", "tiny", "--out", o]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let arms = r["arms"].as_array().unwrap();
    let names: Vec<&str> = arms
        .iter()
        .map(|a| a["arm"]["name"].as_str().unwrap())
        .collect();
    for want in [
        "interpose-k2-ckpt0",
        "interpose-k2-ckpt1",
        "interpose-k2-ckpt2",
        "scratch",
        "stack-k2",
        "interpose-k4",
        "stack-k4",
        "width-alpha0",
        "width-alpha0.01",
        "width-alpha0.1",
        "width-random",
        "depth-then-width",
        "width-then-depth",
        "budget-ckpt0",
        "budget-ckpt1",
        "budget-scratch",
    ] {
        assert!(names.contains(&want), "arm {want} missing from {names:?}");
    }
    // Equal extra FLOPs across the fixed-extra arms; sunk + extra equal across budget arms.
    let extra = r["invariants"]["extra_flops"].as_f64().unwrap();
    let total = r["invariants"]["total_flops"].as_f64().unwrap();
    for a in arms {
        let trained = a["trained_flops"].as_f64().unwrap();
        let sunk = a["sunk_flops"].as_f64().unwrap();
        let budget = a["arm"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "budget");
        let (got, want) = if budget {
            (sunk + trained, total)
        } else {
            (trained, extra)
        };
        assert!(
            (got / want - 1.0).abs() <= 0.01,
            "{}: {got:e} FLOPs vs {want:e}",
            a["arm"]["name"]
        );
        assert!(
            a["curve"].as_array().unwrap().len() >= 2,
            "{}: a curve",
            a["arm"]["name"]
        );
        let grown = a["arm"]["start"].get("grow").is_some();
        assert_eq!(
            sunk > 0.0,
            grown,
            "{}: sunk compute only for grown arms",
            a["arm"]["name"]
        );
    }
    assert_eq!(r["invariants"]["equal_within_1_percent"], true);
    // Growth starts from the saved checkpoints' recorded compute, increasing with the step.
    let sunk: Vec<f64> = serde_json::from_value(r["base"]["sunk_flops"].clone()).unwrap();
    assert!(sunk.windows(2).all(|w| w[0] < w[1]), "{sunk:?}");
    let claims = r["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 8);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for c in claims {
        assert!(c["reproduced"].is_boolean() && c["evidence"].as_str().unwrap().len() > 20);
        assert!(report.contains(&format!("| {} |", c["name"].as_str().unwrap())));
    }
    for plot in [
        "loss_vs_flops",
        "final_vs_sunk",
        "norm_profiles",
        "expert_load",
    ] {
        for ext in ["png", "svg"] {
            let p = out.join(format!("{plot}.{ext}"));
            assert!(
                std::fs::metadata(&p)
                    .map(|m| m.len() > 1000)
                    .unwrap_or(false),
                "{} missing",
                p.display()
            );
        }
    }
    // Resumable: a second run trains nothing and reports the same numbers.
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = stamp(&out.join("arms/scratch/result.json"));
    let again = moegrow(&["experiment", "--preset", "tiny", "--out", o]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        !text.contains(" trained "),
        "a finished arm ran again:\n{text}"
    );
    assert_eq!(
        text.matches("finished earlier").count(),
        names.len() + 1,
        "{text}"
    );
    assert_eq!(before, stamp(&out.join("arms/scratch/result.json")));
    let r2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r2["claims"], r["claims"]);
    // A damaged record of the base run is a clear error, not a panic.
    let done = out.join("base/done.json");
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&done).unwrap()).unwrap();
    d["checkpoints"] = serde_json::json!([]);
    std::fs::write(&done, d.to_string()).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args(["experiment", "--preset", "tiny", "--out", o])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("lists 0 checkpoints and 3 sunk-compute values, the preset has 3"),
        "{err}"
    );
}

#[test]
fn unknown_preset_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args([
            "experiment",
            "--preset",
            "huge",
            "--out",
            "/tmp/never-written-moegrow",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown study preset `huge`; choose one of tiny, quick, standard, gpu"),
        "{err}"
    );
    assert!(!Path::new("/tmp/never-written-moegrow").exists());
}
