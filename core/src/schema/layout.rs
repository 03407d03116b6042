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
use crate::dtype::{convert, DType};
use crate::error::{Error, Result};
use crate::roles::{ExpertLayout, LayerRole, Proj, Role};
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
}

/// Every tensor a checkpoint with this config stores in `layout`, in canonical order (the
/// schema's, with each layer's experts expert by expert in the per-expert layout).
pub fn disk_tensors(cfg: &ModelConfig, layout: ExpertLayout) -> Vec<DiskTensor> {
    let mut out = Vec::new();
    let name = |role| cfg.family.tensor_name(role, layout, cfg.num_layers);
    schema(cfg).visit(&mut |s: &Spec| {
        let Some((slot, lr)) = s.role.layer_part().filter(|_| s.kind == Kind::Experts) else {
            out.push(DiskTensor {
                name: name(s.role),
                role: s.role,
                shape: s.shape.clone(),
                kind: s.kind,
            });
            return;
        };
        match layout {
            ExpertLayout::Fused => out.push(DiskTensor {
                name: name(s.role),
                role: s.role,
                shape: s.shape.clone(),
                kind: s.kind,
            }),
            // Expert by expert, gate, up and down together: emitted when the walk reaches the
            // first stacked leaf (gate_up), nothing for the second.
            ExpertLayout::PerExpert if lr == LayerRole::ExpertsGateUp => {
                let (h, i) = (cfg.hidden_size, cfg.moe.intermediate);
                for e in 0..cfg.moe.num_experts {
                    for p in Proj::ALL {
                        let role = slot.role(LayerRole::Expert(e, p));
                        out.push(DiskTensor {
                            name: name(role),
                            role,
                            shape: if p == Proj::Down { vec![h, i] } else { vec![i, h] },
                            kind: Kind::Experts,
                        });
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
    let bytes = elems.start * dtype.size()..elems.end * dtype.size();
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

/// The tensors to write a model in `layout`, each produced from `src` when the writer asks for
/// it; with `dtype`, converted to it (except the tensors the family keeps in f32). Every
/// checkpoint moegrow writes goes through here.
pub fn output_tensors<'a, S: TensorSource + ?Sized>(
    src: &'a S,
    layout: ExpertLayout,
    dtype: Option<DType>,
) -> Result<Vec<OutputTensor<'a>>> {
    let cfg = src.config();
    let family = cfg.family;
    disk_tensors(cfg, layout)
        .into_iter()
        .map(|d| {
            let role = d.role;
            let from = src.dtype_of(role)?;
            let to = match dtype {
                Some(t) if !family.keeps_f32(role) => t,
                _ => from,
            };
            Ok(OutputTensor {
                name: d.name,
                dtype: to,
                shape: d.shape,
                data: Box::new(move || Ok(convert(from, to, src.read(role)?))),
            })
        })
        .collect()
}
