//! Provenance of a grown checkpoint: where it came from, the plan, the seed, the tool version
//! and the base's sunk training compute when known. Written to `growth.json` and to every
//! shard's safetensors `__metadata__`, identically by `moegrow grow` and the browser explorer
//! (so the same plan on the same checkpoint gives the same bytes in both).

use super::GrowthPlan;
use crate::analysis::param_counts_for;
use crate::checkpoint::Checkpoint;
use crate::roles::ExpertLayout;
use crate::ModelConfig;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `source_name`: how the user named the source (a path natively, the folder name in the
/// browser); `config_text`: the source's `config.json` exactly as stored.
pub fn record(
    source_name: &str,
    config_text: &[u8],
    src: &Checkpoint,
    plan: &GrowthPlan,
    grown: &ModelConfig,
    layout: ExpertLayout,
) -> Value {
    let digest = Sha256::digest(config_text);
    let before = param_counts_for(&src.config);
    let after = param_counts_for(grown);
    json!({
        "moegrow_version": env!("CARGO_PKG_VERSION"),
        "source": {
            "path": source_name,
            "config_sha256": format!("{digest:x}"),
            "family": src.config.family.model_type(),
            "layers": src.config.num_layers,
            "experts": src.config.moe.num_experts,
            "top_k": src.config.moe.top_k,
            "parameters": before,
            "sunk_flops": sunk_flops(src),
        },
        "plan": plan,
        "seed": plan.seed,
        "result": {
            "layout": layout.name(),
            "layers": grown.num_layers,
            "experts": grown.moe.num_experts,
            "top_k": grown.moe.top_k,
            "parameters": after,
        },
    })
}

/// The training compute already spent on a checkpoint, as recorded by `moegrow train`
/// (`moegrow_sunk_flops`) or carried through a growth (`moegrow_growth.source.sunk_flops`).
pub fn sunk_flops(ckpt: &Checkpoint) -> Option<f64> {
    ckpt.metadata
        .get("moegrow_growth")
        .and_then(|g| serde_json::from_str::<Value>(g).ok())
        .and_then(|g| g["source"]["sunk_flops"].as_f64())
        .or_else(|| {
            ckpt.metadata
                .get("moegrow_sunk_flops")
                .and_then(|s| s.parse().ok())
        })
}

/// `__metadata__` entries of every shard.
pub type Metadata = Vec<(String, String)>;
/// Files written beside the shards: (name, contents).
pub type ExtraFiles = Vec<(String, Vec<u8>)>;

/// The `__metadata__` entries and extra files a grown checkpoint is written with.
pub fn outputs(record: &Value) -> (Metadata, ExtraFiles) {
    (
        vec![("moegrow_growth".to_string(), record.to_string())],
        vec![(
            "growth.json".into(),
            (serde_json::to_string_pretty(record).expect("JSON") + "\n").into_bytes(),
        )],
    )
}
