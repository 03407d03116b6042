//! Grown checkpoints against transformers. `tests/fixtures/check_moegrow_grown.sh` grew every
//! fixture with the plans below, loaded each result in transformers and committed the logits it
//! computed. Growth is seeded and byte-reproducible, so this test grows the same checkpoints
//! again and requires moegrow's forward pass of them to agree with transformers' — noise,
//! stacking and layer copies included — and the record to show that every one loaded with no
//! missing or unexpected tensors.

use moegrow_core::growth::*;
use moegrow_core::reference::ReferenceModel;
use moegrow_integration_tests::*;

/// The plans of check_moegrow_grown.sh, as the CLI builds them (depth before width).
fn plan(name: &str) -> (Vec<Step>, u64) {
    match name {
        "w2" => (vec![width(2, 0.0)], 0),
        "w2-noise" => (vec![width(2, 0.01)], 1),
        "d2-zero-w2" => (vec![depth(DepthMethod::Interpose, true), width(2, 0.0)], 0),
        "d2-w2-noise" => (
            vec![depth(DepthMethod::Interpose, false), width(2, 0.01)],
            2,
        ),
        "stack2" => (vec![depth(DepthMethod::Stack, false)], 0),
        other => panic!("unknown plan {other}"),
    }
}

#[test]
fn moegrow_forward_of_grown_checkpoints_matches_transformers() {
    let bytes = std::fs::read(fixtures_dir().join("grown_reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut names = st.names();
    names.sort();
    for key in &names {
        let (fixture, plan_name) = key.split_once('/').unwrap();
        let dir = fixtures_dir().join(fixture);
        let (steps, seed) = plan(plan_name);
        let out = tmp.path().join(key.replace('/', "@"));
        let g = grow(&dir, &out, steps, seed, None);
        let tokens = Reference::load(&dir).tokens;
        let ours = ReferenceModel::load(&g)
            .unwrap()
            .forward(&tokens)
            .unwrap()
            .logits;
        let theirs: Vec<f32> = st
            .tensor(key)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let (d, i) = max_abs_diff(&ours.data, &theirs);
        if d.is_nan() || d > 1e-4 {
            failures.push(format!(
                "{key}: failed at index [{}, {}]: computed {} vs transformers {} (|diff| {d:.2e})",
                i / ours.cols,
                i % ours.cols,
                ours.data[i],
                theirs[i]
            ));
        }
    }
    assert!(
        names.len() >= 26 * 4,
        "expected every fixture with four or five plans, found {}",
        names.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} grown checkpoints disagree with transformers:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

#[test]
fn transformers_loaded_every_grown_checkpoint_completely() {
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("transformers_loads_grown.json")).unwrap(),
    )
    .unwrap();
    let report = report.as_object().unwrap();
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for plan in ["w2", "w2-noise", "d2-zero-w2", "d2-w2-noise"] {
            let r = &report[&format!("{name}/{plan}")];
            assert_eq!(r["loaded"], true, "{name}/{plan}");
            assert!(
                r["missing_keys"].as_array().unwrap().is_empty()
                    && r["unexpected_keys"].as_array().unwrap().is_empty(),
                "{name}/{plan}: {r}"
            );
            let d = r["max_abs_diff_from_base_logits"].as_f64().unwrap();
            if plan == "w2" || plan == "d2-zero-w2" {
                assert!(
                    d <= 1e-4,
                    "{name}/{plan}: exact growth moved transformers' logits by {d}"
                );
            } else {
                assert!(
                    d > 1e-5,
                    "{name}/{plan}: noise or depth copies should change the logits"
                );
            }
        }
    }
}
