//! Provenance of a grown checkpoint: where it came from, the plan, the seed, the tool version
//! and the base's sunk training compute when known. Written to `growth.json` and to every
//! shard's safetensors `__metadata__`.

use moegrow_core::analysis::ParamCounts;
use moegrow_core::growth::GrowthPlan;
use moegrow_core::{Checkpoint, ModelConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

pub fn record(
    source: &Path,
    src: &Checkpoint,
    plan: &GrowthPlan,
    grown: &ModelConfig,
    before: &ParamCounts,
    after: &ParamCounts,
) -> anyhow::Result<Value> {
    let config_text = std::fs::read(source.join("config.json"))?;
    let digest = Sha256::digest(&config_text);
    let sunk = sunk_flops(src);
    Ok(json!({
        "moegrow_version": env!("CARGO_PKG_VERSION"),
        "source": {
            "path": source.display().to_string(),
            "config_sha256": format!("{digest:x}"),
            "family": src.config.family.model_type(),
            "layers": src.config.num_layers,
            "experts": src.config.moe.num_experts,
            "top_k": src.config.moe.top_k,
            "parameters": before,
            "sunk_flops": sunk,
        },
        "plan": plan,
        "seed": plan.seed,
        "result": {
            "layers": grown.num_layers,
            "experts": grown.moe.num_experts,
            "top_k": grown.moe.top_k,
            "parameters": after,
        },
    }))
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
