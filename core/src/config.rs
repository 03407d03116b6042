//! The architecture of a checkpoint, normalised across families.
//!
//! Every Hugging Face MoE family spells the same ideas differently in `config.json`
//! (`num_local_experts` vs `num_experts` vs `n_routed_experts`, `rope_theta` vs
//! `rope_parameters.rope_theta`, …). [`ModelConfig`] holds one spelling of each idea, parsed by
//! the family modules in [`crate::families`], plus the raw JSON so that writing a checkpoint back
//! keeps every key we do not interpret.

use crate::error::{Error, Result};
use crate::families::Family;
use serde_json::{Map, Value};

/// How attention is parameterised.
#[derive(Debug, Clone, PartialEq)]
pub enum Attention {
    /// Multi-head / grouped-query attention with separate q, k, v, o projections.
    Standard {
        /// q/k/v projections carry biases (Qwen2-MoE).
        qkv_bias: bool,
        /// The output projection carries a bias.
        o_bias: bool,
        qk_norm: QkNorm,
        /// OLMoE's `clip_qkv`: q, k and v are clamped to ±clip after projection (and norm).
        clip_qkv: Option<f32>,
    },
    /// DeepSeek's multi-head latent attention.
    Mla(MlaConfig),
}

/// Where q/k normalisation sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// RMSNorm over each head's `head_dim` slice (Qwen3-MoE).
    PerHead,
    /// RMSNorm over the whole projection (`heads · head_dim`) before splitting into heads (OLMoE).
    FullWidth,
    /// Llama-4: a weightless L2 norm (`x / sqrt(mean(x²) + eps)`) of each head *after* RoPE, on
    /// the RoPE layers only.
    L2AfterRope,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MlaConfig {
    /// `None`: a single `q_proj`; `Some(r)`: `q_a_proj` (H→r), `q_a_layernorm`, `q_b_proj`.
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// Rotate pairs `(2i, 2i+1)` (DeepSeek-V2 always; V3 when `rope_interleave`), rather than
    /// `(i, i + d/2)`.
    pub rope_interleave: bool,
    /// q_a_proj, kv_a_proj_with_mqa and o_proj carry biases (`attention_bias`).
    pub bias: bool,
    /// DeepSeek-V3.2's sparse-attention indexer.
    pub indexer: Option<IndexerConfig>,
}

/// DeepSeek-V3.2's indexer: `index_n_heads` heads of `index_head_dim`, keeping the
/// `index_topk` best keys per query.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexerConfig {
    pub heads: usize,
    pub head_dim: usize,
    pub topk: usize,
}

impl MlaConfig {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

/// Which feed-forward block a layer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    Dense,
    Moe,
}

/// How router probabilities are formed from logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    Softmax,
    Sigmoid,
}

/// How a group of experts is scored in group-limited routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupScore {
    /// DeepSeek-V2: the best expert's probability.
    Max,
    /// DeepSeek-V3: the sum of the two best (bias-corrected) scores.
    SumTop2,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupLimit {
    pub n_group: usize,
    pub topk_group: usize,
    pub score: GroupScore,
}

/// Everything that decides which experts a token goes to and with what weight.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub scoring: Scoring,
    /// Divide the chosen weights by their sum.
    pub normalize: bool,
    /// Multiply the chosen weights by this after normalising (DeepSeek); 1.0 elsewhere.
    pub routed_scaling_factor: f32,
    pub group_limit: Option<GroupLimit>,
    /// A per-expert bias added for *selection* only (DeepSeek-V3 `e_score_correction_bias`).
    pub correction_bias: bool,
}

impl RouterConfig {
    /// Softmax over all experts, then top-k (Mixtral, Qwen, OLMoE).
    pub fn softmax(normalize: bool) -> RouterConfig {
        RouterConfig {
            scoring: Scoring::Softmax,
            normalize,
            routed_scaling_factor: 1.0,
            group_limit: None,
            correction_bias: false,
        }
    }

    /// The routing formula in words, for `inspect`.
    pub fn describe(&self, top_k: usize) -> String {
        let mut s = match self.scoring {
            Scoring::Softmax => "softmax over all experts".to_string(),
            Scoring::Sigmoid => "sigmoid per expert".to_string(),
        };
        if self.correction_bias {
            s.push_str(", selection on score + per-expert correction bias");
        }
        if let Some(g) = self.group_limit {
            let how = match g.score {
                GroupScore::Max => "best score",
                GroupScore::SumTop2 => "sum of its top-2 scores",
            };
            s.push_str(&format!(
                ", group-limited: keep {} of {} groups (group score = {how})",
                g.topk_group, g.n_group
            ));
        }
        s.push_str(&format!(", top-{top_k}"));
        if self.normalize {
            s.push_str(", renormalised to sum 1");
        } else {
            s.push_str(", not renormalised");
        }
        if self.routed_scaling_factor != 1.0 {
            s.push_str(&format!(", × {}", self.routed_scaling_factor));
        }
        s
    }
}

/// Shared (always-on) experts next to the routed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedExperts {
    /// Intermediate size of the (single, merged) shared MLP.
    pub intermediate: usize,
    /// Qwen2-MoE scales the shared output by `sigmoid(shared_expert_gate · x)`.
    pub gated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: usize,
    pub top_k: usize,
    /// Intermediate size of each routed expert.
    pub intermediate: usize,
    pub router: RouterConfig,
    pub shared: Option<SharedExperts>,
}

/// A checkpoint's architecture in one spelling, plus the raw `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    /// Per-head dimension of q/k/v for standard attention (unused by MLA).
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    /// RoPE base (also in `rope`).
    pub rope_theta: f32,
    /// RoPE base and scaling, as transformers reads them.
    pub rope: crate::rope::RopeConfig,
    /// Dimensions of each head that RoPE rotates (standard attention; MLA rotates its
    /// `qk_rope_head_dim` part).
    pub rotary_dim: usize,
    pub tie_word_embeddings: bool,
    pub attention: Attention,
    /// Dense or MoE, per layer.
    pub mlp: Vec<MlpKind>,
    /// Intermediate size of the dense MLP layers.
    pub dense_intermediate: usize,
    pub moe: MoeConfig,
    /// Sliding-window size per layer (`None`: full causal attention).
    pub sliding_window: Vec<Option<usize>>,
    /// Config settings that change the math and that moegrow does not compute, in words with
    /// the key named. Reading, growing and converting carry them through verbatim; the commands
    /// that compute (`forward`, `--verify`, `train`, the router view) refuse them
    /// ([`ModelConfig::check_computable`]).
    pub not_computed: Vec<String>,
    /// Block-scaled FP8 storage (`quantization_config`), if the checkpoint uses it.
    pub quant: Option<crate::quant::Fp8Block>,
    /// Multi-token-prediction blocks stored after the decoder layers (DeepSeek-V3's
    /// `num_nextn_predict_layers`). A checkpoint stores all of them or none: transformers drops
    /// them when it saves, so [`crate::Checkpoint`] sets this to 0 when they are absent.
    pub mtp_layers: usize,
    /// A learned per-head logit that joins every attention softmax (gpt-oss's `sinks`).
    pub attention_sinks: bool,
    /// The routed experts carry biases (`gate_up_proj_bias [E, 2I]`, `down_proj_bias [E, H]`).
    pub expert_bias: bool,
    /// The router adds a bias to its logits (gpt-oss's `router.bias`); unlike DeepSeek's
    /// correction bias it changes the weights, not only the selection.
    pub router_logit_bias: bool,
    /// The routed experts' activation.
    pub expert_act: ExpertAct,
    /// Standard attention rotates the pairs `(2i, 2i+1)` (Llama-4's complex RoPE) rather than
    /// `(i, i + d/2)`.
    pub rope_interleave: bool,
    /// Per layer: whether attention applies RoPE (Llama-4's NoPE layers do not).
    pub rope_layers: Vec<bool>,
    /// Per layer: the chunk of chunked attention (Llama-4: a query sees the earlier keys of its
    /// own `attention_chunk_size` block only), `None` for causal attention over everything.
    pub attention_chunk: Vec<Option<usize>>,
    /// Llama-4's attention temperature on the NoPE layers: queries at position `p` are scaled
    /// by `1 + attn_scale · ln(1 + ⌊(p + 1) / floor_scale⌋)`.
    pub attn_temperature: Option<AttnTemperature>,
    /// The routing weight scales the routed expert's *input* (Llama-4), not its output.
    pub expert_input_scaling: bool,
    /// Qwen3-Next's Gated DeltaNet (linear attention) sizes, when the model has such layers.
    pub linear_attention: Option<LinearAttention>,
    /// Per layer: Gated DeltaNet instead of softmax attention.
    pub linear_layers: Vec<bool>,
    /// Every RMSNorm scales by `1 + w` (Qwen3-Next's zero-centred weights), except the
    /// DeltaNet's gated output norm.
    pub zero_centered_norms: bool,
    /// Softmax attention's output is multiplied by `sigmoid(gate)`, the gate a second half of
    /// each head's `q_proj` output (Qwen3-Next).
    pub attn_output_gate: bool,
    /// The multimodal wrapper around the language model, when the checkpoint has one.
    pub wrapper: Option<Wrapper>,
    /// Tensors outside the language model (a vision tower, its projector), carried verbatim by
    /// every operation; filled from the checkpoint's names by [`crate::Checkpoint`].
    pub carried: Vec<Carried>,
    /// `config.json` as read (the language model's `text_config` when wrapped), for keys we do
    /// not interpret.
    pub raw: Map<String, Value>,
}

/// Qwen3-Next's Gated DeltaNet: `key_heads` query/key heads of `key_head_dim` and `value_heads`
/// value heads of `value_head_dim` (each key head serves `value_heads / key_heads` of them), a
/// causal depthwise convolution of `conv_kernel` taps over q, k and v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearAttention {
    pub key_heads: usize,
    pub value_heads: usize,
    pub key_head_dim: usize,
    pub value_head_dim: usize,
    pub conv_kernel: usize,
    /// Qwen3.5's projections: `in_proj_qkv` (q, k, v in order), `in_proj_z`, `in_proj_b` and
    /// `in_proj_a`, rather than Qwen3-Next's `in_proj_qkvz` and `in_proj_ba` grouped by key head.
    pub split_projections: bool,
}

impl LinearAttention {
    pub fn key_dim(&self) -> usize {
        self.key_heads * self.key_head_dim
    }
    pub fn value_dim(&self) -> usize {
        self.value_heads * self.value_head_dim
    }
    /// Channels of the convolution: q, k and v side by side.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
}

/// Llama-4's attention temperature tuning (see [`ModelConfig::attn_temperature`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnTemperature {
    pub floor_scale: f32,
    pub attn_scale: f32,
}

impl AttnTemperature {
    /// The query scale at absolute position `pos`.
    pub fn at(self, pos: usize) -> f32 {
        1.0 + self.attn_scale * (((pos as f32 + 1.0) / self.floor_scale).floor()).ln_1p()
    }
}

/// A multimodal checkpoint whose language model is one of the families: `config.json` is the
/// wrapper's (`model_type: llama4`) with the language model's config under `text_config`, and
/// the language model's tensors carry a prefix (`language_model.`). Growth edits the language
/// model; the wrapper's other keys and the towers' tensors are carried verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrapper {
    /// The top-level config, its `text_config` replaced by [`ModelConfig::raw`] when written.
    pub outer: Map<String, Value>,
    /// Where the language model's `model.*` tensors sit (`language_model.model.` for
    /// Llama-4, `model.language_model.` for Qwen3.5).
    pub text_model: &'static str,
    /// The head's name (`language_model.lm_head.weight`, or `lm_head.weight`).
    pub head: &'static str,
    /// Name prefixes of the tensors outside the language model.
    pub towers: &'static [&'static str],
}

/// A tensor outside the language model, carried verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The gated activation of the routed experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpertAct {
    /// `silu(gate) · up`.
    Silu,
    /// gpt-oss: `gate = min(g, limit)`, `up = clamp(u, −limit, limit)`,
    /// `(up + 1) · gate · σ(α · gate)`.
    ClampedSwiglu { alpha: f32, limit: f32 },
}

impl ExpertAct {
    /// The activation of one gate and up value.
    pub fn apply(self, g: f32, u: f32) -> f32 {
        match self {
            ExpertAct::Silu => g / (1.0 + (-g).exp()) * u,
            ExpertAct::ClampedSwiglu { alpha, limit } => {
                let g = g.min(limit);
                let u = u.clamp(-limit, limit);
                (u + 1.0) * g / (1.0 + (-alpha * g).exp())
            }
        }
    }
}

impl ModelConfig {
    /// Parse a `config.json` document; the family comes from `model_type`.
    pub fn from_json_str(text: &str) -> Result<ModelConfig> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("not valid JSON: {e}")))?;
        Self::from_json(value)
    }

    pub fn from_json(value: Value) -> Result<ModelConfig> {
        let Value::Object(raw) = value else {
            return Err(Error::config("expected a JSON object at the top level"));
        };
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::config("missing `model_type`: cannot tell the model family"))?;
        if let Some(w) = crate::families::wrapper(model_type) {
            let text = match raw.get("text_config") {
                Some(Value::Object(t)) => t.clone(),
                _ => {
                    return Err(Error::config(format!(
                        "`model_type` {model_type} wraps its language model's config in `text_config`, which is missing"
                    )))
                }
            };
            let mut cfg = Self::from_json(Value::Object(text))?;
            if cfg.family != w.text_family {
                return Err(Error::config(format!(
                    "a {model_type} config's `text_config` must be {}, found {}",
                    w.text_family.model_type(),
                    cfg.family.model_type()
                )));
            }
            // A wrapper's own `quantization_config` (where a loaded config puts it) stands for
            // the language model when its `text_config` has none.
            if cfg.quant.is_none() {
                cfg.quant = crate::quant::Fp8Block::parse(&raw)?;
            }
            // transformers ties the head by the top-level key of a wrapped model.
            cfg.tie_word_embeddings = RawConfig(&raw).bool_or("tie_word_embeddings", false)?;
            cfg.wrapper = Some(Wrapper {
                outer: raw,
                text_model: w.text_model,
                head: w.head,
                towers: w.towers,
            });
            return Ok(cfg);
        }
        let family = Family::from_model_type(model_type)?;
        let cfg = family.parse_config(RawConfig(&raw))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config a changed language-model config (`raw`) gives, keeping what `config.json`
    /// alone cannot say: the wrapper, the carried tensors and the multi-token-prediction blocks
    /// the checkpoint stores.
    pub fn with_raw(&self, raw: Map<String, Value>) -> Result<ModelConfig> {
        let mut cfg = Self::from_json(Value::Object(raw))?;
        if let Some(w) = &self.wrapper {
            cfg.tie_word_embeddings = self.tie_word_embeddings;
            cfg.wrapper = Some(w.clone());
        }
        cfg.carried = self.carried.clone();
        cfg.mtp_layers = self.mtp_layers;
        Ok(cfg)
    }

    /// The whole `config.json`: the wrapper's, with the language model's config in it, or the
    /// language model's.
    pub fn to_json(&self) -> Map<String, Value> {
        match &self.wrapper {
            Some(w) => {
                let mut outer = w.outer.clone();
                outer.insert("text_config".into(), Value::Object(self.raw.clone()));
                outer
            }
            None => self.raw.clone(),
        }
    }

    /// The `config.json` text to write next to the tensors.
    pub fn to_json_string(&self) -> String {
        let mut s = serde_json::to_string_pretty(&Value::Object(self.to_json()))
            .expect("a JSON map always serialises");
        s.push('\n');
        s
    }

    /// A tensor's name in `layout`: the family's, behind the wrapper's prefix, or a carried
    /// tensor's own.
    pub fn tensor_name(&self, role: crate::roles::Role, layout: crate::roles::ExpertLayout) -> String {
        if let crate::roles::Role::Carried(i) = role {
            return self
                .carried
                .get(i)
                .map_or_else(|| format!("<carried tensor {i}>"), |c| c.name.clone());
        }
        let name = self.family.tensor_name(role, layout, self.num_layers);
        match &self.wrapper {
            Some(w) => match name.strip_prefix("model.") {
                Some(rest) => format!("{}{rest}", w.text_model),
                None if name == "lm_head.weight" => w.head.to_string(),
                None => name,
            },
            None => name,
        }
    }

    pub fn moe_layers(&self) -> impl Iterator<Item = usize> + '_ {
        self.mlp
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == MlpKind::Moe)
            .map(|(i, _)| i)
    }

    pub fn is_moe(&self, layer: usize) -> bool {
        self.mlp.get(layer) == Some(&MlpKind::Moe)
    }

    /// The softmax scale of attention: `head_dim^-0.5`, and for MLA `qk_head_dim^-0.5` times
    /// DeepSeek's `mscale²` when its RoPE is scaled ([`crate::rope::RopeConfig::mla_softmax_factor`]).
    pub fn attention_scale(&self) -> f32 {
        match &self.attention {
            Attention::Standard { .. } => (self.head_dim as f32).powf(-0.5),
            Attention::Mla(m) => {
                ((m.qk_head_dim() as f64).powf(-0.5) * self.rope.mla_softmax_factor()) as f32
            }
        }
    }

    /// The longest input moegrow's forward pass computes exactly: DeepSeek-V3.2's indexer lets
    /// each query attend to its `index_topk` best keys, which up to that many tokens are all
    /// of them (dense attention, what moegrow computes); beyond it moegrow would differ.
    pub fn max_exact_tokens(&self) -> Option<usize> {
        match &self.attention {
            Attention::Mla(m) => m.indexer.as_ref().map(|i| i.topk),
            Attention::Standard { .. } => None,
        }
    }

    /// Refuse a forward pass over `tokens` positions that moegrow would not compute exactly.
    pub fn check_length(&self, tokens: usize) -> Result<()> {
        match self.max_exact_tokens() {
            Some(max) if tokens > max => Err(Error::Invalid(format!(
                "{tokens} tokens: {}'s sparse-attention indexer keeps the best `index_topk` = {max} keys per query, and moegrow computes dense attention, which equals it only up to {max} tokens",
                self.family.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Refuse to compute a model whose config asks for math moegrow does not implement, naming
    /// every such key.
    pub fn check_computable(&self) -> Result<()> {
        if self.not_computed.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!(
            "moegrow cannot compute this {} model: {}",
            self.family.name(),
            self.not_computed.join("; ")
        )))
    }

    /// The feed-forward kind of a layer slot (multi-token-prediction layers are MoE layers,
    /// as the layers they follow).
    pub fn slot_is_moe(&self, slot: crate::roles::LayerSlot) -> bool {
        match slot {
            crate::roles::LayerSlot::Decoder(l) => self.is_moe(l),
            crate::roles::LayerSlot::Mtp(_) => true,
        }
    }

    fn validate(&self) -> Result<()> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                return Err(Error::config(format!("`{k}` must be positive")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::config(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.mlp.len() != self.num_layers
            || self.sliding_window.len() != self.num_layers
            || self.rope_layers.len() != self.num_layers
            || self.attention_chunk.len() != self.num_layers
            || self.linear_layers.len() != self.num_layers
        {
            return Err(Error::config(
                "per-layer lists disagree with num_hidden_layers",
            ));
        }
        if self.mlp.contains(&MlpKind::Moe) {
            let m = &self.moe;
            if m.num_experts == 0 || m.top_k == 0 || m.top_k > m.num_experts {
                return Err(Error::config(format!(
                    "need 0 < num_experts_per_tok ({}) <= number of experts ({})",
                    m.top_k, m.num_experts
                )));
            }
            if let Some(g) = m.router.group_limit {
                if g.n_group == 0
                    || !m.num_experts.is_multiple_of(g.n_group)
                    || g.topk_group > g.n_group
                {
                    return Err(Error::config(format!(
                        "group-limited routing needs n_group ({}) dividing the expert count ({}) and topk_group ({}) <= n_group",
                        g.n_group, m.num_experts, g.topk_group
                    )));
                }
                if g.topk_group * (m.num_experts / g.n_group) < m.top_k {
                    return Err(Error::config(
                        "topk_group groups hold fewer experts than num_experts_per_tok",
                    ));
                }
            }
        }
        if let Attention::Standard {
            qk_norm: QkNorm::PerHead,
            ..
        } = self.attention
        {
            if self.head_dim == 0 {
                return Err(Error::config("head_dim must be positive"));
            }
        }
        if let Attention::Mla(m) = &self.attention {
            if m.qk_rope_head_dim % 2 != 0 {
                return Err(Error::config("qk_rope_head_dim must be even"));
            }
        } else if !self.head_dim.is_multiple_of(2) {
            return Err(Error::config("head_dim must be even for RoPE"));
        }
        Ok(())
    }
}

/// Typed accessors over the raw JSON, with errors that name the key.
#[derive(Clone, Copy)]
pub(crate) struct RawConfig<'a>(pub &'a Map<String, Value>);

impl<'a> RawConfig<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| Error::config(format!("missing `{key}`")))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                Error::config(format!("`{key}` must be a non-negative integer, found {v}"))
            }),
        }
    }

    /// The first of several spellings that is present.
    pub fn usize_any(&self, keys: &[&str]) -> Result<usize> {
        for k in keys {
            if let Some(v) = self.opt_usize(k)? {
                return Ok(v);
            }
        }
        Err(Error::config(format!("missing `{}`", keys.join("` or `"))))
    }

    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| Error::config(format!("`{key}` must be a number, found {v}"))),
        }
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| Error::config(format!("`{key}` must be a number, found {v}"))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| Error::config(format!("`{key}` must be true or false, found {v}"))),
        }
    }

    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| Error::config(format!("`{key}` must be a string, found {v}"))),
        }
    }

    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64().map(|n| n as usize).ok_or_else(|| {
                        Error::config(format!("`{key}` must list integers, found {v}"))
                    })
                })
                .collect(),
            Some(v) => Err(Error::config(format!("`{key}` must be a list, found {v}"))),
        }
    }
}
