//! The schema on disk: every tensor's Hugging Face name in each expert layout, and the mapping
//! between the schema's stacked experts and the per-expert layout's one tensor per matrix.
//!
//! This is the only module that knows how the two layouts relate. The fused layout stores each
//! stacked leaf as it is (`gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`); the per-expert
//! layout stores expert `e`'s gate, up and down matrices as three tensors, which are slices of
//! those leaves: gate is rows `0..I` of `gate_up[e]`, up rows `I..2I`, down is `down[e]`. The
//! loader, every writer (checkpoint export, growth, training output, initialisation) and the
//! readers of single experts all go through [`disk_tensors`], [`part_location`] and
//! [`assemble`].

use super::{schema, Kind, Spec, TensorSource};
use crate::checkpoint::{OutputTensor, Pieces};
use crate::config::ModelConfig;
use crate::dtype::{convert, encode_f32, DType};
use crate::error::{Error, Result};
use crate::families::Family;
use crate::quant::{quantize, scale_name, scale_shape, BlockQuant, QuantFormat};
use crate::roles::{ExpertLayout, LayerRole, LayerSlot, Proj, Role};
use std::borrow::Cow;
use std::ops::Range;

/// One tensor as a checkpoint in a given layout stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskTensor {
    pub name: String,
    /// The tensor's role: the schema leaf's, or for a per-expert matrix `Expert(e, proj)`.
    pub role: Role,
    pub shape: Vec<usize>,
    pub kind: Kind,
    /// May be stored block-quantised (float8 plus `{name}_scale_inv`): a quantisable schema
    /// leaf that the config's `modules_to_not_convert` does not name.
    pub quantizable: bool,
}

/// Every tensor a checkpoint with this config stores in `layout`, in canonical order (the
/// schema's, with each layer's experts expert by expert in the per-expert layout).
pub fn disk_tensors(cfg: &ModelConfig, layout: ExpertLayout) -> Vec<DiskTensor> {
    let mut out = Vec::new();
    let name = |role| cfg.tensor_name(role, layout);
    let ignored = cfg.quant.as_ref().map(|q| q.ignored());
    // compressed-tensors quantises `Linear` modules: weights named `….weight`, not the fused
    // layout's stacked `experts.gate_up_proj`.
    let int4 = cfg.quant.as_ref().is_some_and(|q| q.format == QuantFormat::Int4);
    let skipped = |n: &str| {
        let module = n.strip_suffix(".weight");
        (int4 && module.is_none())
            || ignored.as_ref().is_some_and(|ig| ig.contains(module.unwrap_or(n)))
    };
    let disk = |name: String, role, shape: Vec<usize>, kind, quantizable: bool| DiskTensor {
        quantizable: quantizable && !skipped(&name),
        shape: disk_shape(cfg, role, shape),
        name,
        role,
        kind,
    };
    schema(cfg).visit(&mut |s: &Spec| {
        let Some((slot, lr)) = s.role.layer_part().filter(|_| s.kind == Kind::Experts) else {
            out.push(disk(name(s.role), s.role, s.shape.clone(), s.kind, s.quantizable));
            return;
        };
        match layout {
            ExpertLayout::Fused => {
                out.push(disk(name(s.role), s.role, s.shape.clone(), s.kind, s.quantizable))
            }
            // Expert by expert, gate, up and down together: emitted when the walk reaches the
            // first stacked leaf (gate_up), nothing for the second.
            ExpertLayout::PerExpert if lr == LayerRole::ExpertsGateUp => {
                let (h, i) = (cfg.hidden_size, cfg.moe.intermediate);
                for e in 0..cfg.moe.num_experts {
                    for p in Proj::ALL {
                        let role = slot.role(LayerRole::Expert(e, p));
                        let shape = if p == Proj::Down { vec![h, i] } else { vec![i, h] };
                        out.push(disk(name(role), role, shape, Kind::Experts, s.quantizable));
                    }
                }
            }
            ExpertLayout::PerExpert => {}
        }
    });
    // The towers outside the language model, verbatim, after it.
    for (i, c) in cfg.carried.iter().enumerate() {
        out.push(DiskTensor {
            name: c.name.clone(),
            role: Role::Carried(i),
            shape: c.shape.clone(),
            kind: Kind::Carried,
            quantizable: false,
        });
    }
    out
}

/// A stacked expert tensor that gpt-oss or Llama-4 stores in its own arrangement (see
/// [`from_disk`]).
pub fn arranged(cfg: &ModelConfig, role: Role) -> bool {
    let lr = role.layer_part().map(|(_, lr)| lr);
    match cfg.family {
        Family::GptOss => matches!(
            lr,
            Some(LayerRole::ExpertsGateUp | LayerRole::ExpertsDown | LayerRole::ExpertsGateUpBias)
        ),
        Family::Llama4 => matches!(lr, Some(LayerRole::ExpertsGateUp | LayerRole::ExpertsDown)),
        _ => false,
    }
}

/// The shape a tensor has on disk, in values: the schema's, except gpt-oss's and Llama-4's
/// input-major experts (`gate_up_proj [E, H, 2I]`, `down_proj [E, I, H]`).
pub fn disk_shape(cfg: &ModelConfig, role: Role, schema_shape: Vec<usize>) -> Vec<usize> {
    match (arranged(cfg, role), schema_shape.as_slice()) {
        (true, [e, r, c]) => vec![*e, *c, *r],
        _ => schema_shape,
    }
}

/// What the bytes of a stacked expert tensor hold, for [`from_disk`] and [`to_disk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Plain values of a whole-byte dtype.
    Values(DType),
    /// MXFP4 blocks: packed fp4, rows of the schema's (output-major) matrix.
    Mxfp4Blocks,
    /// MXFP4 scales: one byte per 32 values of a row.
    Mxfp4Scales,
}

/// gpt-oss's gate/up interleave: the stored row (or column) holding the schema's gate/up row
/// `r` of `2 · half` (gate rows `0..half` are stored at even positions, up rows at odd).
fn interleaved(r: usize, half: usize) -> usize {
    if r < half {
        2 * r
    } else {
        2 * (r - half) + 1
    }
}

/// The schema's bytes of whole experts of an [`arranged`] tensor, from the stored bytes of
/// the same experts (any number, each expert's slab is contiguous in both forms): gpt-oss's
/// gate/up rows de-interleaved (Llama-4 keeps gate then up), and plain values transposed from
/// input-major to the schema's output-major.
pub fn from_disk(cfg: &ModelConfig, role: Role, stored: Stored, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut v = bytes.to_vec();
    rearrange(cfg, role, stored, &mut v, true)?;
    Ok(v)
}

/// The inverse of [`from_disk`]: stored bytes from the schema's, in place (one expert's slab
/// of scratch memory, so a multi-GB stacked tensor is not held twice).
pub fn to_disk(cfg: &ModelConfig, role: Role, stored: Stored, bytes: Cow<'_, [u8]>) -> Result<Vec<u8>> {
    let mut v = bytes.into_owned();
    rearrange(cfg, role, stored, &mut v, false)?;
    Ok(v)
}

fn rearrange(cfg: &ModelConfig, role: Role, stored: Stored, bytes: &mut [u8], read: bool) -> Result<()> {
    let (h, i) = (cfg.hidden_size, cfg.moe.intermediate);
    let lr = role.layer_part().map(|(_, lr)| lr);
    // gpt-oss interleaves gate and up (even rows gate); Llama-4 stores the halves in order.
    let gate_up = cfg.family == Family::GptOss
        && matches!(lr, Some(LayerRole::ExpertsGateUp | LayerRole::ExpertsGateUpBias));
    // (rows, row bytes) of one expert in the schema's form, and whether values transpose.
    let (rows, cols, transpose) = match (lr, stored) {
        (Some(LayerRole::ExpertsGateUp), _) => (2 * i, h, matches!(stored, Stored::Values(_))),
        (Some(LayerRole::ExpertsDown), _) => (h, i, matches!(stored, Stored::Values(_))),
        (Some(LayerRole::ExpertsGateUpBias), Stored::Values(_)) => (2 * i, 1, false),
        _ => {
            return Err(Error::Invalid(format!(
                "internal: {} has no stored arrangement",
                display_name(cfg, role)
            )))
        }
    };
    let es = match stored {
        Stored::Values(d) => d.size().ok_or_else(|| {
            Error::Invalid(format!(
                "{} is stored as {}, which {}'s stacked input-major experts cannot be reordered in",
                display_name(cfg, role),
                d.name(),
                cfg.family.name()
            ))
        })?,
        Stored::Mxfp4Blocks | Stored::Mxfp4Scales => 1,
    };
    let row_bytes = match stored {
        Stored::Values(_) => cols * es,
        Stored::Mxfp4Blocks => cols / 2,
        Stored::Mxfp4Scales => cols.div_ceil(32),
    };
    let slab = rows * row_bytes;
    if slab == 0 || !bytes.len().is_multiple_of(slab) {
        return Err(Error::Invalid(format!(
            "{}: {} bytes are not whole experts of {slab} bytes",
            display_name(cfg, role),
            bytes.len()
        )));
    }
    let mut src = vec![0u8; slab];
    for dst in bytes.chunks_exact_mut(slab) {
        src.copy_from_slice(dst);
        // schema (r, c) sits at stored (row(r), c), or (c, row(r)) when transposed
        let row = |r: usize| if gate_up { interleaved(r, i) } else { r };
        for r in 0..rows {
            if transpose {
                for c in 0..cols {
                    let s = (r * cols + c) * es;
                    let d = (c * rows + row(r)) * es;
                    let (from, to) = if read { (d, s) } else { (s, d) };
                    dst[to..to + es].copy_from_slice(&src[from..from + es]);
                }
            } else {
                let (s, d) = (r * row_bytes, row(r) * row_bytes);
                let (from, to) = if read { (d, s) } else { (s, d) };
                dst[to..to + row_bytes].copy_from_slice(&src[from..from + row_bytes]);
            }
        }
    }
    Ok(())
}

/// MXFP4's on-disk names of a stacked expert tensor: `{name}_blocks` and `{name}_scales`.
pub fn mxfp4_names(name: &str) -> (String, String) {
    (format!("{name}_blocks"), format!("{name}_scales"))
}

/// MXFP4's on-disk shapes for a stacked tensor of schema shape `[E, rows, cols]`:
/// blocks `[E, rows, cols/32, 16]` (U8) and scales `[E, rows, cols/32]` (U8).
pub fn mxfp4_shapes(schema_shape: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let n = schema_shape.len();
    let mut scales = schema_shape.to_vec();
    if n > 0 {
        scales[n - 1] = schema_shape[n - 1].div_ceil(32);
    }
    let mut blocks = scales.clone();
    blocks.push(16);
    (blocks, scales)
}

/// compressed-tensors' on-disk names of a weight `X.weight`: the packed codes, the scales and
/// the original shape (`X.weight_packed`, `X.weight_scale`, `X.weight_shape`).
pub fn int4_names(name: &str) -> [String; 3] {
    let m = name.strip_suffix("weight").unwrap_or(name);
    [format!("{m}weight_packed"), format!("{m}weight_scale"), format!("{m}weight_shape")]
}

/// compressed-tensors' on-disk shapes of an int4 weight of shape `[rows, cols]` in groups of
/// `group`: packed `[rows, ceil(cols/8)]` I32 words and scales `[rows, ceil(cols/group)]`.
pub fn int4_shapes(shape: &[usize], group: usize) -> (Vec<usize>, Vec<usize>) {
    let n = shape.len();
    let (mut packed, mut scales) = (shape.to_vec(), shape.to_vec());
    if n > 0 {
        packed[n - 1] = shape[n - 1].div_ceil(8);
        scales[n - 1] = shape[n - 1].div_ceil(group.max(1));
    }
    (packed, scales)
}

/// The stacked schema leaf an expert matrix belongs to and its elements there; `None` for a
/// role that is not one expert's matrix.
pub fn part_location(cfg: &ModelConfig, role: Role) -> Option<(Role, Range<usize>)> {
    let (slot, LayerRole::Expert(e, p)) = role.layer_part()? else {
        return None;
    };
    let block = cfg.hidden_size * cfg.moe.intermediate;
    Some(match p {
        Proj::Gate => (
            slot.role(LayerRole::ExpertsGateUp),
            2 * e * block..(2 * e + 1) * block,
        ),
        Proj::Up => (
            slot.role(LayerRole::ExpertsGateUp),
            (2 * e + 1) * block..(2 * e + 2) * block,
        ),
        Proj::Down => (slot.role(LayerRole::ExpertsDown), e * block..(e + 1) * block),
    })
}

/// The expert matrices a stacked leaf is made of, in storage order; `None` for any other role.
pub fn leaf_parts(cfg: &ModelConfig, leaf: Role) -> Option<Vec<Role>> {
    let (slot, lr) = leaf.layer_part()?;
    let e = cfg.moe.num_experts;
    let roles = |p: &[Proj]| -> Vec<Role> {
        (0..e)
            .flat_map(|x| p.iter().map(move |&p| slot.role(LayerRole::Expert(x, p))))
            .collect()
    };
    match lr {
        LayerRole::ExpertsGateUp => Some(roles(&[Proj::Gate, Proj::Up])),
        LayerRole::ExpertsDown => Some(roles(&[Proj::Down])),
        _ => None,
    }
}

/// The bytes of a tensor, gathered from its parts when it is a stacked leaf held expert by
/// expert (`part` reads one part), or read directly otherwise.
pub fn assemble<'a>(
    cfg: &ModelConfig,
    role: Role,
    mut part: impl FnMut(Role) -> Result<Cow<'a, [u8]>>,
) -> Result<Cow<'a, [u8]>> {
    match leaf_parts(cfg, role) {
        None => part(role),
        Some(parts) => {
            let mut out = Vec::new();
            let n = parts.len();
            for p in parts {
                let b = part(p)?;
                if out.is_empty() {
                    // Parts are equal-sized: one allocation, not a doubling Vec's 2× peak.
                    out.reserve_exact(b.len() * n);
                }
                out.extend_from_slice(&b);
            }
            Ok(Cow::Owned(out))
        }
    }
}

/// One expert matrix's bytes cut out of its stacked leaf's bytes (borrowed stays borrowed).
pub fn slice_part<'a>(
    cfg: &ModelConfig,
    part: Role,
    dtype: DType,
    leaf: Cow<'a, [u8]>,
) -> Result<Cow<'a, [u8]>> {
    let (_, elems) = part_location(cfg, part)
        .ok_or_else(|| Error::Invalid(format!("internal: {part:?} is not an expert matrix")))?;
    let (Some(start), Some(end)) = (dtype.bytes_for(elems.start), dtype.bytes_for(elems.end)) else {
        return Err(Error::Invalid(format!(
            "expert matrix {part:?} does not start on a byte boundary in its {} tensor",
            dtype.name()
        )));
    };
    let bytes = start..end;
    if bytes.end > leaf.len() {
        return Err(Error::Invalid(format!(
            "expert matrix {part:?} lies outside its stacked tensor ({} bytes)",
            leaf.len()
        )));
    }
    Ok(match leaf {
        Cow::Borrowed(b) => Cow::Borrowed(&b[bytes]),
        Cow::Owned(v) => Cow::Owned(v[bytes].to_vec()),
    })
}

/// The shape of a schema leaf or of one expert's matrix.
pub fn shape_of(cfg: &ModelConfig, role: Role) -> Result<Vec<usize>> {
    let (h, i) = (cfg.hidden_size, cfg.moe.intermediate);
    if let Role::Carried(c) = role {
        return cfg.carried.get(c).map(|c| c.shape.clone()).ok_or_else(|| {
            Error::Invalid(format!("internal: no carried tensor {c}"))
        });
    }
    if let Some((_, LayerRole::Expert(_, p))) = role.layer_part() {
        return Ok(if p == Proj::Down { vec![h, i] } else { vec![i, h] });
    }
    let find = |specs: Vec<Spec>| specs.into_iter().find(|s| s.role == role).map(|s| s.shape);
    let found = match role.layer_part() {
        // One layer's schema, not the whole model's: this runs once per tensor read.
        Some((slot, _)) => {
            let mut v = Vec::new();
            super::layer(cfg, slot).visit(&mut |s| v.push(s.clone()));
            find(v)
        }
        None => find(super::specs(cfg)),
    };
    found.ok_or_else(|| {
        Error::Invalid(format!(
            "internal: {} is not a tensor of this model",
            display_name(cfg, role)
        ))
    })
}

/// A tensor's Hugging Face name for messages: expert matrices in the per-expert spelling,
/// everything else (stacked experts included) as the fused layout names it.
pub fn display_name(cfg: &ModelConfig, role: Role) -> String {
    let layout = match role.layer_part() {
        Some((_, LayerRole::Expert(..))) => ExpertLayout::PerExpert,
        _ => ExpertLayout::Fused,
    };
    format!("tensor `{}`", cfg.tensor_name(role, layout))
}

/// The scale grid of a stacked leaf gathered from its experts' grids, or of one expert's
/// matrix cut from its stacked leaf's grid: possible when the block rows do not straddle the
/// gate and up halves (the intermediate size is a multiple of the block's rows); otherwise the
/// two layouts quantise differently and the caller is told to dequantise.
pub fn experts_scales<'a>(
    cfg: &ModelConfig,
    role: Role,
    q: BlockQuant,
    mut scales_of: impl FnMut(Role) -> Result<Cow<'a, [u8]>>,
) -> Result<Cow<'a, [u8]>> {
    let [b0, _] = q.block;
    let i = cfg.moe.intermediate;
    let gate_up = matches!(
        role.layer_part(),
        Some((_, LayerRole::ExpertsGateUp | LayerRole::Expert(_, Proj::Gate | Proj::Up)))
    );
    if gate_up && !i.is_multiple_of(b0) {
        return Err(Error::Invalid(format!(
            "{}: float8 blocks of {b0} rows straddle the gate and up halves of an expert (intermediate size {i}); this layout change needs dequantised weights (--dtype bf16)",
            display_name(cfg, role)
        )));
    }
    if let Some(parts) = leaf_parts(cfg, role) {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&scales_of(p)?);
        }
        return Ok(Cow::Owned(out));
    }
    let (leaf, _) = part_location(cfg, role).ok_or_else(|| {
        Error::Invalid(format!("internal: {role:?} has no stacked leaf"))
    })?;
    let Some((_, LayerRole::Expert(e, p))) = role.layer_part() else {
        unreachable!("part_location only answers for expert matrices")
    };
    // The part's grid is a run of whole grid rows of its expert's slab in the stacked grid:
    // gate's first, then up's (for gate_up), or the whole slab (down).
    let sz = q.scale_dtype.size().unwrap_or(4);
    let part_grid = scale_shape(&shape_of(cfg, role)?, q.block);
    let len = part_grid.iter().product::<usize>() * sz;
    let at = match p {
        Proj::Down => e * len,
        Proj::Gate => 2 * e * len,
        Proj::Up => (2 * e + 1) * len,
    };
    let all = scales_of(leaf)?;
    Ok(match all {
        Cow::Borrowed(b) => Cow::Borrowed(&b[at..at + len]),
        Cow::Owned(v) => Cow::Owned(v[at..at + len].to_vec()),
    })
}

/// How [`output_tensors`] stores values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Storage {
    /// As the source stores each tensor (block-quantised ones with their scales).
    AsSource,
    /// Every tensor in this dtype (block-quantised ones dequantised), except those the
    /// family keeps in f32.
    Values(DType),
    /// The quantisable weights block-quantised (float8 e4m3, or MXFP4 for gpt-oss), the rest
    /// as the source stores them.
    Fp8(BlockQuant),
}

impl Storage {
    /// What `--dtype` names: f32, bf16 or f16 (dequantised), or `fp8` (block-quantised e4m3
    /// with F32 scales in `block`, the source's blocks when it has them).
    pub fn parse(s: &str, block: [usize; 2]) -> Result<Storage> {
        if s.eq_ignore_ascii_case("mxfp4") {
            return Ok(Storage::Fp8(BlockQuant::mxfp4()));
        }
        if matches!(s.to_ascii_lowercase().as_str(), "fp8" | "f8" | "f8_e4m3" | "float8_e4m3fn") {
            return Ok(Storage::Fp8(BlockQuant::fp8(block, DType::F32, false)));
        }
        DType::parse(s).map(Storage::Values).ok_or_else(|| {
            Error::Invalid(format!("unknown dtype `{s}` (f32, bf16, f16, fp8 or mxfp4)"))
        })
    }

    /// `config.json` of a model written this way: the dtype recorded, and
    /// `quantization_config` removed for dequantised output or added for float8 output.
    /// [`Storage::rewrite_config`] on a model's config: the language model's, and a
    /// multimodal wrapper's top level too (where transformers reads the dtype and the
    /// quantisation of a wrapped model).
    pub fn rewrite(self, cfg: &mut ModelConfig) {
        self.rewrite_config(&mut cfg.raw);
        if let Some(w) = &mut cfg.wrapper {
            self.rewrite_config(&mut w.outer);
        }
    }

    pub fn rewrite_config(self, raw: &mut serde_json::Map<String, serde_json::Value>) {
        match self {
            Storage::AsSource => {}
            Storage::Values(d) => {
                for key in ["dtype", "torch_dtype"] {
                    if raw.contains_key(key) || key == "dtype" {
                        raw.insert(key.into(), d.torch_name().into());
                    }
                }
                raw.remove("quantization_config");
            }
            Storage::Fp8(q) => {
                if !raw.contains_key("quantization_config") {
                    // MXFP4 as gpt-oss's hub config spells it: only the experts are quantised.
                    let not_converted = match q.format {
                        QuantFormat::Mxfp4 => ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]
                            .map(String::from)
                            .to_vec(),
                        QuantFormat::Fp8E4M3 | QuantFormat::Int4 => Vec::new(),
                    };
                    let cfg = crate::quant::Fp8Block {
                        block: q.block,
                        not_converted,
                        pow2_scales: q.pow2,
                        format: q.format,
                    };
                    raw.insert("quantization_config".into(), cfg.to_json());
                }
            }
        }
    }
}

/// The tensors to write a model in `layout`, each produced from `src` when the writer asks for
/// it, stored as `storage` says: a block-quantised weight is followed by its
/// `…_scale_inv` grid. Every checkpoint moegrow writes goes through here.
pub fn output_tensors<'a, S: TensorSource + ?Sized>(
    src: &'a S,
    layout: ExpertLayout,
    storage: Storage,
) -> Result<Vec<OutputTensor<'a>>> {
    let cfg = src.config();
    let family = cfg.family;
    if family.stacked_only() && layout != family.native_layout() {
        return Err(Error::Invalid(format!(
            "{} stores its experts stacked only (transformers reads no per-expert layout for it): write the fused layout",
            family.name()
        )));
    }
    if family == Family::Llama4 && matches!(storage, Storage::Fp8(_)) {
        return Err(Error::Invalid(
            "the Llama-4 checkpoints transformers reads are bf16 (the hub's FP8 Maverick is per-channel compressed-tensors, not block-scaled float8); use --dtype bf16".into(),
        ));
    }
    if family == Family::GptOss {
        if matches!(storage, Storage::Fp8(q) if q.format != QuantFormat::Mxfp4) {
            return Err(Error::Invalid(
                "gpt-oss checkpoints are MXFP4 or plain values; transformers reads no float8 gpt-oss. Use --dtype mxfp4 or bf16".into(),
            ));
        }
    } else if matches!(storage, Storage::Fp8(q) if q.format == QuantFormat::Mxfp4) {
        return Err(Error::Invalid(format!(
            "transformers reads MXFP4 for gpt-oss only, not {}; use --dtype fp8 for block-scaled float8",
            family.name()
        )));
    }
    if matches!(storage, Storage::Fp8(q) if q.format == QuantFormat::Int4) {
        return Err(Error::Invalid(
            "moegrow writes compressed-tensors int4 only where the source has it (its weights copied or requantised as they are)".into(),
        ));
    }
    if cfg.quant.as_ref().is_some_and(|q| q.format == QuantFormat::Int4) {
        if matches!(storage, Storage::Fp8(_)) {
            return Err(Error::Invalid(
                "this checkpoint's weights are compressed-tensors int4; moegrow does not requantise them to another format (--dtype bf16 dequantises)".into(),
            ));
        }
        if layout == ExpertLayout::Fused && storage == Storage::AsSource {
            return Err(Error::Invalid(
                "compressed-tensors stores int4 experts one weight per expert (`….experts.{e}.gate_proj.weight_packed`): write --layout per-expert, or dequantise with --dtype bf16".into(),
            ));
        }
    }
    let mut out = Vec::new();
    for d in disk_tensors(cfg, layout) {
        let role = d.role;
        let from = src.dtype_of(role)?;
        let quant = src.quant_of(role)?;
        let fp8 = match storage {
            Storage::AsSource => quant,
            Storage::Fp8(q) if d.quantizable => Some(quant.unwrap_or(q)),
            Storage::Fp8(_) => quant.filter(|_| d.quantizable),
            Storage::Values(_) => None,
        };
        if let Some(q) = fp8 {
            let requantize = quant != Some(q);
            let shape = shape_of(cfg, role)?;
            let sshape = scale_shape(&shape, q.block);
            let scale_bytes = q.scale_dtype.bytes_for(sshape.iter().product()).unwrap_or(0);
            // MXFP4 is stored under its own names and shapes, as U8, in gpt-oss's arrangement;
            // int4 as I32 words beside its scales and its shape.
            let mx = q.format == QuantFormat::Mxfp4;
            let int4 = q.format == QuantFormat::Int4;
            let (names, shapes) = if mx {
                (mxfp4_names(&d.name), mxfp4_shapes(&shape))
            } else if int4 {
                let [packed, scales, _] = int4_names(&d.name);
                ((packed, scales), int4_shapes(&shape, q.block[1]))
            } else {
                ((d.name.clone(), scale_name(&d.name)), (d.shape.clone(), sshape))
            };
            // compressed-tensors' `weight_shape`, after the scales, in the source's dtype.
            let shape_tensor = int4.then(|| {
                let wide = q.shape_dtype == DType::I64;
                let bytes: Vec<u8> = if wide {
                    shape.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect()
                } else {
                    shape.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()
                };
                OutputTensor {
                    pieces: None,
                    name: int4_names(&d.name)[2].clone(),
                    dtype: if wide { DType::I64 } else { DType::I32 },
                    shape: vec![shape.len()],
                    data: Box::new(move || Ok(Cow::Owned(bytes.clone()))),
                }
            });
            let arrange = arranged(cfg, role);
            let stored = move |bytes: Cow<'a, [u8]>, kind: Stored| -> Result<Cow<'a, [u8]>> {
                if arrange {
                    Ok(Cow::Owned(to_disk(src.config(), role, kind, bytes)?))
                } else {
                    Ok(bytes)
                }
            };
            // MXFP4 quantises rows of 32, so a stacked tensor quantises expert by expert (never
            // held in f32 whole), once: the bytes' pass keeps the scales for the scales' pass.
            let pending: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>> = Default::default();
            let requant = {
                let pending = pending.clone();
                let shape = shape.clone();
                move || -> Result<(Vec<u8>, Vec<u8>)> {
                    let cfg = src.config();
                    match leaf_parts(cfg, role).filter(|_| mx) {
                        Some(parts) => {
                            let (mut b, mut s) = (Vec::new(), Vec::new());
                            for p in parts {
                                let (pb, ps) = quantize(&src.read_f32(p)?, &shape_of(cfg, p)?, q)?;
                                b.extend_from_slice(&pb);
                                s.extend_from_slice(&ps);
                                src.release(p);
                            }
                            *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                            Ok((b, s))
                        }
                        None => quantize(&src.read_f32(role)?, &shape, q),
                    }
                }
            };
            let requant2 = requant.clone();
            out.push(OutputTensor {
                pieces: None,
                name: names.0,
                dtype: if mx {
                    DType::U8
                } else if int4 {
                    DType::I32
                } else {
                    q.value_dtype()
                },
                shape: shapes.0,
                data: Box::new(move || {
                    let v = if requantize {
                        Cow::Owned(requant()?.0)
                    } else {
                        src.read(role)?
                    };
                    stored(v, Stored::Mxfp4Blocks)
                }),
            });
            out.push(OutputTensor {
                pieces: None,
                name: names.1,
                dtype: if mx { DType::U8 } else { q.scale_dtype },
                shape: shapes.1,
                data: Box::new(move || {
                    let s = if requantize {
                        let kept = pending.lock().unwrap_or_else(|e| e.into_inner()).take();
                        Cow::Owned(match kept {
                            Some(s) => s,
                            None => requant2()?.1,
                        })
                    } else {
                        src.read_scales(role)?
                    };
                    if s.len() != scale_bytes {
                        return Err(Error::Invalid(format!(
                            "internal: {} scale bytes for {}, expected {scale_bytes}",
                            s.len(),
                            display_name(src.config(), role)
                        )));
                    }
                    stored(s, Stored::Mxfp4Scales)
                }),
            });
            out.extend(shape_tensor);
            continue;
        }
        let to = match storage {
            Storage::Values(t) if !family.keeps_f32(role) => t,
            _ if quant.is_some() => DType::BF16,
            _ => from,
        };
        if from != to && !(from.decodes() && to.encodes()) {
            return Err(Error::Invalid(format!(
                "{} is stored as {}, which moegrow cannot convert to {}",
                display_name(cfg, role),
                from.name(),
                to.name()
            )));
        }
        let arrange = arranged(cfg, role);
        // A stacked expert tensor is written expert by expert (each expert's parts converted,
        // dequantised or rearranged on their own), so the writer holds one expert's bytes,
        // never the whole stack: Llama-4 Maverick's is 21 GB in bf16.
        let pieces = leaf_parts(cfg, role).filter(|p| !p.is_empty()).map(|parts| {
            let per = parts.len() / cfg.moe.num_experts.max(1);
            let piece = move |x: usize| -> Result<Cow<'a, [u8]>> {
                let mut out = Vec::new();
                for &p in &parts[x * per..(x + 1) * per] {
                    let b = if quant.is_some() {
                        Cow::Owned(encode_f32(to, &src.read_f32(p)?))
                    } else {
                        convert(from, to, src.read(p)?)
                    };
                    out.extend_from_slice(&b);
                    src.release(p);
                }
                if arrange {
                    out = to_disk(src.config(), role, Stored::Values(to), Cow::Owned(out))?;
                }
                Ok(Cow::Owned(out))
            };
            Pieces {
                count: cfg.moe.num_experts,
                piece: std::sync::Arc::new(piece),
            }
        });
        if let Some(p) = pieces {
            let piece = p.piece.clone();
            let count = p.count;
            out.push(OutputTensor {
                pieces: Some(p),
                name: d.name,
                dtype: to,
                shape: d.shape,
                data: Box::new(move || {
                    let mut whole = Vec::new();
                    for x in 0..count {
                        let b = piece(x)?;
                        if whole.is_empty() {
                            whole.reserve_exact(b.len() * count);
                        }
                        whole.extend_from_slice(&b);
                    }
                    Ok(Cow::Owned(whole))
                }),
            });
            continue;
        }
        out.push(OutputTensor {
            pieces: None,
            name: d.name,
            dtype: to,
            shape: d.shape,
            data: Box::new(move || {
                let v = if quant.is_some() {
                    // Dequantised expert by expert into the output dtype: the stacked tensor is
                    // never held in f32.
                    match leaf_parts(src.config(), role) {
                        Some(parts) => {
                            let mut out = Vec::new();
                            let n = parts.len();
                            for p in parts {
                                let b = encode_f32(to, &src.read_f32(p)?);
                                if out.is_empty() {
                                    out.reserve_exact(b.len() * n);
                                }
                                out.extend_from_slice(&b);
                                src.release(p);
                            }
                            src.release(role);
                            Cow::Owned(out)
                        }
                        None => Cow::Owned(encode_f32(to, &src.read_f32(role)?)),
                    }
                } else {
                    convert(from, to, src.read(role)?)
                };
                if arrange {
                    Ok(Cow::Owned(to_disk(src.config(), role, Stored::Values(to), v)?))
                } else {
                    Ok(v)
                }
            }),
        });
    }
    Ok(out)
}

/// The layer slots of a model, decoder layers then MTP blocks.
pub fn slots(cfg: &ModelConfig) -> impl Iterator<Item = LayerSlot> + '_ {
    (0..cfg.num_layers)
        .map(LayerSlot::Decoder)
        .chain((0..cfg.mtp_layers).map(LayerSlot::Mtp))
}
