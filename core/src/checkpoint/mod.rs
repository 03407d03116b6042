//! Hugging Face checkpoints in and out.
//!
//! A [`Checkpoint`] is a parsed `config.json` plus every tensor's header entry, each mapped to
//! its [`Role`]. Tensor bytes stay where they are (a memory map natively, a byte buffer in
//! wasm) and are read one tensor at a time, so opening a 70B checkpoint costs only its headers.

mod header;
mod writer;

pub use header::{header_len, parse_header, Header, HeaderTensor, MAX_HEADER_BYTES};
pub use writer::{
    header_bytes, parse_size, plan_files, write_checkpoint, write_safetensors, OutputTensor,
    Pieces, PlannedShard, WriteOptions, WriteSummary, COMPANION_FILES, INDEX_FILE, SINGLE_FILE,
};

use crate::config::ModelConfig;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::roles::{ExpertLayout, LayerRole, Proj, Role};
use crate::schema::layout::{self, disk_tensors, DiskTensor};
use crate::schema::{Kind, TensorSource};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// The bytes of one safetensors file.
pub enum ShardData {
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    Bytes(Arc<[u8]>),
    /// Only the header was read; tensors are made resident one at a time by
    /// [`Checkpoint::provide`] (the browser reads `Blob` slices and HTTP ranges this way, so a
    /// checkpoint never has to fit in wasm's 4 GB address space).
    Sparse(BTreeMap<usize, Arc<[u8]>>),
}

impl ShardData {
    /// The bytes at `range` (absolute file offsets).
    fn slice(&self, range: Range<usize>) -> Option<&[u8]> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ShardData::Mmap(m) => m.get(range),
            ShardData::Bytes(b) => b.get(range),
            ShardData::Sparse(chunks) => {
                let (&start, chunk) = chunks.range(..=range.start).next_back()?;
                chunk.get(range.start - start..range.end - start)
            }
        }
    }
}

pub struct Shard {
    /// File name within the checkpoint directory.
    pub name: String,
    pub header: Header,
    data: ShardData,
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub role: Role,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub shard: usize,
    pub range: Range<usize>,
    /// The block scales of a float8 weight (`X.weight_scale_inv`).
    pub scale: Option<ScaleEntry>,
}

/// A block-quantised weight's scale grid as stored.
#[derive(Debug, Clone)]
pub struct ScaleEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub shard: usize,
    pub range: Range<usize>,
    pub block: [usize; 2],
    /// float8 with `weight_scale_inv`, MXFP4 `_blocks` with `_scales`, or int4
    /// `weight_packed` with `weight_scale`.
    pub format: crate::quant::QuantFormat,
    /// The dtype of an int4 weight's `weight_shape` (I32 for the other formats).
    pub shape_dtype: DType,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn nbytes(&self) -> usize {
        self.range.len()
    }
}

pub struct Checkpoint {
    pub config: ModelConfig,
    pub layout: ExpertLayout,
    /// Tensors in canonical order ([`crate::schema::layout::disk_tensors`]).
    entries: Vec<TensorEntry>,
    by_role: HashMap<Role, usize>,
    pub shards: Vec<Shard>,
    /// `__metadata__` of the first shard (provenance such as moegrow's growth record).
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Open a checkpoint directory: `config.json` plus `model.safetensors`, or shards listed in
    /// `model.safetensors.index.json`. Shards are memory-mapped, not read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Checkpoint> {
        use std::fs;
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a checkpoint directory"),
            ));
        }
        let config_path = dir.join("config.json");
        let config_text =
            fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let index_path = dir.join(INDEX_FILE);
        let (files, weight_map) = if index_path.exists() {
            let text = fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let (files, map) = parse_index(&text)?;
            (files, Some(map))
        } else if dir.join(SINGLE_FILE).exists() {
            (vec![SINGLE_FILE.to_string()], None)
        } else {
            return Err(Error::io(
                dir.join(SINGLE_FILE),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no {SINGLE_FILE} and no {INDEX_FILE} in this directory"),
                ),
            ));
        };
        let mut shards = Vec::new();
        for f in files {
            let path = dir.join(&f);
            let file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only; a checkpoint modified while we read it is the
            // user's race, as with every tool that maps model files.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            shards.push((f, ShardData::Mmap(map)));
        }
        Self::from_shards(&config_text, shards, weight_map)
    }

    /// Build a checkpoint from in-memory files (wasm, tests). `weight_map` is the index's
    /// tensor → file map when the checkpoint is sharded.
    pub fn from_shards(
        config_json: &str,
        shards: Vec<(String, ShardData)>,
        weight_map: Option<BTreeMap<String, String>>,
    ) -> Result<Checkpoint> {
        let config = ModelConfig::from_json_str(config_json)?;
        let mut parsed = Vec::new();
        for (name, data) in shards {
            let bytes = match &data {
                #[cfg(not(target_arch = "wasm32"))]
                ShardData::Mmap(m) => &m[..],
                ShardData::Bytes(b) => &b[..],
                ShardData::Sparse(_) => {
                    return Err(Error::Invalid(format!(
                        "{name}: a sparse shard needs its parsed header (Checkpoint::from_headers)"
                    )));
                }
            };
            let header = parse_header(&name, bytes, bytes.len() as u64)?;
            parsed.push(Shard { name, header, data });
        }
        Self::from_parsed(config, parsed, weight_map)
    }

    /// A checkpoint of which only the shard headers have been read (see
    /// [`header_len`]/[`parse_header`]); tensor bytes are supplied later with
    /// [`Checkpoint::provide`]. Reading a tensor that is not resident is an error naming it.
    pub fn from_headers(
        config_json: &str,
        headers: Vec<(String, Header)>,
        weight_map: Option<BTreeMap<String, String>>,
    ) -> Result<Checkpoint> {
        let config = ModelConfig::from_json_str(config_json)?;
        let shards = headers
            .into_iter()
            .map(|(name, header)| Shard {
                name,
                header,
                data: ShardData::Sparse(BTreeMap::new()),
            })
            .collect();
        Self::from_parsed(config, shards, weight_map)
    }

    /// The (shard, byte range) of every tensor of `roles`, merged where they touch, so that a
    /// lazy reader fetches few large ranges rather than many small ones.
    pub fn ranges_for(&self, roles: &[Role]) -> Result<Vec<(usize, Range<usize>)>> {
        let mut want: Vec<(usize, Range<usize>)> = Vec::new();
        for &r in roles {
            let e = self.entry(r)?;
            want.push((e.shard, e.range.clone()));
            if let Some(s) = &e.scale {
                want.push((s.shard, s.range.clone()));
            }
        }
        want.sort_by_key(|(s, r)| (*s, r.start));
        let mut out: Vec<(usize, Range<usize>)> = Vec::new();
        for (s, r) in want {
            match out.last_mut() {
                Some((ls, lr)) if *ls == s && r.start <= lr.end => lr.end = lr.end.max(r.end),
                _ => out.push((s, r)),
            }
        }
        Ok(out)
    }

    /// Make the bytes at `start..start + bytes.len()` of sparse shard `shard` resident.
    pub fn provide(&mut self, shard: usize, start: usize, bytes: Arc<[u8]>) -> Result<()> {
        let s = self
            .shards
            .get_mut(shard)
            .ok_or_else(|| Error::Invalid(format!("no shard {shard}")))?;
        match &mut s.data {
            ShardData::Sparse(chunks) => {
                chunks.insert(start, bytes);
                Ok(())
            }
            _ => Err(Error::Invalid(format!(
                "{} is fully resident; nothing to provide",
                s.name
            ))),
        }
    }

    /// Forget every provided range (sparse shards only); the memory goes back.
    pub fn evict(&mut self) {
        for s in &mut self.shards {
            if let ShardData::Sparse(chunks) = &mut s.data {
                chunks.clear();
            }
        }
    }

    /// Bytes currently held by sparse shards.
    pub fn resident_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match &s.data {
                ShardData::Sparse(c) => c.values().map(|b| b.len()).sum(),
                _ => 0,
            })
            .sum()
    }

    fn from_parsed(
        mut config: ModelConfig,
        shards: Vec<Shard>,
        weight_map: Option<BTreeMap<String, String>>,
    ) -> Result<Checkpoint> {
        let family = config.family;
        // A wrapped language model's towers (a vision model, its projector) are carried
        // verbatim, in name order; their names come from the checkpoint, not the config.
        // Likewise tensors the family ships beside its language model and transformers
        // ignores (ERNIE-4.5's multi-token-prediction block).
        let towers: Vec<&str> = config
            .wrapper
            .iter()
            .flat_map(|w| w.towers.iter().copied())
            .chain(family.carried_prefixes().iter().copied())
            .collect();
        if !towers.is_empty() {
            let mut carried: Vec<crate::config::Carried> = shards
                .iter()
                .flat_map(|s| s.header.tensors.iter())
                .filter(|t| towers.iter().any(|p| t.name.starts_with(p)))
                .map(|t| crate::config::Carried {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                })
                .collect();
            carried.sort_by(|a, b| a.name.cmp(&b.name));
            config.carried = carried;
        }
        // Every name the config allows, in both layouts: anything else is unmapped. Expert
        // tensors belong to one layout only.
        let mut known: HashMap<String, (Role, Option<ExpertLayout>)> = HashMap::new();
        // The scale names of quantisable weights, for block-quantised checkpoints.
        let mut scale_of: HashMap<String, Role> = HashMap::new();
        // compressed-tensors' `weight_shape` of each int4 weight.
        let mut shape_of: HashMap<String, Role> = HashMap::new();
        for layout in [ExpertLayout::PerExpert, ExpertLayout::Fused] {
            for d in disk_tensors(&config, layout) {
                let specific = (d.kind == Kind::Experts).then_some(layout);
                match config.quant.as_ref().map(|q| q.format) {
                    Some(crate::quant::QuantFormat::Int4) if d.quantizable => {
                        let [packed, scales, shape] = layout::int4_names(&d.name);
                        known.insert(packed, (d.role, specific));
                        scale_of.insert(scales, d.role);
                        shape_of.insert(shape, d.role);
                    }
                    Some(crate::quant::QuantFormat::Mxfp4) if d.quantizable => {
                        let (blocks, scales) = layout::mxfp4_names(&d.name);
                        known.insert(blocks, (d.role, specific));
                        scale_of.insert(scales, d.role);
                    }
                    Some(_) if d.quantizable => {
                        scale_of.insert(crate::quant::scale_name(&d.name), d.role);
                    }
                    _ => {}
                }
                known.insert(d.name, (d.role, specific));
            }
        }
        let mut found: Vec<(Role, usize, &HeaderTensor)> = Vec::new();
        let mut scales: HashMap<Role, (usize, &HeaderTensor)> = HashMap::new();
        let mut shapes: HashMap<Role, (usize, &HeaderTensor)> = HashMap::new();
        let mut layouts_seen: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut seen_names: HashMap<&str, &str> = HashMap::new();
        for (si, shard) in shards.iter().enumerate() {
            for t in &shard.header.tensors {
                if let Some(prev) = seen_names.insert(&t.name, &shard.name) {
                    return Err(Error::Invalid(format!(
                        "tensor `{}` appears in both {prev} and {}",
                        t.name, shard.name
                    )));
                }
                if let Some(map) = &weight_map {
                    match map.get(&t.name) {
                        Some(f) if *f == shard.name => {}
                        Some(f) => {
                            return Err(Error::Invalid(format!(
                                "{INDEX_FILE} puts tensor `{}` in {f}, but it is in {}",
                                t.name, shard.name
                            )))
                        }
                        None => {
                            return Err(Error::Invalid(format!(
                                "tensor `{}` in {} is not listed in {INDEX_FILE}",
                                t.name, shard.name
                            )))
                        }
                    }
                }
                if let Some(&role) = scale_of.get(&t.name) {
                    scales.insert(role, (si, t));
                    continue;
                }
                if let Some(&role) = shape_of.get(&t.name) {
                    shapes.insert(role, (si, t));
                    continue;
                }
                let Some(&(role, specific)) = known.get(&t.name) else {
                    return Err(Error::UnmappedTensor {
                        file: shard.name.clone(),
                        tensor: t.name.clone(),
                        family: family.name(),
                    });
                };
                if let Some(l) = specific {
                    layouts_seen
                        .entry(l.name())
                        .or_insert_with(|| t.name.clone());
                }
                found.push((role, si, t));
            }
        }
        if let Some(map) = &weight_map {
            if let Some((name, file)) = map
                .iter()
                .find(|(n, _)| !seen_names.contains_key(n.as_str()))
            {
                return Err(Error::MissingTensor {
                    tensor: name.clone(),
                    why: format!(
                        "{INDEX_FILE} lists it in {file}, but that file does not contain it"
                    ),
                });
            }
        }
        if layouts_seen.len() > 1 {
            return Err(Error::Invalid(format!(
                "checkpoint mixes expert layouts: `{}` is per-expert, `{}` is fused",
                layouts_seen["per-expert"], layouts_seen["fused"]
            )));
        }
        let layout = if layouts_seen.contains_key("fused") {
            ExpertLayout::Fused
        } else {
            ExpertLayout::PerExpert
        };
        // Multi-token-prediction blocks are stored whole or not at all (transformers drops
        // them when it saves): none present means the checkpoint has none.
        if !found.iter().any(|(r, _, _)| matches!(r, Role::Mtp(..))) {
            config.mtp_layers = 0;
        }
        let by_role_found: HashMap<Role, (usize, &HeaderTensor)> =
            found.iter().map(|(r, s, t)| (*r, (*s, *t))).collect();
        let mut entries = Vec::new();
        for DiskTensor {
            name, role, shape, ..
        } in disk_tensors(&config, layout)
        {
            let Some(&(shard, t)) = by_role_found.get(&role) else {
                let why = if matches!(role, Role::Mtp(..)) {
                    format!(
                        "config.json's num_nextn_predict_layers = {} and the checkpoint has other multi-token-prediction tensors",
                        config.mtp_layers
                    )
                } else {
                    format!(
                        "config.json describes a {} model that has it",
                        family.name()
                    )
                };
                return Err(Error::MissingTensor { tensor: name, why });
            };
            // MXFP4 experts are stored as `_blocks`, int4 weights as `weight_packed`, each in
            // its own shape.
            let blocks = t.name != name;
            let schema_shape = shape.clone();
            let int4 = config.quant.as_ref().filter(|q| q.format == crate::quant::QuantFormat::Int4);
            let shape = match (blocks, int4) {
                (false, _) => shape,
                (true, Some(q)) => layout::int4_shapes(&shape, q.block[1]).0,
                (true, None) => layout::mxfp4_shapes(&layout::shape_of(&config, role)?).0,
            };
            if t.shape != shape {
                return Err(Error::ShapeMismatch {
                    tensor: t.name.clone(),
                    found: t.shape.clone(),
                    expected: shape,
                });
            }
            if t.dtype == DType::F8E4M3 && config.quant.is_none() {
                return Err(Error::Tensor {
                    file: shards[shard].name.clone(),
                    tensor: name,
                    reason: "is float8, but config.json has no `quantization_config`: moegrow reads block-scaled fp8 (`weight_block_size` with `weight_scale_inv` tensors) and will not guess the scales".into(),
                });
            }
            let scale = match scales.remove(&role) {
                Some((ss, st)) => {
                    let mut e = scale_entry(&config, &shards[ss].name, &name, &schema_shape, t, ss, st)?;
                    if int4.is_some() {
                        let (sh, st) = shapes.remove(&role).ok_or_else(|| Error::Tensor {
                            file: shards[shard].name.clone(),
                            tensor: t.name.clone(),
                            reason: format!("is int4 but `{}` is missing", layout::int4_names(&name)[2]),
                        })?;
                        e.shape_dtype = check_int4_shape(&shards[sh], st, &schema_shape)?;
                    }
                    Some(e)
                }
                None if blocks && int4.is_some() => {
                    return Err(Error::Tensor {
                        file: shards[shard].name.clone(),
                        tensor: t.name.clone(),
                        reason: format!("is int4 but `{}` is missing", layout::int4_names(&name)[1]),
                    })
                }
                None if blocks => {
                    return Err(Error::Tensor {
                        file: shards[shard].name.clone(),
                        tensor: t.name.clone(),
                        reason: format!(
                            "is MXFP4 blocks but `{}` is missing",
                            layout::mxfp4_names(&name).1
                        ),
                    })
                }
                None if t.dtype == DType::F8E4M3 && config.quant.is_some() => {
                    return Err(Error::Tensor {
                        file: shards[shard].name.clone(),
                        tensor: name,
                        reason: format!(
                            "is float8 in a block-quantised checkpoint but has no `{}`",
                            crate::quant::scale_name(&t.name)
                        ),
                    })
                }
                None => None,
            };
            entries.push(TensorEntry {
                name: t.name.clone(),
                role,
                dtype: t.dtype,
                shape: t.shape.clone(),
                shard,
                range: t.range.clone(),
                scale,
            });
        }
        if let Some((_, (s, t))) = scales.iter().next() {
            return Err(Error::Tensor {
                file: shards[*s].name.clone(),
                tensor: t.name.clone(),
                reason: "is a block scale of a weight this checkpoint does not store in this layout".into(),
            });
        }
        if let Some((_, (s, t))) = shapes.iter().next() {
            return Err(Error::Tensor {
                file: shards[*s].name.clone(),
                tensor: t.name.clone(),
                reason: "is the `weight_shape` of an int4 weight this checkpoint does not store packed".into(),
            });
        }
        check_expert_dtypes(&config, &entries)?;
        let by_role = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.role, i))
            .collect();
        let metadata = shards
            .first()
            .map(|s| s.header.metadata.clone())
            .unwrap_or_default();
        Ok(Checkpoint {
            config,
            layout,
            entries,
            by_role,
            shards,
            metadata,
        })
    }

    /// Drop the pages of the memory-mapped shards from this process's resident set. The
    /// kernel keeps them in its page cache, so the next read is a cheap minor fault; calling
    /// this after each written tensor keeps a streaming job's RSS bounded by what it holds,
    /// not by how much of a multi-GB checkpoint it has touched.
    pub fn release_memory(&self) {
        #[cfg(unix)]
        for s in &self.shards {
            if let ShardData::Mmap(m) = &s.data {
                // SAFETY: the map is read-only and file-backed; after DONTNEED its pages are
                // read back from the file on the next access, so every slice stays valid.
                let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            }
        }
    }

    /// [`Checkpoint::release_memory`] for one stored tensor (and its scales), or for one
    /// expert's matrix of a stacked tensor its expert's slab: what a reader that has decoded it
    /// no longer needs resident.
    pub fn release_tensor(&self, role: Role) {
        #[cfg(unix)]
        {
            let slab = |r: &Range<usize>, x: usize, n: usize| {
                let per = r.len() / n.max(1);
                r.start + x * per..r.start + (x + 1) * per
            };
            let ranges: Vec<(usize, Range<usize>)> = match self.entry(role) {
                Ok(e) => std::iter::once((e.shard, e.range.clone()))
                    .chain(e.scale.as_ref().map(|s| (s.shard, s.range.clone())))
                    .collect(),
                Err(_) => match (role.layer_part(), layout::part_location(&self.config, role)) {
                    (Some((_, LayerRole::Expert(x, _))), Some((leaf, _))) => match self.entry(leaf) {
                        Ok(e) => {
                            let n = self.config.moe.num_experts;
                            std::iter::once((e.shard, slab(&e.range, x, n)))
                                .chain(e.scale.as_ref().map(|s| (s.shard, slab(&s.range, x, n))))
                                .collect()
                        }
                        Err(_) => Vec::new(),
                    },
                    _ => Vec::new(),
                },
            };
            for (shard, r) in ranges {
                if let ShardData::Mmap(m) = &self.shards[shard].data {
                    // SAFETY: as in `release_memory`.
                    let _ = unsafe {
                        m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, r.start, r.len())
                    };
                }
            }
        }
        #[cfg(not(unix))]
        let _ = role;
    }

    /// What the shards' headers do that the `safetensors` library refuses (moegrow reads them;
    /// transformers would not), each naming its file.
    pub fn warnings(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| s.header.warnings.iter().map(move |w| format!("{}: {w}", s.name)))
            .collect()
    }

    /// All tensors, in canonical order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn entry(&self, role: Role) -> Result<&TensorEntry> {
        self.by_role
            .get(&role)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| Error::MissingTensor {
                tensor: self.config.tensor_name(role, self.layout),
                why: "requested by moegrow".into(),
            })
    }

    pub fn has(&self, role: Role) -> bool {
        self.by_role.contains_key(&role)
    }

    /// The raw little-endian bytes of a stored tensor, as stored.
    pub fn bytes(&self, role: Role) -> Result<&[u8]> {
        let e = self.entry(role)?;
        let shard = &self.shards[e.shard];
        shard
            .data
            .slice(e.range.clone())
            .ok_or_else(|| Error::Tensor {
                file: shard.name.clone(),
                tensor: e.name.clone(),
                reason: match shard.data {
                    ShardData::Sparse(_) => "its bytes have not been read yet".into(),
                    _ => format!("bytes {:?} lie past the end of the file", e.range),
                },
            })
    }

    /// A tensor (stored, a stacked expert leaf or one expert's matrix) converted to f32.
    pub fn f32(&self, role: Role) -> Result<Vec<f32>> {
        crate::schema::read_f32(self, role)
    }

    /// The stored bytes of one routed expert's matrix, whatever the layout (in the schema's
    /// order). In the fused layout each expert's gate rows, up rows and down matrix are
    /// contiguous, so this borrows — except for gpt-oss's arranged stacks, which it reorders.
    pub fn expert_bytes(&self, layer: usize, expert: usize, proj: Proj) -> Result<(DType, Cow<'_, [u8]>)> {
        if expert >= self.config.moe.num_experts {
            return Err(Error::Invalid(format!(
                "expert {expert} out of range (the model has {})",
                self.config.moe.num_experts
            )));
        }
        let role = Role::Layer(layer, LayerRole::Expert(expert, proj));
        Ok((self.dtype_of(role)?, self.read(role)?))
    }

    /// The stored dtype of one routed expert's matrix, from the header alone.
    pub fn expert_dtype(&self, layer: usize, expert: usize, proj: Proj) -> Result<DType> {
        self.dtype_of(Role::Layer(layer, LayerRole::Expert(expert, proj)))
    }

    /// One routed expert's matrix in f32, `[I, H]` for gate/up and `[H, I]` for down.
    pub fn expert_f32(&self, layer: usize, expert: usize, proj: Proj) -> Result<Vec<f32>> {
        self.f32(Role::Layer(layer, LayerRole::Expert(expert, proj)))
    }

    /// The dtype most of the bytes are stored in (what "keep the input's dtype" means).
    pub fn dominant_dtype(&self) -> DType {
        let mut by: BTreeMap<DType, usize> = BTreeMap::new();
        for e in &self.entries {
            *by.entry(e.dtype).or_default() += e.nbytes();
        }
        by.into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or(DType::F32, |(d, _)| d)
    }

    /// Tensors to write this checkpoint back out, in `layout` and, if given, one `dtype`.
    /// Bytes are borrowed when nothing changes, so a round trip is a plain copy.
    pub fn export(
        &self,
        layout: ExpertLayout,
        dtype: Option<DType>,
    ) -> Result<Vec<OutputTensor<'_>>> {
        let storage = match dtype {
            Some(d) => layout::Storage::Values(d),
            None => layout::Storage::AsSource,
        };
        layout::output_tensors(self, layout, storage)
    }
}

impl TensorSource for Checkpoint {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn dtype_of(&self, role: Role) -> Result<DType> {
        if let Some(&i) = self.by_role.get(&role) {
            return Ok(value_dtype(&self.entries[i]));
        }
        // A stacked leaf of a per-expert checkpoint (its parts share one dtype, checked on
        // open), or one expert's matrix of a fused one.
        if let Some(parts) = layout::leaf_parts(&self.config, role) {
            if let Some(first) = parts.first() {
                return Ok(value_dtype(self.entry(*first)?));
            }
        }
        if let Some((leaf, _)) = layout::part_location(&self.config, role) {
            return Ok(value_dtype(self.entry(leaf)?));
        }
        Ok(value_dtype(self.entry(role)?))
    }

    fn quant_of(&self, role: Role) -> Result<Option<crate::quant::BlockQuant>> {
        let stored = |r: Role| -> Result<Option<crate::quant::BlockQuant>> {
            Ok(self.entry(r)?.scale.as_ref().map(|s| match s.format {
                crate::quant::QuantFormat::Mxfp4 => crate::quant::BlockQuant::mxfp4(),
                crate::quant::QuantFormat::Int4 => crate::quant::BlockQuant::int4(s.block[1], s.dtype, s.shape_dtype),
                crate::quant::QuantFormat::Fp8E4M3 => crate::quant::BlockQuant::fp8(
                    s.block,
                    s.dtype,
                    self.config.quant.as_ref().is_some_and(|q| q.pow2_scales),
                ),
            }))
        };
        if self.has(role) {
            return stored(role);
        }
        // A view in the other layout is quantised as the tensors it is cut from or made of.
        if let Some(parts) = layout::leaf_parts(&self.config, role) {
            return match parts.first() {
                Some(p) => stored(*p),
                None => Ok(None),
            };
        }
        match layout::part_location(&self.config, role) {
            Some((leaf, _)) => stored(leaf),
            None => stored(role),
        }
    }

    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        let n = self.config.moe.num_experts;
        if self.has(role) && layout::arranged(&self.config, role) {
            return self.leaf_experts(role, 0..n, true);
        }
        if let Some((leaf, _)) = layout::part_location(&self.config, role)
            .filter(|(leaf, _)| !self.has(role) && layout::arranged(&self.config, *leaf))
        {
            // One expert's rows of its slab's grid: gate's, up's (the second half), or down's.
            let Some((_, LayerRole::Expert(x, p))) = role.layer_part() else {
                unreachable!("part_location answers for expert matrices only")
            };
            let slab = self.leaf_experts(leaf, x..x + 1, true)?;
            let len = if p == Proj::Down { slab.len() } else { slab.len() / 2 };
            let at = if p == Proj::Up { len } else { 0 };
            return Ok(Cow::Owned(slab[at..at + len].to_vec()));
        }
        let stored = |r: Role| -> Result<Cow<'_, [u8]>> {
            let e = self.entry(r)?;
            let s = e.scale.as_ref().ok_or_else(|| {
                Error::Invalid(format!("`{}` is not block-quantised", e.name))
            })?;
            let shard = &self.shards[s.shard];
            shard
                .data
                .slice(s.range.clone())
                .map(Cow::Borrowed)
                .ok_or_else(|| Error::Tensor {
                    file: shard.name.clone(),
                    tensor: s.name.clone(),
                    reason: "its bytes have not been read yet".into(),
                })
        };
        if self.has(role) {
            return stored(role);
        }
        let q = self.quant_of(role)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not block-quantised",
                layout::display_name(&self.config, role)
            ))
        })?;
        layout::experts_scales(&self.config, role, q, stored)
    }

    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        // A stacked leaf of a per-expert checkpoint: its experts decoded (or dequantised) one
        // by one, straight into the result — no assembled copy of the stored bytes, and the
        // experts' float8 grids need not line up with the stacked tensor's.
        if !self.has(role) {
            if let Some(parts) = layout::leaf_parts(&self.config, role) {
                let mut out = Vec::new();
                for p in parts {
                    out.extend(self.read_f32(p)?);
                }
                return Ok(out);
            }
        }
        if !self.has(role) && self.quant_of(role)?.is_some() {
            // One expert of a block-quantised fused checkpoint: its slab of the stacked
            // tensor dequantised with the stacked grid, then the wanted rows.
            if let Some((leaf, elems)) = layout::part_location(&self.config, role) {
                let shape = layout::shape_of(&self.config, leaf)?;
                let per_expert = shape[1] * shape[2];
                let x = elems.start / per_expert;
                let q = self.quant_of(leaf)?.expect("checked");
                let scales =
                    crate::dtype::decode_f32(q.scale_dtype, &self.leaf_experts(leaf, x..x + 1, true)?);
                let bytes = self.leaf_experts(leaf, x..x + 1, false)?;
                let slab = crate::quant::dequantize(&bytes, &shape[1..], &scales, q)?;
                let off = elems.start - x * per_expert;
                return Ok(slab[off..off + elems.len()].to_vec());
            }
        }
        let v = crate::schema::decode_or_dequantize(self, role)?;
        // Decoded: the mapped pages need not stay resident (a layer-by-layer pass over a
        // model larger than memory relies on it).
        self.release_tensor(role);
        Ok(v)
    }

    fn release(&self, role: Role) {
        self.release_tensor(role);
    }

    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        let n = self.config.moe.num_experts;
        if self.has(role) {
            if layout::arranged(&self.config, role) {
                return self.leaf_experts(role, 0..n, false);
            }
            return Ok(Cow::Borrowed(self.bytes(role)?));
        }
        if let Some((leaf, elems)) = layout::part_location(&self.config, role)
            .filter(|(leaf, _)| layout::arranged(&self.config, *leaf))
        {
            // One expert of gpt-oss's arranged stack: its slab rearranged, then its rows.
            let per_expert = layout::shape_of(&self.config, leaf)?.iter().product::<usize>() / n.max(1);
            let x = elems.start / per_expert.max(1);
            let slab = self.leaf_experts(leaf, x..x + 1, false)?;
            let dtype = self.dtype_of(leaf)?;
            let (start, end) = (elems.start - x * per_expert, elems.end - x * per_expert);
            let (Some(a), Some(b)) = (dtype.bytes_for(start), dtype.bytes_for(end)) else {
                return Err(Error::Invalid(format!(
                    "{} does not start on a byte boundary of its {} tensor",
                    layout::display_name(&self.config, role),
                    dtype.name()
                )));
            };
            return Ok(Cow::Owned(slab[a..b].to_vec()));
        }
        if let Some((leaf, _)) = layout::part_location(&self.config, role) {
            let dtype = self.entry(leaf)?.dtype;
            return layout::slice_part(&self.config, role, dtype, Cow::Borrowed(self.bytes(leaf)?));
        }
        layout::assemble(&self.config, role, |p| Ok(Cow::Borrowed(self.bytes(p)?)))
    }
}

/// The dtype of a stored tensor's values: packed fp4 for MXFP4 blocks (stored as U8).
fn value_dtype(e: &TensorEntry) -> DType {
    match &e.scale {
        Some(s) if s.format == crate::quant::QuantFormat::Mxfp4 => DType::F4,
        Some(s) if s.format == crate::quant::QuantFormat::Int4 => DType::I4,
        _ => e.dtype,
    }
}

impl Checkpoint {
    /// The schema-order bytes of experts `experts` of stacked leaf `leaf` (its values, or
    /// with `scales` its scale grid): borrowed from the file, or for gpt-oss's arranged
    /// tensors rearranged ([`layout::from_disk`]) one expert slab at a time.
    fn leaf_experts(&self, leaf: Role, experts: Range<usize>, scales: bool) -> Result<Cow<'_, [u8]>> {
        let e = self.entry(leaf)?;
        let n = self.config.moe.num_experts.max(1);
        let (bytes, kind) = if scales {
            let s = e.scale.as_ref().ok_or_else(|| {
                Error::Invalid(format!("`{}` is not block-quantised", e.name))
            })?;
            let shard = &self.shards[s.shard];
            let b = shard.data.slice(s.range.clone()).ok_or_else(|| Error::Tensor {
                file: shard.name.clone(),
                tensor: s.name.clone(),
                reason: "its bytes have not been read yet".into(),
            })?;
            let kind = match s.format {
                crate::quant::QuantFormat::Mxfp4 => layout::Stored::Mxfp4Scales,
                crate::quant::QuantFormat::Fp8E4M3 | crate::quant::QuantFormat::Int4 => layout::Stored::Values(s.dtype),
            };
            (b, kind)
        } else {
            let kind = match &e.scale {
                Some(s) if s.format == crate::quant::QuantFormat::Mxfp4 => layout::Stored::Mxfp4Blocks,
                _ => layout::Stored::Values(e.dtype),
            };
            (self.bytes(leaf)?, kind)
        };
        let per = bytes.len() / n;
        let part = &bytes[experts.start * per..experts.end * per];
        if !layout::arranged(&self.config, leaf) {
            return Ok(Cow::Borrowed(part));
        }
        if scales && matches!(kind, layout::Stored::Values(_)) {
            return Err(Error::Invalid(format!(
                "`{}`: gpt-oss's experts are MXFP4 or plain values, not float8",
                e.name
            )));
        }
        Ok(Cow::Owned(layout::from_disk(&self.config, leaf, kind, part)?))
    }
}

/// A weight's scale tensor, checked: the weight is float8 e4m3, the scales are in a dtype
/// moegrow reads, and the grid is the weight's shape in the config's blocks.
fn scale_entry(
    config: &ModelConfig,
    file: &str,
    weight: &str,
    schema_shape: &[usize],
    w: &HeaderTensor,
    shard: usize,
    s: &HeaderTensor,
) -> Result<ScaleEntry> {
    let bad = |reason: String| Error::Tensor {
        file: file.to_string(),
        tensor: s.name.clone(),
        reason,
    };
    let quant = config
        .quant
        .as_ref()
        .expect("scales are mapped only for quantised configs");
    let block = quant.block;
    if quant.format == crate::quant::QuantFormat::Int4 {
        check_int4_scale(weight, w, s, schema_shape, block[1]).map_err(bad)?;
    } else if quant.format == crate::quant::QuantFormat::Mxfp4 {
        if w.dtype != DType::U8 {
            return Err(bad(format!("scales `{}`, which is {} rather than U8 MXFP4 blocks", w.name, w.dtype.name())));
        }
        if !matches!(s.dtype, DType::U8 | DType::F8E8M0) {
            return Err(bad(format!(
                "MXFP4 scales must be E8M0 exponents stored as U8 (or F8_E8M0), found {}",
                s.dtype.name()
            )));
        }
        // The weight's shape was checked against the schema; its scales have one fewer axis.
        let want = w.shape[..w.shape.len().saturating_sub(1)].to_vec();
        if s.shape != want {
            return Err(bad(format!("has shape {:?}; `{}` {:?} needs {want:?}", s.shape, w.name, w.shape)));
        }
    } else {
        check_fp8_scale(weight, w, s, block).map_err(bad)?;
    }
    Ok(ScaleEntry {
        name: s.name.clone(),
        dtype: s.dtype,
        shape: s.shape.clone(),
        shard,
        range: s.range.clone(),
        block,
        format: quant.format,
        shape_dtype: DType::I32,
    })
}

/// An int4 weight's packed codes and scales: I32 words, scales in a float dtype, one per
/// group of a row, the columns whole groups of whole words (what compressed-tensors writes
/// for group quantisation, and what moegrow maps byte for byte).
fn check_int4_scale(weight: &str, w: &HeaderTensor, s: &HeaderTensor, shape: &[usize], group: usize) -> std::result::Result<(), String> {
    if w.dtype != DType::I32 {
        return Err(format!("scales `{}`, which is {} rather than I32 packed int4", w.name, w.dtype.name()));
    }
    if !matches!(s.dtype, DType::BF16 | DType::F16 | DType::F32) {
        return Err(format!("int4 group scales in {} are not supported (BF16, F16, F32)", s.dtype.name()));
    }
    let cols = shape.last().copied().unwrap_or(0);
    if !cols.is_multiple_of(8) || !cols.is_multiple_of(group) {
        return Err(format!(
            "`{weight}` has {cols} columns, not whole groups of {group} in whole 8-code words: moegrow maps such int4 rows only"
        ));
    }
    let want = layout::int4_shapes(shape, group).1;
    if s.shape != want {
        return Err(format!("has shape {:?}; `{weight}` {shape:?} in groups of {group} needs {want:?}", s.shape));
    }
    Ok(())
}

/// An int4 weight's `weight_shape`: `[2]` integers equal to the weight's shape (checked when
/// its bytes are at hand; a browser's lazily read shard checks them when read). Returns its
/// dtype, which outputs keep.
fn check_int4_shape(shard: &Shard, t: &HeaderTensor, shape: &[usize]) -> Result<DType> {
    let bad = |reason: String| Error::Tensor { file: shard.name.clone(), tensor: t.name.clone(), reason };
    if !matches!(t.dtype, DType::I32 | DType::I64) || t.shape != [2] {
        return Err(bad(format!("is {} {:?}; an int4 weight's shape is I32 or I64 [2]", t.dtype.name(), t.shape)));
    }
    if let Some(b) = shard.data.slice(t.range.clone()) {
        let got: Vec<i64> = match t.dtype {
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(c);
                    i32::from_le_bytes(w) as i64
                })
                .collect(),
            _ => b
                .chunks_exact(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(c);
                    i64::from_le_bytes(w)
                })
                .collect(),
        };
        let want: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        if got != want {
            return Err(bad(format!("holds {got:?}, but the weight is {want:?}")));
        }
    }
    Ok(t.dtype)
}

/// A float8 weight's scale grid: e4m3 values, a scale dtype moegrow reads, the block grid.
fn check_fp8_scale(weight: &str, w: &HeaderTensor, s: &HeaderTensor, block: [usize; 2]) -> std::result::Result<(), String> {
    if w.dtype != DType::F8E4M3 {
        return Err(format!(
            "scales `{weight}`, which is {} rather than F8_E4M3",
            w.dtype.name()
        ));
    }
    if !crate::quant::is_scale_dtype(s.dtype) {
        return Err(format!(
            "block scales in {} are not supported (F32, BF16, F16, F8_E8M0)",
            s.dtype.name()
        ));
    }
    let want = crate::quant::scale_shape(&w.shape, block);
    if s.shape != want {
        return Err(format!(
            "has shape {:?}; `{weight}` {:?} in {}x{} blocks needs {want:?}",
            s.shape, w.shape, block[0], block[1]
        ));
    }
    Ok(())
}

/// Every expert matrix of one stacked leaf must share a dtype: the fused layout and every
/// stacked computation hold them in one buffer. Checked once, on open, so that nothing later
/// concatenates bytes of two dtypes.
fn check_expert_dtypes(cfg: &ModelConfig, entries: &[TensorEntry]) -> Result<()> {
    let mut first: HashMap<Role, (&str, DType)> = HashMap::new();
    for e in entries {
        let Some((leaf, _)) = layout::part_location(cfg, e.role) else {
            continue;
        };
        match first.get(&leaf) {
            None => {
                first.insert(leaf, (&e.name, e.dtype));
            }
            Some(&(name, dtype)) if dtype != e.dtype => {
                return Err(Error::Invalid(format!(
                    "expert tensors of one layer must share a dtype: `{name}` is {} but `{}` is {}",
                    dtype.name(),
                    e.name,
                    e.dtype.name()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Parse `model.safetensors.index.json`: the shard files (in first-use order) and the
/// tensor → file map.
pub fn parse_index(text: &str) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let bad = |r: String| Error::Invalid(format!("{INDEX_FILE}: {r}"));
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files = Vec::new();
    let mut out = BTreeMap::new();
    for (k, f) in map {
        let f = f
            .as_str()
            .ok_or_else(|| bad(format!("`weight_map.{k}` must be a file name")))?;
        if f.contains('/') || f.contains('\\') || f == ".." {
            return Err(bad(format!("shard name `{f}` must be a plain file name")));
        }
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
        out.insert(k.clone(), f.to_string());
    }
    if files.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok((files, out))
}
