//! Shared helpers for the cross-crate tests: where the fixtures are and how to read the
//! reference outputs that transformers wrote next to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every fixture checkpoint (a directory with `reference.safetensors`), sorted by name.
pub fn fixture_checkpoints() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("reference.safetensors").exists())
        .collect();
    v.sort();
    assert!(
        v.len() >= 24,
        "expected the fixture set (6 families x 2 layouts x 2 dtypes), found {}",
        v.len()
    );
    v
}

/// What transformers computed for a fixture.
pub struct Reference {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub tokens: Vec<u32>,
    pub metadata: BTreeMap<String, String>,
}

impl Reference {
    pub fn load(dir: &Path) -> Reference {
        let bytes =
            std::fs::read(dir.join("reference.safetensors")).expect("reference.safetensors");
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).expect("valid reference file");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid reference file");
        let mut tensors = BTreeMap::new();
        let mut tokens = Vec::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    tensors.insert(name, (view.shape().to_vec(), v));
                }
                safetensors::Dtype::I64 => {
                    tokens = data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
                        .collect();
                }
                d => panic!("unexpected dtype {d:?} for {name}"),
            }
        }
        Reference {
            tensors,
            tokens,
            metadata: meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no `{name}`"))
    }
}

/// Largest absolute difference, and where; panics on a length mismatch.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> (f32, usize) {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i))
        .fold(
            (0.0, 0),
            |m, x| if x.0 > m.0 || x.0.is_nan() { x } else { m },
        )
}

/// Growth steps as the tests use them: width ×`factor` with relative noise `noise` (other
/// options at the CLI's defaults), and depth ×2 by `method`. A list of them becomes one set of
/// `core` growth options (the first kind listed goes first), which `core` turns into the plan.
#[derive(Debug, Clone)]
pub enum Step {
    /// Any options (the steps before it are replaced, the seed is the test's).
    Options(moegrow_core::growth::GrowthOptions),
    Width { factor: usize, noise: f32 },
    Depth {
        method: moegrow_core::growth::DepthMethod,
        zero_init_copies: bool,
    },
}

pub fn width(factor: usize, noise: f32) -> Step {
    Step::Width { factor, noise }
}

pub fn depth(method: moegrow_core::growth::DepthMethod, zero_init_copies: bool) -> Step {
    Step::Depth {
        method,
        zero_init_copies,
    }
}

/// The growth options a list of steps stands for.
pub fn options(steps: &[Step], seed: u64) -> moegrow_core::growth::GrowthOptions {
    let mut o = moegrow_core::growth::GrowthOptions {
        seed,
        width_first: matches!(steps.first(), Some(Step::Width { .. })),
        ..Default::default()
    };
    for s in steps {
        match s.clone() {
            Step::Options(given) => {
                o = moegrow_core::growth::GrowthOptions { seed, ..given };
            }
            Step::Width { factor, noise } => {
                o.experts = Some(factor);
                o.noise = noise;
            }
            Step::Depth {
                method,
                zero_init_copies,
            } => {
                o.depth = Some(2);
                o.depth_method = method;
                o.zero_init_copies = zero_init_copies;
            }
        }
    }
    o
}

/// Grow `src` by `steps` into `out` (in `layout`, or the source's) and open the result.
pub fn grow(
    src: &Path,
    out: &Path,
    steps: Vec<Step>,
    seed: u64,
    layout: Option<moegrow_core::ExpertLayout>,
) -> moegrow_core::Checkpoint {
    use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
    let ckpt = moegrow_core::Checkpoint::open(src).unwrap();
    let plan = options(&steps, seed).plan().unwrap();
    let grown = plan.apply(&ckpt).unwrap();
    let tensors = grown.tensors(layout.unwrap_or(ckpt.layout)).unwrap();
    write_checkpoint(
        out,
        &grown.config.to_json_string(),
        &tensors,
        Some(src),
        &WriteOptions::default(),
        |_| {},
    )
    .unwrap();
    moegrow_core::Checkpoint::open(out).unwrap()
}

/// Write `src` as a checkpoint in `layout` stored as `storage` (its config rewritten to match)
/// and open the result.
pub fn write_as<S: moegrow_core::TensorSource + ?Sized>(
    src: &S,
    out: &Path,
    layout: moegrow_core::ExpertLayout,
    storage: moegrow_core::schema::layout::Storage,
) -> moegrow_core::Checkpoint {
    use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
    let mut config = src.config().clone();
    storage.rewrite(&mut config);
    let tensors = moegrow_core::schema::layout::output_tensors(src, layout, storage).unwrap();
    write_checkpoint(
        out,
        &config.to_json_string(),
        &tensors,
        None,
        &WriteOptions::default(),
        |_| {},
    )
    .unwrap();
    moegrow_core::Checkpoint::open(out).unwrap()
}
