//! moegrow's browser explorer. For now it exposes the core's checkpoint reader to JavaScript:
//! given `config.json` and a safetensors file's bytes it returns the `inspect` summary, so the
//! same parsing and analysis code runs natively and in the browser.

use moegrow_core::analysis::{expert_norm_profile, param_counts};
use moegrow_core::checkpoint::ShardData;
use moegrow_core::Checkpoint;
use wasm_bindgen::prelude::*;

/// Summarise a single-file checkpoint held in memory; returns JSON text.
#[wasm_bindgen]
pub fn summarize(config_json: &str, safetensors: &[u8]) -> Result<String, JsError> {
    summarize_impl(config_json, safetensors).map_err(|e| JsError::new(&e.to_string()))
}

fn summarize_impl(config_json: &str, safetensors: &[u8]) -> moegrow_core::Result<String> {
    let shard = ShardData::Bytes(safetensors.to_vec().into());
    let ckpt =
        Checkpoint::from_shards(config_json, vec![("model.safetensors".into(), shard)], None)?;
    let c = &ckpt.config;
    let p = param_counts(&ckpt);
    Ok(serde_json::json!({
        "family": c.family.name(),
        "layout": ckpt.layout.name(),
        "layers": c.num_layers,
        "hidden_size": c.hidden_size,
        "experts": c.moe.num_experts,
        "top_k": c.moe.top_k,
        "routing": c.moe.router.describe(c.moe.top_k),
        "parameters_total": p.total,
        "parameters_activated": p.activated,
        "expert_norm_profile": expert_norm_profile(&ckpt)?,
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_a_fixture_from_bytes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/qwen3_moe_experts_f32");
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let s: serde_json::Value =
            serde_json::from_str(&summarize_impl(&config, &bytes).unwrap()).unwrap();
        assert_eq!(s["family"], "Qwen3-MoE");
        assert_eq!(s["experts"], 8);
        let err = summarize_impl(&config, &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("past the end") || err.contains("truncated"),
            "{err}"
        );
    }
}
