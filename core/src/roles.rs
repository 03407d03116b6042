//! What each tensor of a checkpoint *is*, independent of how a family spells its name.
//!
//! Growth, analysis, the GPU runtime and training all address tensors by [`Role`]; only the
//! family modules know the Hugging Face names, and only [`crate::schema`] decides which roles a
//! model has and what shape each one is.

/// One of the three matrices of a SwiGLU feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 3] = [Proj::Gate, Proj::Up, Proj::Down];
}

/// Attention tensors of standard (GQA) and latent (MLA) attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttnRole {
    Q,
    QBias,
    K,
    KBias,
    V,
    VBias,
    O,
    OBias,
    QNorm,
    KNorm,
    /// MLA: low-rank query down-projection, its bias and norm, and the up-projection.
    QA,
    QABias,
    QANorm,
    QB,
    /// MLA: joint KV latent plus shared RoPE key, its bias and norm, and the KV up-projection.
    KvA,
    KvABias,
    KvANorm,
    KvB,
    /// DeepSeek-V3.2's sparse-attention indexer: its query up-projection (from the q latent),
    /// key projection, key LayerNorm (weight and bias) and per-head score weights.
    IndexerQB,
    IndexerK,
    IndexerKNorm,
    IndexerKNormBias,
    IndexerWeights,
    /// gpt-oss's per-head attention sink logits `[heads]`.
    Sinks,
    /// Qwen3-Next's Gated DeltaNet (`linear_attn.*`): the q/k/v/z and b/a input projections,
    /// the depthwise convolution, the decay's `dt_bias` and `A_log`, the gated output norm and
    /// the output projection.
    LinQkvz,
    LinBa,
    /// Qwen3.5's split DeltaNet projections: q/k/v together, z, b and a apart.
    LinQkv,
    LinZ,
    LinB,
    LinA,
    LinConv,
    LinDtBias,
    LinALog,
    LinNorm,
    LinOut,
}

/// Tensors that belong to one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerRole {
    InputNorm,
    Attn(AttnRole),
    PostAttnNorm,
    Router,
    /// DeepSeek-V3 `e_score_correction_bias` (used for expert selection only).
    RouterBias,
    /// gpt-oss's router bias `[E]`, added to the logits.
    RouterLogitBias,
    /// One matrix of one routed expert: a tensor of its own in the per-expert layout, a slice
    /// of the stacked tensors below otherwise.
    Expert(usize, Proj),
    /// All routed experts' gate and up matrices, `[E, 2I, H]` (gate rows then up rows per
    /// expert): the schema's leaf, and the fused layout's tensor.
    ExpertsGateUp,
    /// All routed experts' down matrices, `[E, H, I]`.
    ExpertsDown,
    /// gpt-oss: all routed experts' gate and up biases `[E, 2I]` (gate then up per expert).
    ExpertsGateUpBias,
    /// gpt-oss: all routed experts' down biases `[E, H]`.
    ExpertsDownBias,
    SharedExpert(Proj),
    /// Qwen2-MoE's `[1, H]` sigmoid gate on the shared expert.
    SharedExpertGate,
    DenseMlp(Proj),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Embed,
    Layer(usize, LayerRole),
    FinalNorm,
    LmHead,
    /// A tensor of multi-token-prediction block `i` (stored as layer `num_hidden_layers + i`).
    Mtp(usize, MtpRole),
    /// A tensor outside the language model (a vision tower's), `ModelConfig::carried[i]`,
    /// carried verbatim.
    Carried(usize),
}

/// Tensors of a multi-token-prediction block: its own embedding, norms, projection and head
/// around a full decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MtpRole {
    Embed,
    ENorm,
    HNorm,
    EhProj,
    Layer(LayerRole),
    HeadNorm,
    Head,
}

/// Where a decoder layer's tensors sit: one of the model's layers, or the layer inside a
/// multi-token-prediction block. Growth and the per-layer statistics treat both alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerSlot {
    Decoder(usize),
    Mtp(usize),
}

impl LayerSlot {
    pub fn role(self, r: LayerRole) -> Role {
        match self {
            LayerSlot::Decoder(i) => Role::Layer(i, r),
            LayerSlot::Mtp(i) => Role::Mtp(i, MtpRole::Layer(r)),
        }
    }
}

impl Role {
    /// The layer a tensor belongs to and its role there, for tensors of a decoder layer.
    pub fn layer_part(self) -> Option<(LayerSlot, LayerRole)> {
        match self {
            Role::Layer(i, r) => Some((LayerSlot::Decoder(i), r)),
            Role::Mtp(i, MtpRole::Layer(r)) => Some((LayerSlot::Mtp(i), r)),
            _ => None,
        }
    }
}

/// How routed experts are stored on disk. transformers 5 reads both; checkpoints in the wild
/// come in both, and we write back what we read unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExpertLayout {
    /// `experts.{e}.{gate,up,down}` (or Mixtral's `w1/w3/w2`), one tensor per matrix.
    PerExpert,
    /// `experts.gate_up_proj [E,2I,H]` and `experts.down_proj [E,H,I]`.
    Fused,
}

impl ExpertLayout {
    pub fn name(self) -> &'static str {
        match self {
            ExpertLayout::PerExpert => "per-expert",
            ExpertLayout::Fused => "fused",
        }
    }
}

/// True for the routed-expert tensors (what width growth duplicates and what only `top_k / E`
/// of activates per token).
pub fn is_routed_expert(role: Role) -> bool {
    matches!(
        role.layer_part(),
        Some((
            _,
            LayerRole::Expert(..) | LayerRole::ExpertsGateUp | LayerRole::ExpertsDown
        ))
    )
}
