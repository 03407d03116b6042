//! The real `config.json` of the checkpoints moegrow is for (`fixtures/hub-configs/`, copied
//! from the hub; `SOURCES.md` says from where) parse into the architecture they describe, with
//! nothing refused that moegrow computes.

use moegrow_core::config::{Attention, Scoring};
use moegrow_core::rope::RopeScaling;
use moegrow_core::{Family, ModelConfig};

fn hub(name: &str) -> ModelConfig {
    let path = moegrow_integration_tests::fixtures_dir()
        .join("hub-configs")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    ModelConfig::from_json_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_hub_config_parses_and_is_computable() {
    let dir = moegrow_integration_tests::fixtures_dir().join("hub-configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            let cfg = hub(&name);
            assert!(
                cfg.check_computable().is_ok(),
                "{name}: {:?}",
                cfg.not_computed
            );
            n += 1;
        }
    }
    assert!(n >= 7, "{n} hub configs");
}

#[test]
fn deepseek_family_configs_as_the_hub_ships_them() {
    for name in ["DeepSeek-V3", "DeepSeek-R1", "Kimi-K2-Instruct"] {
        let c = hub(name);
        assert_eq!(c.family, Family::DeepseekV3, "{name}");
        assert_eq!(c.num_layers, 61, "{name}");
        assert_eq!(c.moe.router.scoring, Scoring::Sigmoid);
        assert!(matches!(c.rope.scaling, RopeScaling::Yarn { .. }), "{name}");
        assert_eq!(c.rope.attention_factor(), 1.0, "{name}: mscale = mscale_all_dim");
        assert!(c.rope.mla_softmax_factor() > 1.8, "{name}");
        assert!(c.raw.contains_key("quantization_config"), "{name} ships FP8");
    }
    assert_eq!(hub("DeepSeek-V3").mtp_layers, 1);
    assert_eq!(hub("DeepSeek-V3").moe.num_experts, 256);
    assert_eq!(hub("Kimi-K2-Instruct").moe.num_experts, 384);
    assert_eq!(hub("Kimi-K2-Instruct").rope.theta, 50000.0);
    let lite = hub("DeepSeek-V2-Lite");
    assert_eq!(lite.family, Family::DeepseekV2);
    let Attention::Mla(m) = &lite.attention else {
        panic!("MLA")
    };
    assert_eq!((m.q_lora_rank, m.kv_lora_rank), (None, 512));
    assert_eq!(lite.moe.num_experts, 64);
}

#[test]
fn standard_attention_hub_configs() {
    let q = hub("Qwen3-30B-A3B");
    assert_eq!((q.family, q.moe.num_experts, q.moe.top_k), (Family::Qwen3Moe, 128, 8));
    assert_eq!((q.num_heads, q.num_kv_heads, q.head_dim), (32, 4, 128));
    let m = hub("Mixtral-8x7B-v0.1");
    assert_eq!((m.family, m.moe.num_experts, m.rope.theta), (Family::Mixtral, 8, 1e6));
    let o = hub("OLMoE-1B-7B-0924");
    assert_eq!((o.family, o.moe.num_experts), (Family::Olmoe, 64));
}

/// GLM-4.5-Air: half of each 128-wide head rotated, q/k/v biases, no q/k norm, DeepSeek-V3's
/// routing without groups, one shared expert, the first layer dense, one MTP block.
#[test]
fn glm_hub_config() {
    use moegrow_core::config::{MlpKind, QkNorm};
    let g = hub("GLM-4.5-Air");
    assert_eq!(g.family, Family::Glm4Moe);
    assert_eq!((g.num_heads, g.num_kv_heads, g.head_dim, g.rotary_dim), (96, 8, 128, 64));
    let Attention::Standard { qkv_bias, o_bias, qk_norm, .. } = g.attention else {
        panic!("GQA")
    };
    assert_eq!((qkv_bias, o_bias, qk_norm), (true, false, QkNorm::None));
    let r = &g.moe.router;
    assert_eq!((r.scoring, r.normalize, r.correction_bias), (Scoring::Sigmoid, true, true));
    assert_eq!((g.moe.num_experts, g.moe.top_k, g.moe.intermediate), (128, 8, 1408));
    assert_eq!(g.moe.shared.as_ref().unwrap().intermediate, 1408);
    assert_eq!(g.mlp[0], MlpKind::Dense);
    assert!(g.mlp[1..].iter().all(|k| *k == MlpKind::Moe));
    assert_eq!((g.mtp_layers, g.rms_norm_eps, g.rope.theta), (1, 1e-5, 1e6));
    // The factor from rope_parameters wins over the top-level key, as in transformers 5.
    let mut raw = g.raw.clone();
    raw.insert(
        "rope_parameters".into(),
        serde_json::json!({"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.25}),
    );
    let q = ModelConfig::from_json(serde_json::Value::Object(raw.clone())).unwrap();
    assert_eq!(q.rotary_dim, 32);
    raw.insert("partial_rotary_factor".into(), serde_json::json!(0.29));
    raw.remove("rope_parameters");
    let err = ModelConfig::from_json(serde_json::Value::Object(raw)).unwrap_err().to_string();
    assert!(err.contains("37 rotary dimensions"), "{err}");
}

/// DeepSeek-V3.2: V3 plus the sparse-attention indexer (64 heads of 128, top 2048 keys), FP8
/// with power-of-two (`ue8m0`) block scales; forward passes longer than `index_topk` are refused
/// (moegrow computes dense attention, which is the indexer's result only up to that length).
#[test]
fn deepseek_v32_hub_config() {
    use moegrow_core::config::{IndexerConfig, MlpKind};
    let c = hub("DeepSeek-V3.2");
    assert_eq!(c.family, Family::DeepseekV32);
    let Attention::Mla(m) = &c.attention else { panic!("MLA") };
    assert_eq!(m.indexer, Some(IndexerConfig { heads: 64, head_dim: 128, topk: 2048 }));
    assert!(m.rope_interleave && m.q_lora_rank == Some(1536));
    assert_eq!(c.mlp[..4], [MlpKind::Dense, MlpKind::Dense, MlpKind::Dense, MlpKind::Moe]);
    let q = c.quant.as_ref().unwrap();
    assert!(q.pow2_scales && q.block == [128, 128]);
    assert_eq!(c.mtp_layers, 1);
    assert!(c.check_length(2048).is_ok());
    let err = c.check_length(2049).unwrap_err().to_string();
    assert!(err.contains("index_topk") && err.contains("2048"), "{err}");
    // transformers 5 spells the dense/MoE pattern as `mlp_layer_types`, which wins.
    let mut raw = c.raw.clone();
    let mut types = vec![serde_json::json!("sparse"); 61];
    types[5] = "dense".into();
    raw.insert("mlp_layer_types".into(), types.into());
    let t = ModelConfig::from_json(serde_json::Value::Object(raw)).unwrap();
    assert_eq!((t.mlp[0], t.mlp[5]), (MlpKind::Moe, MlpKind::Dense));
}

/// MiniMax-M2.5: `rotary_dim` 64 of 128, q/k RMSNorm over the whole projection, sigmoid routing
/// with the correction bias stored on the MoE block, always renormalised, 256 experts, top-8.
#[test]
fn minimax_hub_config() {
    use moegrow_core::config::QkNorm;
    use moegrow_core::schema::layout::disk_tensors;
    let c = hub("MiniMax-M2.5");
    assert_eq!(c.family, Family::MinimaxM2);
    assert_eq!((c.head_dim, c.rotary_dim, c.rope.theta), (128, 64, 5e6));
    let Attention::Standard { qk_norm, qkv_bias, .. } = c.attention else { panic!("GQA") };
    assert_eq!((qk_norm, qkv_bias), (QkNorm::FullWidth, false));
    let r = &c.moe.router;
    assert_eq!((r.scoring, r.normalize, r.correction_bias, r.routed_scaling_factor), (Scoring::Sigmoid, true, true, 1.0));
    assert_eq!((c.moe.num_experts, c.moe.top_k, c.moe.intermediate), (256, 8, 1536));
    assert!(c.moe.shared.is_none() && c.mlp.len() == 62);
    let names: Vec<String> = disk_tensors(&c, moegrow_core::ExpertLayout::PerExpert)
        .into_iter()
        .filter(|t| t.name.starts_with("model.layers.0."))
        .map(|t| t.name)
        .collect();
    for want in [
        "model.layers.0.block_sparse_moe.e_score_correction_bias",
        "model.layers.0.block_sparse_moe.gate.weight",
        "model.layers.0.block_sparse_moe.experts.255.w3.weight",
        "model.layers.0.self_attn.q_norm.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

/// Llama-4 Scout and Maverick as the hub ships them: the multimodal `llama4` wrapper around a
/// `llama4_text` config whose `no_rope_layers` and `moe_layers` are left to their defaults.
#[test]
fn llama4_hub_configs() {
    use moegrow_core::config::{MlpKind, QkNorm};
    let scout = hub("Llama-4-Scout-17B-16E-Instruct");
    let maverick = hub("Llama-4-Maverick-17B-128E-Instruct");
    for c in [&scout, &maverick] {
        assert_eq!(c.family, Family::Llama4);
        assert_eq!((c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim), (48, 5120, 40, 8, 128));
        assert!(c.wrapper.as_ref().is_some_and(|w| w.text_model == "language_model.model."));
        // Every fourth layer NoPE (no_rope_layer_interval 4); the rest RoPE and chunked.
        let nope: Vec<usize> = (0..48).filter(|&i| !c.rope_layers[i]).collect();
        assert_eq!(nope, (3..48).step_by(4).collect::<Vec<_>>());
        for i in 0..48 {
            assert_eq!(c.attention_chunk[i], c.rope_layers[i].then_some(8192), "layer {i}");
        }
        assert!(c.rope_interleave && c.expert_input_scaling && c.attn_temperature.is_some());
        assert_eq!(c.moe.router.scoring, Scoring::Sigmoid);
        assert!(!c.moe.router.normalize);
        assert_eq!(c.moe.top_k, 1);
        assert_eq!(c.moe.shared.as_ref().map(|s| s.intermediate), Some(8192));
        assert_eq!(c.dense_intermediate, 16384);
        assert!(!c.tie_word_embeddings);
    }
    assert_eq!(scout.moe.num_experts, 16);
    assert!(scout.mlp.iter().all(|k| *k == MlpKind::Moe));
    assert!(matches!(scout.attention, Attention::Standard { qk_norm: QkNorm::L2AfterRope, .. }));
    assert!(matches!(scout.rope.scaling, RopeScaling::Llama3 { .. }));
    assert_eq!(maverick.moe.num_experts, 128);
    assert_eq!(maverick.moe_layers().collect::<Vec<_>>(), (1..48).step_by(2).collect::<Vec<_>>());
    assert!(matches!(maverick.attention, Attention::Standard { qk_norm: QkNorm::None, .. }));
    assert!(matches!(maverick.rope.scaling, RopeScaling::Default));
}

/// Qwen3-Next as the hub ships it: the hybrid pattern given as `full_attention_interval` (no
/// `layer_types`), 512 experts top-10 with a gated shared expert, a quarter of each head rotated.
#[test]
fn qwen3_next_hub_config() {
    let c = hub("Qwen3-Next-80B-A3B-Instruct");
    assert_eq!(c.family, Family::Qwen3Next);
    let full: Vec<usize> = (0..c.num_layers).filter(|&i| !c.linear_layers[i]).collect();
    assert_eq!(full, (3..48).step_by(4).collect::<Vec<_>>());
    let la = c.linear_attention.unwrap();
    assert_eq!((la.key_heads, la.value_heads, la.key_head_dim, la.value_head_dim, la.conv_kernel), (16, 32, 128, 128, 4));
    assert_eq!((c.moe.num_experts, c.moe.top_k), (512, 10));
    assert!(c.moe.shared.as_ref().is_some_and(|s| s.gated && s.intermediate == 512));
    assert_eq!((c.head_dim, c.rotary_dim), (256, 64));
    assert!(c.zero_centered_norms && c.attn_output_gate && c.moe.router.normalize);
}

/// Qwen3.5-MoE as the hub ships it: the `qwen3_5_moe` wrapper around Qwen3-Next's layers with
/// split DeltaNet projections, an explicit `layer_types`, multimodal RoPE sections, one MTP
/// layer (carried: transformers ignores it).
#[test]
fn qwen3_5_hub_configs() {
    for (name, layers, experts) in [("Qwen3.5-35B-A3B", 40, 256), ("Qwen3.5-397B-A17B", 60, 512)] {
        let c = hub(name);
        assert_eq!(c.family, Family::Qwen35Moe, "{name}");
        assert_eq!((c.num_layers, c.moe.num_experts), (layers, experts), "{name}");
        assert!(c.wrapper.as_ref().is_some_and(|w| w.text_model == "model.language_model." && w.head == "lm_head.weight"));
        let full: Vec<usize> = (0..layers).filter(|&i| !c.linear_layers[i]).collect();
        assert_eq!(full, (3..layers).step_by(4).collect::<Vec<_>>(), "{name}");
        assert!(c.linear_attention.unwrap().split_projections && c.attn_output_gate && c.zero_centered_norms);
        assert_eq!(c.rotary_dim, c.head_dim / 4, "{name}");
        assert!(c.check_computable().is_ok(), "{name}: {:?}", c.not_computed);
    }
}

/// GLM-4.7-Flash as the hub ships it: DeepSeek-V3's MLA and routing (64 experts top-4, one
/// shared, × 1.8), layer 0 dense by `mlp_layer_types`' default, one MTP layer.
#[test]
fn glm_4_7_flash_hub_config() {
    let c = hub("GLM-4.7-Flash");
    assert_eq!(c.family, Family::Glm4MoeLite);
    assert_eq!((c.num_layers, c.moe.num_experts, c.moe.top_k, c.mtp_layers), (47, 64, 4, 1));
    assert_eq!(c.moe_layers().collect::<Vec<_>>(), (1..47).collect::<Vec<_>>());
    let Attention::Mla(m) = &c.attention else { panic!("MLA") };
    assert_eq!((m.q_lora_rank, m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim), (Some(768), 512, 192, 64, 256));
    assert!(m.rope_interleave);
    assert_eq!(c.moe.router.scoring, Scoring::Sigmoid);
    assert!(c.moe.router.correction_bias && c.moe.router.normalize);
    assert!((c.moe.router.routed_scaling_factor - 1.8).abs() < 1e-6);
}

/// Qwen3-30B-A3B-FP8's config: block-scaled fp8 `[128, 128]`, each layer's norms and router left
/// unquantised by name, the architecture Qwen3-30B-A3B's.
#[test]
fn qwen3_fp8_hub_config() {
    let c = hub("Qwen3-30B-A3B-FP8");
    assert_eq!(c.family, Family::Qwen3Moe);
    let q = c.quant.as_ref().expect("quantization_config");
    assert_eq!(q.block, [128, 128]);
    assert!(q.not_converted.iter().any(|m| m == "model.layers.47.mlp.gate"), "{:?}", q.not_converted);
    assert!(q.not_converted.iter().any(|m| m == "lm_head"));
    let plain = hub("Qwen3-30B-A3B");
    assert_eq!((c.num_layers, c.moe.num_experts, c.moe.top_k), (plain.num_layers, plain.moe.num_experts, plain.moe.top_k));
}

/// Kimi-K2.5's config: the multimodal `kimi_k25` wrapper around DeepSeek-V3 (`text_config`'s
/// `kimi_k2`), its routed experts compressed-tensors int4 in groups of 32, with attention, the
/// shared expert, the dense MLP and the head left in bf16 by the `ignore` patterns.
#[test]
fn kimi_k25_hub_config() {
    let c = hub("Kimi-K2.5");
    assert_eq!(c.family, Family::DeepseekV3);
    assert_eq!(c.raw["model_type"], "kimi_k2");
    assert!(c.wrapper.is_some());
    assert_eq!((c.num_layers, c.moe.num_experts, c.moe.top_k, c.mtp_layers), (61, 384, 8, 0));
    assert_eq!(c.moe_layers().collect::<Vec<_>>(), (1..61).collect::<Vec<_>>());
    let q = c.quant.as_ref().expect("quantization_config in text_config");
    assert_eq!((q.format, q.block), (moegrow_core::quant::QuantFormat::Int4, [1, 32]));
    assert!(matches!(c.rope.scaling, RopeScaling::Yarn { .. }));
    assert_eq!(c.rope.theta, 50000.0);
    let names = moegrow_core::schema::layout::disk_tensors(&c, moegrow_core::ExpertLayout::PerExpert);
    let quantised: Vec<&str> = names.iter().filter(|d| d.quantizable).map(|d| d.name.as_str()).collect();
    assert_eq!(quantised.len(), 60 * 384 * 3, "the routed experts only: {:?}", &quantised[..3]);
    assert!(quantised.iter().all(|n| n.starts_with("language_model.model.layers.") && n.contains(".mlp.experts.")));
    let whole = c.to_json();
    assert_eq!(whole["model_type"], "kimi_k25");
    assert_eq!(whole["text_config"]["quantization_config"]["format"], "pack-quantized");
}
