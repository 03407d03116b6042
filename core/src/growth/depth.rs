//! Depth growth: which source layer each new layer copies.
//!
//! Interposition repeats each layer in place (`0,0,1,1,2,2`), stacking repeats the whole
//! sequence (`0,1,2,0,1,2`); both can leave the first `a` and last `b` layers un-duplicated.
//! Copies are exact. With `zero_init_copies` the *repeated* copies get zero `o_proj` and down
//! projections, so each is an exact identity and the grown model computes the base function.

use crate::config::{MlpKind, ModelConfig};
use crate::error::{Error, Result};
use crate::families::Family;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepthMethod {
    Interpose,
    Stack,
}

/// One new layer: the source layer it copies, and whether it is a repeated copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerSource {
    pub source: usize,
    /// True for every occurrence of a source layer after its first.
    pub repeat: bool,
}

/// The new depth as a list of source layers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerMap(pub Vec<LayerSource>);

impl LayerMap {
    /// Mark every occurrence after the first as a repeat.
    pub fn from_sources(sources: &[usize]) -> LayerMap {
        let mut seen = std::collections::HashSet::new();
        LayerMap(
            sources
                .iter()
                .map(|&s| LayerSource {
                    source: s,
                    repeat: !seen.insert(s),
                })
                .collect(),
        )
    }

    pub fn interpose(n: usize, k: usize, keep_first: usize, keep_last: usize) -> Result<LayerMap> {
        check(n, k, keep_first, keep_last)?;
        let sources: Vec<usize> = (0..n)
            .flat_map(|l| {
                let times = if l < keep_first || l >= n - keep_last {
                    1
                } else {
                    k
                };
                std::iter::repeat_n(l, times)
            })
            .collect();
        Ok(LayerMap::from_sources(&sources))
    }

    /// SOLAR-style: the first pass leaves out the last `b` layers, every later pass starts at
    /// `a`, and only the final pass runs to the end.
    pub fn stack(n: usize, k: usize, keep_first: usize, keep_last: usize) -> Result<LayerMap> {
        check(n, k, keep_first, keep_last)?;
        let mut sources = Vec::new();
        for pass in 0..k {
            let start = if pass == 0 { 0 } else { keep_first };
            let end = if pass == k - 1 { n } else { n - keep_last };
            sources.extend(start..end);
        }
        Ok(LayerMap::from_sources(&sources))
    }

    pub fn explicit(n: usize, sources: &[usize]) -> Result<LayerMap> {
        if sources.is_empty() {
            return Err(Error::Invalid("--layer-map is empty".into()));
        }
        if let Some(bad) = sources.iter().find(|&&s| s >= n) {
            return Err(Error::Invalid(format!(
                "--layer-map names layer {bad}, but the source has only {n} layers (0..{})",
                n - 1
            )));
        }
        Ok(LayerMap::from_sources(sources))
    }

    pub fn sources(&self) -> Vec<usize> {
        self.0.iter().map(|l| l.source).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check(n: usize, k: usize, a: usize, b: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::Invalid("--depth must be at least 1".into()));
    }
    if a + b > n {
        return Err(Error::Invalid(format!(
            "--keep-first {a} plus --keep-last {b} exceed the {n} layers of the source"
        )));
    }
    Ok(())
}

/// Config lists with one entry per decoder layer, which follow the layer map: attention kinds
/// (Qwen, gpt-oss, Qwen3-Next; MiniMax's `attn_type_list`), dense/MoE kinds (DeepSeek-V3.2,
/// GLM-4.7-Flash), indexer kinds and Llama-4's RoPE switches.
pub const PER_LAYER_LISTS: &[&str] = &[
    "layer_types",
    "mlp_layer_types",
    "indexer_types",
    "no_rope_layers",
    "attn_type_list",
];

/// The config of the deeper model: the layer count and every per-layer list follow the map.
/// A map the family's config cannot express is refused with the reason.
pub fn grow_config(cfg: &ModelConfig, map: &LayerMap) -> Result<serde_json::Map<String, Value>> {
    let mut raw = cfg.raw.clone();
    let new_n = map.len();
    raw.insert("num_hidden_layers".into(), new_n.into());
    let sources = map.sources();
    for key in PER_LAYER_LISTS {
        match cfg.raw.get(*key) {
            // Llama-4's hub configs spell "the default" as an empty list; the family rule below
            // writes the grown model's list out.
            Some(Value::Array(list)) if list.is_empty() && *key == "no_rope_layers" => {}
            Some(Value::Array(list)) if list.len() == cfg.num_layers => {
                raw.insert(
                    key.to_string(),
                    Value::Array(sources.iter().map(|&s| list[s].clone()).collect()),
                );
            }
            Some(Value::Array(list)) => {
                return Err(Error::Invalid(format!(
                    "config.json's `{key}` has {} entries for {} layers; moegrow cannot tell which layer each describes",
                    list.len(),
                    cfg.num_layers
                )))
            }
            _ => {}
        }
    }
    let kinds: Vec<MlpKind> = sources.iter().map(|&s| cfg.mlp[s]).collect();
    match cfg.family {
        Family::Qwen2Moe | Family::Qwen3Moe | Family::Qwen3Next | Family::Qwen35Moe => {
            // (i+1) % decoder_sparse_step cannot follow an arbitrary map; an explicit
            // mlp_only_layers with step 1 can express any dense/MoE pattern.
            let dense: Vec<usize> = (0..new_n).filter(|&i| kinds[i] == MlpKind::Dense).collect();
            raw.insert("mlp_only_layers".into(), dense.into());
            raw.insert("decoder_sparse_step".into(), 1.into());
            if cfg.family == Family::Qwen2Moe && cfg.sliding_window.iter().any(Option::is_some) {
                raw.insert("layer_types".into(), attention_types(cfg, &sources).into());
            }
            // Qwen3-Next's hub configs give the hybrid pattern as `full_attention_interval`,
            // which a layer map does not keep: each layer's kind is spelled out.
            if cfg.linear_attention.is_some() {
                let kinds: Vec<&str> = sources
                    .iter()
                    .map(|&s| if cfg.linear_layers[s] { "linear_attention" } else { "full_attention" })
                    .collect();
                raw.insert("layer_types".into(), kinds.into());
            }
        }
        // DeepSeek-V3.2 reads its dense/MoE pattern from `mlp_layer_types` when the config has
        // it (remapped above): any pattern is expressible.
        Family::DeepseekV32 if matches!(cfg.raw.get("mlp_layer_types"), Some(Value::Array(_))) => {}
        // GLM-4.7-Flash reads its pattern from `mlp_layer_types` only (its default ignores
        // `first_k_dense_replace`): the grown config spells it out, so any pattern is kept.
        Family::Glm4MoeLite => {
            let kinds: Vec<&str> = kinds
                .iter()
                .map(|k| if *k == MlpKind::Moe { "sparse" } else { "dense" })
                .collect();
            raw.insert("mlp_layer_types".into(), kinds.into());
        }
        Family::DeepseekV2 | Family::DeepseekV3 | Family::DeepseekV32 | Family::Glm4Moe => {
            let first_moe = kinds
                .iter()
                .position(|k| *k == MlpKind::Moe)
                .unwrap_or(new_n);
            if kinds[first_moe..].contains(&MlpKind::Dense) {
                return Err(Error::Invalid(format!(
                    "{} configs put dense layers only at the start (first_k_dense_replace); this layer map puts a dense layer at position {} (try interposition)",
                    cfg.family.name(),
                    first_moe + kinds[first_moe..].iter().position(|k| *k == MlpKind::Dense).unwrap_or(0)
                )));
            }
            raw.insert("first_k_dense_replace".into(), first_moe.into());
        }
        // Without `layer_types` gpt-oss alternates sliding and full attention by index, which
        // a layer map does not keep: the grown config spells each layer's kind out.
        Family::GptOss => {
            raw.insert("layer_types".into(), attention_types(cfg, &sources).into());
        }
        // Llama-4's MoE layers by index and its RoPE switches per layer, spelled out: the
        // interleave step and the NoPE interval cannot follow an arbitrary map.
        Family::Llama4 => {
            let moe: Vec<usize> = (0..new_n).filter(|&i| kinds[i] == MlpKind::Moe).collect();
            raw.insert("moe_layers".into(), moe.into());
            let rope: Vec<u8> = sources.iter().map(|&s| cfg.rope_layers[s] as u8).collect();
            raw.insert("no_rope_layers".into(), rope.into());
        }
        // ERNIE-4.5's MoE layers by start, end and interval: kept when the grown pattern is
        // one (interposition of a model whose dense layers lead is), refused otherwise.
        Family::Ernie45Moe => {
            let interval = cfg.raw.get("moe_layer_interval").and_then(Value::as_u64).unwrap_or(1) as usize;
            let Some((start, end)) = crate::families::ernie_layer_keys(&kinds, interval.max(1)) else {
                return Err(Error::Invalid(format!(
                    "ERNIE-4.5 configs give their MoE layers as a start, an end and an interval (moe_layer_start_index, moe_layer_end_index, moe_layer_interval = {interval}); this layer map's dense/MoE pattern is not one (try interposition)"
                )));
            };
            raw.insert("moe_layer_start_index".into(), start.into());
            // -1 (the last layer) stays -1 when the MoE layers still run to the end.
            let to_end = end + 1 == new_n
                && matches!(cfg.raw.get("moe_layer_end_index").and_then(Value::as_i64), None | Some(-1));
            if !to_end || cfg.raw.contains_key("moe_layer_end_index") {
                raw.insert("moe_layer_end_index".into(), if to_end { (-1i64).into() } else { end.into() });
            }
        }
        Family::Mixtral | Family::Olmoe | Family::MinimaxM2 => {}
    }
    Ok(raw)
}

/// transformers' `layer_types` for the grown layers: each copies its source's attention kind.
fn attention_types(cfg: &ModelConfig, sources: &[usize]) -> Vec<&'static str> {
    sources
        .iter()
        .map(|&s| {
            if cfg.sliding_window[s].is_some() {
                "sliding_attention"
            } else {
                "full_attention"
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpose_and_stack_orders() {
        assert_eq!(
            LayerMap::interpose(4, 2, 0, 0).unwrap().sources(),
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(
            LayerMap::stack(4, 2, 0, 0).unwrap().sources(),
            [0, 1, 2, 3, 0, 1, 2, 3]
        );
        assert_eq!(
            LayerMap::interpose(4, 3, 1, 1).unwrap().sources(),
            [0, 1, 1, 1, 2, 2, 2, 3]
        );
        // SOLAR: 0..n-b, then a..n.
        assert_eq!(
            LayerMap::stack(4, 2, 1, 1).unwrap().sources(),
            [0, 1, 2, 1, 2, 3]
        );
        let m = LayerMap::interpose(2, 2, 0, 0).unwrap();
        assert_eq!(
            m.0.iter().map(|l| l.repeat).collect::<Vec<_>>(),
            [false, true, false, true]
        );
    }

    #[test]
    fn bad_depth_plans_are_refused() {
        assert!(LayerMap::interpose(4, 0, 0, 0)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        assert!(LayerMap::stack(4, 2, 3, 2)
            .unwrap_err()
            .to_string()
            .contains("exceed the 4 layers"));
        assert!(LayerMap::explicit(4, &[0, 4])
            .unwrap_err()
            .to_string()
            .contains("names layer 4"));
    }
}
