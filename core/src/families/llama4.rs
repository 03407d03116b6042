//! Meta Llama-4 Scout and Maverick (`model_type: llama4_text`, usually inside the multimodal
//! `llama4` wrapper whose `text_config` it is): grouped-query attention without biases, RoPE on
//! the interleaved pairs (Meta's complex form, no q/k permutation) on the layers `no_rope_layers`
//! marks 1, and on those a weightless L2 norm of q and k after RoPE (`use_qk_norm`) and chunked
//! attention (a query sees the earlier keys of its own `attention_chunk_size` block). The NoPE
//! layers attend to everything, their queries scaled by the attention temperature
//! `1 + attn_scale · ln(1 + ⌊(p + 1) / floor_scale⌋)`.
//!
//! MoE on the layers `moe_layers` lists (default: every `interleave_moe_layer_step`-th), the rest
//! a dense MLP of `intermediate_size_mlp`. The router is top-k on the logits and a sigmoid of the
//! chosen ones, and that score scales the routed expert's *input* (`expert(s · x)`); an always-on
//! shared expert of `intermediate_size` is added. Experts are stacked only, input-major:
//! `feed_forward.experts.gate_up_proj [E, H, 2I]` (gate columns, then up), `down_proj [E, I, H]`;
//! [`crate::schema::layout`] maps them onto the schema's `[E, 2I, H]` and back.
//! Reference: transformers `models/llama4/modeling_llama4.py` (`Llama4TextAttention`,
//! `Llama4TextMoe`, `Llama4Router`, `apply_rotary_emb`), `configuration_llama4.py`
//! (`Llama4TextConfig.__post_init__`).

use super::{Common, Family, NameScheme, Specific};
use crate::config::*;
use crate::error::{Error, Result};
use serde_json::Value;

pub(crate) const NAMES: NameScheme = NameScheme {
    moe_prefix: "feed_forward.",
    expert_proj: ["gate_proj", "up_proj", "down_proj"],
    shared_prefix: "feed_forward.shared_expert.",
    router_bias: "router.e_score_correction_bias",
    router: "router",
    ffn_prefix: "feed_forward.",
};

pub(crate) fn parse_config(raw: RawConfig) -> Result<ModelConfig> {
    let c = Common::parse(raw, 1e-5)?;
    let layers = c.num_layers;
    let rope_layers = rope_layers(raw, layers)?;
    let mlp = moe_layers(raw, layers)?;
    // transformers' default is 8192; an explicit null turns chunking off.
    let chunk = match raw.0.get("attention_chunk_size") {
        None => Some(8192),
        Some(Value::Null) => None,
        Some(_) => raw.opt_usize("attention_chunk_size")?.filter(|c| *c > 0),
    };
    // transformers: `layer_types` as given, else chunked on the RoPE layers when a chunk is set.
    let chunked = super::layer_types(raw, layers, &[("chunked_attention", true), ("full_attention", false)])?
        .unwrap_or_else(|| rope_layers.iter().map(|r| *r && chunk.is_some()).collect());
    if chunked.contains(&true) && chunk.is_none() {
        return Err(Error::config(
            "`layer_types` has chunked-attention layers but `attention_chunk_size` is not set",
        ));
    }
    let bias = raw.bool_or("attention_bias", false)?;
    let intermediate = raw.usize("intermediate_size")?;
    // The hub's base Scout config spells `attn_temperature_tuning` as 4 (truthy); transformers
    // 5's typed config wants a bool. Both are read as on/off.
    let temperature = match raw.get("attn_temperature_tuning") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => v.as_f64().map(|x| x != 0.0).ok_or_else(|| {
            Error::config(format!("`attn_temperature_tuning` must be true or false, found {v}"))
        })?,
    };
    let floor_scale = raw.f32_or("floor_scale", 8192.0)?;
    if temperature && floor_scale <= 0.0 {
        return Err(Error::config("`floor_scale` must be positive"));
    }
    let mut cfg = c.finish(
        Family::Llama4,
        raw,
        Specific {
            attention: Attention::Standard {
                qkv_bias: bias,
                o_bias: bias,
                qk_norm: if raw.bool_or("use_qk_norm", true)? {
                    QkNorm::L2AfterRope
                } else {
                    QkNorm::None
                },
                clip_qkv: None,
            },
            mlp,
            dense_intermediate: raw.opt_usize("intermediate_size_mlp")?.unwrap_or(16384),
            moe: MoeConfig {
                num_experts: raw.usize_any(&["num_local_experts", "num_experts"])?,
                top_k: raw.opt_usize("num_experts_per_tok")?.unwrap_or(1),
                intermediate,
                router: RouterConfig {
                    scoring: Scoring::Sigmoid,
                    normalize: false,
                    routed_scaling_factor: 1.0,
                    group_limit: None,
                    correction_bias: false,
                },
                shared: Some(SharedExperts {
                    intermediate,
                    gated: false,
                }),
            },
            sliding_window: vec![None; layers],
            mtp_layers: 0,
        },
    );
    cfg.rope_interleave = true;
    cfg.attention_chunk = chunked.iter().map(|c| chunk.filter(|_| *c)).collect();
    cfg.rope_layers = rope_layers;
    cfg.attn_temperature = temperature.then_some(AttnTemperature {
        floor_scale,
        attn_scale: raw.f32_or("attn_scale", 0.1)?,
    });
    cfg.expert_input_scaling = true;
    Ok(cfg)
}

/// Which layers apply RoPE: `no_rope_layers` (1 = RoPE, 0 = NoPE) when it lists any, else
/// every `no_rope_layer_interval`-th layer NoPE, as transformers (an empty list means the
/// default, which is how the hub's configs spell it).
fn rope_layers(raw: RawConfig, layers: usize) -> Result<Vec<bool>> {
    let listed = raw.usize_list("no_rope_layers")?;
    if listed.is_empty() {
        let interval = raw.opt_usize("no_rope_layer_interval")?.unwrap_or(4);
        if interval == 0 {
            return Err(Error::config("`no_rope_layer_interval` must be positive"));
        }
        return Ok((0..layers).map(|i| (i + 1) % interval != 0).collect());
    }
    if listed.len() != layers {
        return Err(Error::config(format!(
            "`no_rope_layers` has {} entries for {layers} layers",
            listed.len()
        )));
    }
    listed
        .iter()
        .map(|v| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::config(format!(
                "`no_rope_layers` entries are 1 (RoPE) or 0 (NoPE), found {v}"
            ))),
        })
        .collect()
}

/// Dense or MoE per layer: `moe_layers` (indices) when given, else every
/// `interleave_moe_layer_step`-th layer from `step − 1`.
fn moe_layers(raw: RawConfig, layers: usize) -> Result<Vec<MlpKind>> {
    let moe: Vec<usize> = match raw.get("moe_layers") {
        Some(_) => raw.usize_list("moe_layers")?,
        None => {
            let step = raw.opt_usize("interleave_moe_layer_step")?.unwrap_or(1);
            if step == 0 {
                return Err(Error::config("`interleave_moe_layer_step` must be positive"));
            }
            (step - 1..layers).step_by(step).collect()
        }
    };
    if let Some(bad) = moe.iter().find(|&&l| l >= layers) {
        return Err(Error::config(format!(
            "`moe_layers` names layer {bad}, but there are only {layers} layers"
        )));
    }
    Ok((0..layers)
        .map(|i| if moe.contains(&i) { MlpKind::Moe } else { MlpKind::Dense })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::config::{MlpKind, ModelConfig};
    use serde_json::json;

    fn text(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "model_type": "llama4_text", "vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 8,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 16,
            "intermediate_size_mlp": 40, "num_local_experts": 4, "num_experts_per_tok": 1,
        });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    }

    fn parse(v: serde_json::Value) -> crate::error::Result<ModelConfig> {
        ModelConfig::from_json(v)
    }

    #[test]
    fn defaults_follow_transformers_post_init() {
        // `no_rope_layers: []` is the hub's spelling of the default.
        let c = parse(text(json!({"no_rope_layers": [], "interleave_moe_layer_step": 2}))).unwrap();
        assert_eq!(c.rope_layers, [true, true, true, false, true, true, true, false]);
        assert_eq!(c.moe_layers().collect::<Vec<_>>(), [1, 3, 5, 7]);
        assert_eq!(c.attention_chunk[0], Some(8192));
        assert_eq!(c.attention_chunk[3], None);
        assert_eq!(c.attn_temperature.unwrap().floor_scale, 8192.0);
        assert!((c.attn_temperature.unwrap().at(8190) - 1.0).abs() < 1e-7);
        assert!((c.attn_temperature.unwrap().at(8191) - (1.0 + 0.1 * 2f32.ln())).abs() < 1e-6);
    }

    #[test]
    fn explicit_lists_win_and_bad_ones_are_refused() {
        let c = parse(text(json!({
            "no_rope_layers": [1, 0, 1, 0, 1, 0, 1, 0], "moe_layers": [0, 5],
            "attention_chunk_size": null, "attn_temperature_tuning": 4,
        })))
        .unwrap();
        assert_eq!(c.rope_layers.iter().filter(|r| **r).count(), 4);
        assert_eq!(c.mlp.iter().filter(|k| **k == MlpKind::Moe).count(), 2);
        assert!(c.attention_chunk.iter().all(Option::is_none));
        assert!(c.attn_temperature.is_some(), "4 is truthy, as the hub's base Scout spells it");
        for (bad, why) in [
            (json!({"no_rope_layers": [1, 0]}), "2 entries for 8 layers"),
            (json!({"no_rope_layers": [2, 1, 1, 1, 1, 1, 1, 1]}), "1 (RoPE) or 0 (NoPE)"),
            (json!({"moe_layers": [8]}), "names layer 8"),
            (json!({"interleave_moe_layer_step": 0}), "must be positive"),
            (json!({"layer_types": vec!["chunked_attention"; 8], "attention_chunk_size": null}), "not set"),
        ] {
            let e = parse(text(bad.clone())).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_wrapper_keeps_its_keys_and_ties_by_its_own() {
        let wrapped = json!({
            "model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"],
            "text_config": text(json!({})), "vision_config": {"hidden_size": 16},
            "tie_word_embeddings": true,
        });
        let c = parse(wrapped.clone()).unwrap();
        assert!(c.tie_word_embeddings, "transformers ties a wrapped model by the top-level key");
        let back: serde_json::Value = serde_json::from_str(&c.to_json_string()).unwrap();
        assert_eq!(back, wrapped);
        assert_eq!(
            c.tensor_name(crate::Role::Embed, crate::ExpertLayout::Fused),
            "language_model.model.embed_tokens.weight"
        );
        let e = parse(json!({"model_type": "llama4"})).unwrap_err().to_string();
        assert!(e.contains("text_config"), "{e}");
        let e = parse(json!({"model_type": "llama4", "text_config": {"model_type": "mixtral"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") || e.contains("must be llama4_text"), "{e}");
    }
}
