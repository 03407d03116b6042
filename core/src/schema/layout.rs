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
use crate::checkpoint::OutputTensor;
use crate::config::ModelConfig;
use crate::dtype::{convert, encode_f32, DType};
use crate::error::{Error, Result};
use crate::quant::{quantize, scale_name, scale_shape, BlockQuant};
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
    let name = |role| cfg.family.tensor_name(role, layout, cfg.num_layers);
    let skipped = |n: &str| {
        cfg.quant.as_ref().is_some_and(|q| {
            let module = n.strip_suffix(".weight").unwrap_or(n);
            q.not_converted.iter().any(|m| m == module)
        })
    };
    let disk = |name: String, role, shape, kind, quantizable: bool| DiskTensor {
        quantizable: quantizable && !skipped(&name),
        name,
        role,
        shape,
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
    out
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
            for p in parts {
                out.extend_from_slice(&part(p)?);
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
    format!(
        "tensor `{}`",
        cfg.family.tensor_name(role, layout, cfg.num_layers)
    )
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
    /// The quantisable weights block-quantised to float8 e4m3, the rest as the source stores
    /// them.
    Fp8(BlockQuant),
}

impl Storage {
    /// What `--dtype` names: f32, bf16 or f16 (dequantised), or `fp8` (block-quantised e4m3
    /// with F32 scales in `block`, the source's blocks when it has them).
    pub fn parse(s: &str, block: [usize; 2]) -> Result<Storage> {
        if matches!(s.to_ascii_lowercase().as_str(), "fp8" | "f8" | "f8_e4m3" | "float8_e4m3fn") {
            return Ok(Storage::Fp8(BlockQuant {
                block,
                scale_dtype: DType::F32,
                pow2: false,
            }));
        }
        DType::parse(s).map(Storage::Values).ok_or_else(|| {
            Error::Invalid(format!("unknown dtype `{s}` (f32, bf16, f16 or fp8)"))
        })
    }

    /// `config.json` of a model written this way: the dtype recorded, and
    /// `quantization_config` removed for dequantised output or added for float8 output.
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
                    let cfg = crate::quant::Fp8Block {
                        block: q.block,
                        not_converted: Vec::new(),
                        pow2_scales: q.pow2,
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
            let (shape, sshape) = (d.shape.clone(), scale_shape(&d.shape, q.block));
            let scale_bytes = q.scale_dtype.bytes_for(sshape.iter().product()).unwrap_or(0);
            out.push(OutputTensor {
                name: d.name.clone(),
                dtype: DType::F8E4M3,
                shape: d.shape,
                data: Box::new(move || {
                    if requantize {
                        Ok(Cow::Owned(quantize(&src.read_f32(role)?, &shape, q)?.0))
                    } else {
                        src.read(role)
                    }
                }),
            });
            let shape = shape_of(cfg, role)?;
            out.push(OutputTensor {
                name: scale_name(&d.name),
                dtype: q.scale_dtype,
                shape: sshape,
                data: Box::new(move || {
                    let s = if requantize {
                        Cow::Owned(quantize(&src.read_f32(role)?, &shape, q)?.1)
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
                    Ok(s)
                }),
            });
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
        out.push(OutputTensor {
            name: d.name,
            dtype: to,
            shape: d.shape,
            data: Box::new(move || {
                if quant.is_some() {
                    Ok(Cow::Owned(encode_f32(to, &src.read_f32(role)?)))
                } else {
                    Ok(convert(from, to, src.read(role)?))
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
