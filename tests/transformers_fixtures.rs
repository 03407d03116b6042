//! The reference forward pass against transformers, for every family, both expert layouts and
//! f32 and bf16 weights: logits, every hidden state and every router's logits within 1e-4
//! absolute, and parameter counts equal to transformers' `num_parameters()`.

use moegrow_core::analysis::param_counts;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::Checkpoint;
use moegrow_integration_tests::*;

const TOL: f32 = 1e-4;

fn compare(what: &str, cols: usize, got: &[f32], want: &[f32], failures: &mut Vec<String>) {
    if got.len() != want.len() {
        failures.push(format!(
            "{what}: {} values, transformers has {}",
            got.len(),
            want.len()
        ));
        return;
    }
    let (d, i) = max_abs_diff(got, want);
    if d.is_nan() || d > TOL {
        failures.push(format!(
            "{what}: failed at index [{}, {}]: computed {} vs expected {} (|diff| {d:.2e} > {TOL:.0e})",
            i / cols,
            i % cols,
            got[i],
            want[i]
        ));
    }
}

#[test]
fn reference_forward_matches_transformers_on_every_fixture() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in fixture_checkpoints() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let reference = Reference::load(&dir);
        let ckpt = match Checkpoint::open(&dir) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: cannot open: {e}"));
                continue;
            }
        };
        let model = ReferenceModel::load(&ckpt).expect("weights load");
        let out = model.forward(&reference.tokens).expect("forward");
        let (shape, logits) = reference.get("logits");
        compare(
            &format!("{name} logits"),
            shape[1],
            &out.logits.data,
            logits,
            &mut failures,
        );
        for (i, hs) in out.hidden_states.iter().enumerate() {
            let (shape, want) = reference.get(&format!("hidden_states.{i}"));
            compare(
                &format!("{name} hidden_states.{i}"),
                shape[1],
                &hs.data,
                want,
                &mut failures,
            );
        }
        let moe_layers: Vec<usize> = ckpt.config.moe_layers().collect();
        let want_layers: Vec<usize> = reference.metadata["moe_layers"]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        if moe_layers != want_layers {
            failures.push(format!(
                "{name}: MoE layers {moe_layers:?}, transformers has {want_layers:?}"
            ));
        }
        for l in want_layers {
            let (shape, want) = reference.get(&format!("router_logits.{l}"));
            match &out.router_logits[l] {
                Some(got) => compare(
                    &format!("{name} router_logits.{l}"),
                    shape[1],
                    &got.data,
                    want,
                    &mut failures,
                ),
                None => failures.push(format!("{name}: no router logits for layer {l}")),
            }
        }
        let params = param_counts(&ckpt).total;
        let want: u64 = reference.metadata["num_parameters"].parse().unwrap();
        if params != want {
            failures.push(format!(
                "{name}: {params} parameters, transformers counts {want}"
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} fixtures disagree with transformers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The fixtures must exercise what they claim to: the two layouts really differ on disk, and
/// the bf16 ones are stored in bf16.
#[test]
fn fixtures_cover_both_layouts_and_dtypes() {
    use moegrow_core::{DType, ExpertLayout};
    let mut seen = std::collections::BTreeSet::new();
    for dir in fixture_checkpoints() {
        let ckpt = Checkpoint::open(&dir).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let layout = if name.contains("_fused_") {
            ExpertLayout::Fused
        } else {
            ExpertLayout::PerExpert
        };
        assert_eq!(ckpt.layout, layout, "{name}");
        let dtype = if name.contains("bf16") {
            DType::BF16
        } else {
            DType::F32
        };
        assert_eq!(ckpt.dominant_dtype(), dtype, "{name}");
        seen.insert((ckpt.config.family, layout.name(), dtype));
    }
    assert_eq!(seen.len(), 24, "6 families x 2 layouts x 2 dtypes");
}

/// The layer-by-layer forward pass (one layer's weights decoded at a time, the embedding read by
/// rows, the head in chunks) computes what the whole-model one does, on every fixture.
#[test]
fn layer_by_layer_forward_equals_the_whole_model_forward() {
    for dir in fixture_checkpoints() {
        let ckpt = moegrow_core::Checkpoint::open(&dir).unwrap();
        let tokens = Reference::load(&dir).tokens;
        let whole = ReferenceModel::load(&ckpt).unwrap().forward(&tokens).unwrap();
        let mut releases = 0;
        let streamed =
            moegrow_core::reference::forward_streamed(&ckpt, &tokens, || releases += 1).unwrap();
        assert_eq!(releases, ckpt.config.num_layers);
        let (d, i) = max_abs_diff(&streamed.logits.data, &whole.logits.data);
        assert!(d <= 1e-5, "{}: logit {i} differs by {d:e}", dir.display());
        for (a, b) in streamed.hidden_states.iter().zip(&whole.hidden_states) {
            assert_eq!(a.data, b.data, "{}: hidden states", dir.display());
        }
    }
}
