//! `moegrow train` end to end on the CPU backend: metrics, checkpoints that `inspect` and
//! `grow` read, FLOPs carried through growth, an interrupted run resumed on the same loss
//! curve, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moegrow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moegrow"))
        .args(args)
        .output()
        .expect("runs")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "moegrow failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A small corpus: the doc comments and code of `core`, one document per source file.
fn corpus(dir: &Path) -> PathBuf {
    let out = dir.join("corpus");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src");
    let mut n = 0;
    for e in walk(&src) {
        if e.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&e).unwrap();
            std::fs::write(out.join(format!("doc{n:03}.txt")), text).unwrap();
            n += 1;
        }
    }
    assert!(n > 10);
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const BASE: &[&str] = &[
    "train",
    "--preset",
    "tiny",
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--seq-len",
    "32",
    "--lr",
    "3e-3",
    "--warmup",
    "2",
    "--eval-sequences",
    "4",
];

fn train(corpus: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = BASE.to_vec();
    let (c, o) = (corpus.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--corpus", c, "--out", o]);
    args.extend(extra);
    moegrow(&args)
}

#[test]
fn train_writes_metrics_plots_and_a_checkpoint_that_grows_and_trains_on() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(
        &c,
        &run,
        &["--steps", "6", "--eval-every", "3", "--csv"],
    ));
    let m = metrics(&run);
    assert_eq!(m.len(), 6, "{m:?}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 7, "{csv}");
    assert!(rows[0].starts_with("step,loss,"), "{csv}");
    assert!(
        rows[3].starts_with("3,") && !rows[3].ends_with(','),
        "step 3 has an eval loss: {csv}"
    );
    for (i, r) in m.iter().enumerate() {
        assert_eq!(r["step"], i + 1);
        for k in ["loss", "lr", "tokens", "flops", "grad_norm", "tokens_per_s"] {
            assert!(r[k].is_number(), "step {}: no `{k}` in {r}", i + 1);
        }
        assert_eq!(r["tokens"], 64 * (i + 1));
    }
    assert!(m[2]["eval_loss"].is_number() && m[5]["eval_loss"].is_number());
    assert!(m[0].get("eval_loss").is_none());
    // FLOPs = 6 · activated parameters · tokens.
    let flops_per_token = m[0]["flops"].as_f64().unwrap() / 64.0;
    assert!((m[5]["flops"].as_f64().unwrap() - flops_per_token * 384.0).abs() < 1.0);
    for f in [
        "final/config.json",
        "final/model.safetensors",
        "final/tokenizer.json",
        "loss.png",
        "loss.svg",
        "summary.json",
        "train.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let inspect = ok(moegrow(&[
        "inspect",
        run.join("final").to_str().unwrap(),
        "--device",
        "cpu",
    ]));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("Qwen3-MoE"));

    // Grow the trained model and continue: the sunk FLOPs travel with it.
    let grown = tmp.path().join("grown");
    ok(moegrow(&[
        "grow",
        run.join("final").to_str().unwrap(),
        grown.to_str().unwrap(),
        "--depth",
        "2",
        "--experts",
        "2",
        "--noise",
        "0.01",
    ]));
    let run2 = tmp.path().join("run2");
    let g = grown.to_str().unwrap();
    ok(moegrow(&[
        "train",
        "--init",
        g,
        "--corpus",
        c.to_str().unwrap(),
        "--out",
        run2.to_str().unwrap(),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--eval-every",
        "0",
        "--eval-sequences",
        "2",
    ]));
    let m2 = metrics(&run2);
    let sunk = m[5]["flops"].as_f64().unwrap();
    let first = m2[0]["flops"].as_f64().unwrap();
    assert!(
        first > sunk,
        "continued run's cumulative FLOPs {first} should start above the base's {sunk}"
    );
    assert!((m2[0]["trained_flops"].as_f64().unwrap() - (first - sunk)).abs() / sunk < 1e-9);
    // The grown model kept the trained tokenizer.
    assert_eq!(
        std::fs::read(run.join("final/tokenizer.json")).unwrap(),
        std::fs::read(run2.join("final/tokenizer.json")).unwrap()
    );
}

#[test]
fn a_killed_run_resumes_on_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let common = ["--steps", "8", "--save-every", "3", "--eval-every", "4"];
    let straight = tmp.path().join("straight");
    ok(train(&c, &straight, &common));
    let killed = tmp.path().join("killed");
    let mut args = common.to_vec();
    args.extend(["--kill-after-step", "5"]);
    let o = train(&c, &killed, &args);
    assert!(!o.status.success(), "the run should have been killed");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(o.status.signal(), Some(9), "killed by SIGKILL");
    }
    assert_eq!(metrics(&killed).len(), 5);
    assert!(!killed.join("final").exists());
    assert!(killed.join("checkpoints/step-0000003").exists());
    // Resume: continues from step 3 (at most one checkpoint interval lost).
    let (k, cs) = (killed.to_str().unwrap(), c.to_str().unwrap());
    let o = ok(moegrow(&[
        "train", "--resume", "--out", k, "--corpus", cs, "--steps", "8", "--device", "cpu",
    ]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resuming"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (a, b) = (metrics(&straight), metrics(&killed));
    assert_eq!(a.len(), 8);
    assert_eq!(b.len(), 8, "no duplicated or missing steps: {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"]);
        assert_eq!(x["tokens"], y["tokens"]);
        assert_eq!(x["lr"], y["lr"]);
        for key in ["loss", "eval_loss"] {
            if let (Some(p), Some(q)) = (x[key].as_f64(), y[key].as_f64()) {
                assert!(
                    (p - q).abs() <= 1e-5 * p.abs(),
                    "step {}: {key} {p} uninterrupted vs {q} resumed",
                    x["step"]
                );
            } else {
                assert_eq!(
                    x[key].is_null(),
                    y[key].is_null(),
                    "step {}: {key}",
                    x["step"]
                );
            }
        }
    }
    // Both runs end with the same weights.
    let wa = std::fs::read(straight.join("final/model.safetensors")).unwrap();
    let wb = std::fs::read(killed.join("final/model.safetensors")).unwrap();
    assert!(wa == wb, "the resumed run ends with different weights");
}

#[test]
fn bad_training_requests_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--out", o, "--steps", "1"],
            "--init CHECKPOINT",
        ),
        (
            vec![
                "train",
                "--out",
                o,
                "--init",
                "/nonexistent/ckpt",
                "--preset",
                "tiny",
            ],
            "not both",
        ),
        (
            vec!["train", "--out", o, "--init", "/nonexistent/ckpt"],
            "/nonexistent/ckpt",
        ),
        (
            vec!["train", "--out", o, "--preset", "huge"],
            "unknown preset",
        ),
        (vec!["train", "--out", o, "--resume"], "train.json"),
        (
            vec!["train", "--out", o, "--preset", "tiny", "--steps", "0"],
            "--steps must be at least 1",
        ),
        (
            vec![
                "train",
                "--out",
                o,
                "--preset",
                "tiny",
                "--corpus",
                "/nonexistent/corpus",
            ],
            "/nonexistent/corpus",
        ),
    ];
    for (args, want) in cases {
        let r = moegrow(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected `{want}` in: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_toml_config_sets_options_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "preset = \"tiny\"\ncorpus = {:?}\ndevice = \"cpu\"\nsteps = 2\nbatch_size = 2\nseq_len = 16\neval_sequences = 2\nschedule = \"wsd\"\n",
            c.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let (f, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    ok(moegrow(&[
        "train", "--config", f, "--out", r, "--steps", "3",
    ]));
    assert_eq!(metrics(&run).len(), 3, "the flag overrides the file");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train.json")).unwrap()).unwrap();
    assert_eq!(saved["batch_size"], 2);
    assert_eq!(saved["seq_len"], 16);
    assert_eq!(saved["schedule"], "wsd");
    assert_eq!(metrics(&run)[0]["tokens"], 32);

    std::fs::write(&cfg, "preset = \"tiny\"\nstepz = 2\n").unwrap();
    let o = moegrow(&["train", "--config", f, "--out", r, "--force"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("run.toml") && err.contains("stepz"), "{err}");
}

/// A checkpoint without a tokenizer is a clear error naming the two fixes, never a silently
/// trained tokenizer; `--train-tokenizer` trains one, `--tokenizer PATH` takes one, and the
/// end-of-document token comes from the tokenizer's own `tokenizer_config.json`.
#[test]
fn tokenizers_come_from_the_checkpoint_or_are_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let cs = c.to_str().unwrap();
    let bare = tmp.path().join("bare");
    ok(moegrow(&["init", bare.to_str().unwrap(), "--preset", "tiny"]));
    let run = |extra: &[&str], out: &str| {
        let o = tmp.path().join(out);
        let mut args = vec![
            "train", "--init", bare.to_str().unwrap(), "--out", o.to_str().unwrap(), "--corpus", cs,
            "--steps", "2", "--batch-size", "2", "--seq-len", "32", "--device", "cpu",
            "--eval-sequences", "1", "--vocab-size", "300",
        ];
        args.extend_from_slice(extra);
        (moegrow(&args), o)
    };
    let (o, _) = run(&[], "refused");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("--tokenizer PATH") && err.contains("--train-tokenizer"),
        "{err}"
    );
    let (o, trained) = ok_pair(run(&["--train-tokenizer"], "trained"));
    drop(o);
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(trained.join("final/tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["eos_token"], "<|endoftext|>");
    // Another run takes that tokenizer by path; a tokenizer_config.json that names a token the
    // vocabulary lacks is an error naming the file and the token.
    let tok = tmp.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::copy(trained.join("final/tokenizer.json"), tok.join("tokenizer.json")).unwrap();
    ok_pair(run(&["--tokenizer", tok.to_str().unwrap()], "by-path"));
    std::fs::write(tok.join("tokenizer_config.json"), r#"{"eos_token": "</s>"}"#).unwrap();
    let (o, _) = run(&["--tokenizer", tok.to_str().unwrap()], "bad-eos");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("`</s>`") && err.contains("tokenizer_config.json"), "{err}");
}

fn ok_pair((o, p): (Output, PathBuf)) -> (Output, PathBuf) {
    (ok(o), p)
}
