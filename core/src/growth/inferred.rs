//! `grow --infer-schema`: growth of a checkpoint whose family moegrow has no schema for, with
//! the schema inferred from tensor names and shapes.
//!
//! Growth needs to know which tensors belong to which layer, which are routed experts, which
//! are the router and its biases, and which config keys count layers and experts — not the
//! forward pass. All of it can be read off a Hugging Face checkpoint:
//! - the decoder layers are the one stack `….layers.{i}.…` with `num_hidden_layers` entries
//!   (other stacks, e.g. a vision tower's, are carried verbatim); indices past it are
//!   multi-token-prediction blocks only when a config key says how many there are;
//! - routed experts are `….experts.{e}.…` (one tensor per expert and matrix) or stacked
//!   `….experts.X` tensors whose first dimension is the expert count;
//! - next to them, under the same module, the router is the one `[E, H]` tensor and routing
//!   biases the `[E]` / `[1, E]` ones;
//! - the expert count and top-k are the config keys (top level or `text_config`) known to hold
//!   them, per-layer lists the config arrays with one entry per layer.
//!
//! Anything that does not fit is refused with the reason, never guessed: two candidate layer
//! stacks, two routers, experts with differing tensors, a dense/MoE mix whose config rule is
//! unknown (depth growth), routing that may not split a twin's weight (width growth).
//! What was inferred is printed by the caller ([`Inferred::describe`]). Since moegrow does not
//! know such a family's math, it cannot check that the grown model computes what it should:
//! the caller says so, and `--verify` is not available.

use crate::checkpoint::OutputTensor;
#[cfg(not(target_arch = "wasm32"))]
use crate::checkpoint::{parse_header, parse_index};
use crate::dtype::{try_decode_f32, try_encode_f32, DType};
use crate::error::{Error, Result};
use crate::growth::noise::{normals, stream_id};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Config keys that hold the routed-expert count, as the families spell it.
const EXPERT_KEYS: &[&str] = &[
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "moe_num_experts",
    "num_routed_experts",
];
/// Config keys that hold the experts per token.
const TOPK_KEYS: &[&str] = &[
    "num_experts_per_tok",
    "experts_per_token",
    "moe_k",
    "moe_topk",
    "top_k",
    "num_selected_experts",
];
/// Config keys that count multi-token-prediction blocks stored after the decoder layers.
const EXTRA_BLOCK_KEYS: &[&str] = &["num_nextn_predict_layers", "num_mtp_layers", "mtp_num_layers"];

/// One tensor of a checkpoint, as its header declares it.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    shard: usize,
    range: Range<usize>,
}

/// A checkpoint read without a family: `config.json` as JSON and the tensors' headers; shards
/// memory-mapped.
pub struct RawCheckpoint {
    pub raw: Map<String, Value>,
    pub tensors: Vec<RawTensor>,
    /// Index into `tensors` by name (hub checkpoints have hundreds of thousands).
    by_name: std::collections::HashMap<String, usize>,
    shards: Vec<RawShard>,
}

enum RawShard {
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
}

impl RawShard {
    fn bytes(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            RawShard::Mmap(m) => m,
            RawShard::Bytes(b) => b,
        }
    }
}

impl RawCheckpoint {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<RawCheckpoint> {
        let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
        let raw = match serde_json::from_str(&read(dir.join("config.json"))?) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Error::config("expected a JSON object at the top level")),
            Err(e) => return Err(Error::config(format!("not valid JSON: {e}"))),
        };
        let index = dir.join("model.safetensors.index.json");
        let (files, weight_map) = if index.exists() {
            let (files, map) = parse_index(&read(index)?)?;
            (files, Some(map))
        } else {
            (vec!["model.safetensors".to_string()], None)
        };
        let mut shards = Vec::new();
        let mut tensors = Vec::new();
        let mut seen = BTreeSet::new();
        for (si, f) in files.iter().enumerate() {
            let path = dir.join(f);
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map; a file changed while we read it is the user's race.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let header = parse_header(f, &map[..], map.len() as u64)?;
            for t in header.tensors {
                if !seen.insert(t.name.clone()) {
                    return Err(Error::Tensor {
                        file: f.clone(),
                        tensor: t.name,
                        reason: "appears twice in the checkpoint".into(),
                    });
                }
                tensors.push(RawTensor {
                    name: t.name,
                    dtype: t.dtype,
                    shape: t.shape,
                    shard: si,
                    range: t.range,
                });
            }
            shards.push(RawShard::Mmap(map));
        }
        if let Some(map) = weight_map {
            if let Some((name, file)) = map.iter().find(|(n, _)| !seen.contains(n.as_str())) {
                return Err(Error::MissingTensor {
                    tensor: name.clone(),
                    why: format!("model.safetensors.index.json lists it in {file}, but that file does not contain it"),
                });
            }
        }
        Ok(RawCheckpoint::new(raw, tensors, shards))
    }

    fn new(raw: Map<String, Value>, tensors: Vec<RawTensor>, shards: Vec<RawShard>) -> RawCheckpoint {
        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        RawCheckpoint { raw, tensors, by_name, shards }
    }

    /// A checkpoint from in-memory parts (tests).
    pub fn from_parts(raw: Map<String, Value>, tensors: Vec<(String, DType, Vec<usize>, Vec<u8>)>) -> RawCheckpoint {
        let mut shards = Vec::new();
        let tensors = tensors
            .into_iter()
            .enumerate()
            .map(|(i, (name, dtype, shape, bytes))| {
                let n = bytes.len();
                shards.push(RawShard::Bytes(bytes));
                RawTensor { name, dtype, shape, shard: i, range: 0..n }
            })
            .collect();
        RawCheckpoint::new(raw, tensors, shards)
    }

    pub fn bytes(&self, t: &RawTensor) -> &[u8] {
        &self.shards[t.shard].bytes()[t.range.clone()]
    }

    /// Drop the mapped pages from the resident set (as [`crate::Checkpoint::release_memory`]):
    /// a streaming growth calls it as it writes, so its RSS is bounded by what it holds.
    pub fn release_memory(&self) {
        #[cfg(unix)]
        for s in &self.shards {
            if let RawShard::Mmap(m) = s {
                // SAFETY: read-only, file-backed: the pages are read back on the next access.
                let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            }
        }
    }

    /// The tensor `name`; an error when a schema inferred from another checkpoint names it.
    fn tensor(&self, name: &str) -> Result<&RawTensor> {
        self.by_name.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| {
            Error::Invalid(format!(
                "internal: `{name}` is not in this checkpoint (was the schema inferred from another one?)"
            ))
        })
    }

    /// The shape of a tensor the checkpoint has (empty for one it has not).
    fn shape(&self, name: &str) -> Vec<usize> {
        self.tensor(name).map(|t| t.shape.clone()).unwrap_or_default()
    }

    /// The language model's config: `text_config` of a multimodal wrapper, or the whole.
    fn text(&self, key: &Option<String>) -> Result<&Map<String, Value>> {
        match key {
            None => Ok(&self.raw),
            Some(k) => self.raw.get(k).and_then(Value::as_object).ok_or_else(|| {
                Error::config(format!("`{k}` is not an object"))
            }),
        }
    }
}

/// Where a layer's routed experts are.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpertsAt {
    /// `{module}experts.{e}.{suffix}` for every expert and suffix.
    PerExpert { suffixes: Vec<String> },
    /// `{module}experts.{name}` tensors stacked over experts (first dimension E).
    Stacked { names: Vec<String> },
}

/// The MoE block of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeBlock {
    /// The module path inside the layer, up to `experts.` (`mlp.`, `block_sparse_moe.`).
    pub module: String,
    pub experts: ExpertsAt,
    /// The `[E, H]` router weight, relative to the layer.
    pub router: String,
    /// `[E]` / `[1, E]` routing biases, relative to the layer.
    pub biases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Every tensor of the layer, relative to `{prefix}{i}.`.
    pub tensors: Vec<String>,
    pub moe: Option<MoeBlock>,
}

/// The schema of a checkpoint, inferred.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// `Some("text_config")` when the language model's config is nested (multimodal wrappers).
    pub text_key: Option<String>,
    /// The decoder layers' name prefix, up to the index (`model.layers.`).
    pub prefix: String,
    pub num_layers: usize,
    /// Blocks stored after the layers (`{prefix}{num_layers + b}.…`) and the key counting them.
    pub extra_blocks: usize,
    pub extra_key: Option<String>,
    pub hidden: usize,
    /// Decoder layers, then the extra blocks.
    pub layers: Vec<LayerInfo>,
    /// Routed experts per MoE layer (0: none).
    pub experts: usize,
    pub expert_keys: Vec<String>,
    pub topk: Option<(String, usize)>,
    /// Config arrays with one entry per layer.
    pub per_layer_lists: Vec<String>,
    /// Config lists of layer indices (they cannot follow a layer map).
    pub layer_index_lists: Vec<String>,
    /// Tensors outside the decoder layers, carried verbatim.
    pub carried: Vec<String>,
    /// Other stacks of layers (`prefix`, count), carried verbatim.
    pub other_stacks: Vec<(String, usize)>,
}

/// `(prefix, index, rest)` of `…layers.{i}.rest`: the first `layers.` followed by an index.
fn split_layer(name: &str) -> Option<(&str, usize, &str)> {
    let mut from = 0;
    while let Some(p) = name[from..].find("layers.") {
        let at = from + p;
        let after = &name[at + 7..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if (at == 0 || name.as_bytes()[at - 1] == b'.') && digits > 0 && after.as_bytes().get(digits) == Some(&b'.') {
            let idx = after[..digits].parse().ok()?;
            return Some((&name[..at + 7], idx, &after[digits + 1..]));
        }
        from = at + 7;
    }
    None
}

/// `(module, Some(e), suffix)` of `{module}experts.{e}.{suffix}`, `(module, None, name)` of
/// `{module}experts.{name}`.
fn split_expert(rest: &str) -> Option<(&str, Option<usize>, &str)> {
    let at = rest.find("experts.").filter(|&a| a == 0 || rest.as_bytes()[a - 1] == b'.')?;
    let after = &rest[at + 8..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && after.as_bytes().get(digits) == Some(&b'.') {
        Some((&rest[..at], after[..digits].parse().ok(), &after[digits + 1..]))
    } else {
        Some((&rest[..at], None, after))
    }
}

fn int_of(v: &Value) -> Option<usize> {
    v.as_u64().map(|n| n as usize)
}

impl Inferred {
    pub fn infer(ck: &RawCheckpoint) -> Result<Inferred> {
        let nested = ck
            .raw
            .get("text_config")
            .and_then(Value::as_object)
            .filter(|t| t.contains_key("num_hidden_layers"));
        let text_key = nested.map(|_| "text_config".to_string());
        let text = nested.unwrap_or(&ck.raw);
        let need = |k: &str| {
            text.get(k).and_then(int_of).ok_or_else(|| {
                Error::config(format!("`{k}` is missing: --infer-schema needs it to find the layers"))
            })
        };
        let num_layers = need("num_hidden_layers")?;
        let hidden = need("hidden_size")?;
        if num_layers == 0 {
            return Err(Error::config("`num_hidden_layers` must be positive"));
        }
        // Stacks of layers by prefix.
        let mut stacks: BTreeMap<&str, BTreeMap<usize, Vec<&str>>> = BTreeMap::new();
        let mut outside = Vec::new();
        for t in &ck.tensors {
            match split_layer(&t.name) {
                Some((p, i, rest)) => stacks.entry(p).or_default().entry(i).or_default().push(rest),
                None => outside.push(t.name.clone()),
            }
        }
        let covers = |m: &BTreeMap<usize, Vec<&str>>| (0..num_layers).all(|i| m.contains_key(&i));
        let candidates: Vec<&str> = stacks.iter().filter(|(_, m)| covers(m)).map(|(p, _)| *p).collect();
        let prefix = match candidates.as_slice() {
            [p] => p.to_string(),
            [] => {
                return Err(Error::Invalid(format!(
                    "--infer-schema: no stack of tensors `….layers.{{i}}.…` covers the {num_layers} layers of `num_hidden_layers` (stacks found: {})",
                    stacks.iter().map(|(p, m)| format!("`{p}` with {}", m.len())).collect::<Vec<_>>().join(", ")
                )))
            }
            many => {
                return Err(Error::Invalid(format!(
                    "--infer-schema: {} stacks of layers could be the decoder ({}); refusing to guess",
                    many.len(),
                    many.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let stack = &stacks[prefix.as_str()];
        let extra: Vec<usize> = stack.keys().copied().filter(|&i| i >= num_layers).collect();
        let (extra_blocks, extra_key) = if extra.is_empty() {
            (0, None)
        } else {
            let n = extra.len();
            if extra != (num_layers..num_layers + n).collect::<Vec<_>>() {
                return Err(Error::Invalid(format!(
                    "--infer-schema: `{prefix}` has layers past num_hidden_layers ({num_layers}) that are not consecutive: {extra:?}"
                )));
            }
            match EXTRA_BLOCK_KEYS.iter().find(|k| text.get(**k).and_then(int_of) == Some(n)) {
                Some(k) => (n, Some(k.to_string())),
                None => {
                    return Err(Error::Invalid(format!(
                        "--infer-schema: `{prefix}` has {n} layer(s) after the {num_layers} of num_hidden_layers, and no config key ({}) says what they are",
                        EXTRA_BLOCK_KEYS.join(", ")
                    )))
                }
            }
        };
        let mut layers = Vec::new();
        let mut experts = 0usize;
        for i in 0..num_layers + extra_blocks {
            let rests = &stack[&i];
            let layer_name = |r: &str| format!("{prefix}{i}.{r}");
            let shape = |r: &str| ck.shape(&layer_name(r));
            let moe = infer_moe(i, rests, hidden, &layer_name, &shape)?;
            if let Some((_, e)) = &moe {
                if experts != 0 && *e != experts {
                    return Err(Error::Invalid(format!(
                        "--infer-schema: layer {i} has {e} experts, an earlier layer {experts}; moegrow grows models with one expert count"
                    )));
                }
                experts = *e;
            }
            let mut tensors: Vec<String> = rests.iter().map(|r| r.to_string()).collect();
            tensors.sort();
            layers.push(LayerInfo { tensors, moe: moe.map(|(m, _)| m) });
        }
        let expert_keys: Vec<String> = if experts == 0 {
            Vec::new()
        } else {
            let known: Vec<String> = EXPERT_KEYS
                .iter()
                .filter(|k| text.get(**k).and_then(int_of) == Some(experts))
                .map(|k| k.to_string())
                .collect();
            if known.is_empty() {
                let any: Vec<String> = text
                    .iter()
                    .filter(|(_, v)| int_of(v) == Some(experts))
                    .map(|(k, _)| k.clone())
                    .collect();
                if any.len() == 1 { any } else { Vec::new() }
            } else {
                known
            }
        };
        let topk = TOPK_KEYS
            .iter()
            .find_map(|k| text.get(*k).and_then(int_of).map(|v| (k.to_string(), v)));
        let mut per_layer_lists = Vec::new();
        let mut layer_index_lists = Vec::new();
        for (k, v) in text {
            let Value::Array(a) = v else { continue };
            if k == "architectures" || k.ends_with("token_id") || k.ends_with("token_ids") {
                continue;
            }
            if a.len() == num_layers {
                per_layer_lists.push(k.clone());
            } else if k.contains("layer") && !a.is_empty() && a.iter().all(|x| x.as_u64().is_some()) {
                layer_index_lists.push(k.clone());
            }
        }
        let other_stacks = stacks
            .iter()
            .filter(|(p, _)| **p != prefix)
            .map(|(p, m)| (p.to_string(), m.len()))
            .collect();
        let mut carried = outside;
        for (p, m) in &stacks {
            if *p != prefix {
                for (i, rests) in m {
                    carried.extend(rests.iter().map(|r| format!("{p}{i}.{r}")));
                }
            }
        }
        Ok(Inferred {
            text_key,
            prefix,
            num_layers,
            extra_blocks,
            extra_key,
            hidden,
            layers,
            experts,
            expert_keys,
            topk,
            per_layer_lists,
            layer_index_lists,
            carried,
            other_stacks,
        })
    }

    /// What was inferred, one line per fact.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!(
            "layers: {} under `{}`{}",
            self.num_layers,
            self.prefix,
            match &self.extra_key {
                Some(k) => format!(", then {} block(s) counted by `{k}`", self.extra_blocks),
                None => String::new(),
            }
        )];
        let moe: Vec<usize> = (0..self.num_layers).filter(|&i| self.layers[i].moe.is_some()).collect();
        if let Some(m) = self.layers.iter().find_map(|l| l.moe.as_ref()) {
            let experts = match &m.experts {
                ExpertsAt::PerExpert { suffixes } => format!(
                    "one tensor per expert: `{}experts.{{e}}.{{{}}}`",
                    m.module,
                    suffixes.join(",")
                ),
                ExpertsAt::Stacked { names } => format!(
                    "stacked over experts: `{}experts.{{{}}}`",
                    m.module,
                    names.join(",")
                ),
            };
            out.push(format!(
                "MoE layers: {} of {} ({}), {} routed experts, {experts}",
                moe.len(),
                self.num_layers,
                ranges(&moe),
                self.experts
            ));
            out.push(format!(
                "router: `{}` [{}, {}]{}",
                m.router,
                self.experts,
                self.hidden,
                if m.biases.is_empty() {
                    String::new()
                } else {
                    format!("; routing biases: {}", m.biases.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", "))
                }
            ));
        } else {
            out.push("no routed experts".into());
        }
        let keys = |v: &[String]| if v.is_empty() { "none found".to_string() } else { v.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ") };
        out.push(format!(
            "config{}: expert count in {}; top-k in {}; per-layer lists: {}",
            self.text_key.as_ref().map(|k| format!(" (`{k}`)")).unwrap_or_default(),
            keys(&self.expert_keys),
            self.topk.as_ref().map(|(k, v)| format!("`{k}` = {v}")).unwrap_or_else(|| "none found".into()),
            keys(&self.per_layer_lists),
        ));
        out.push(format!(
            "carried verbatim: {} tensor(s) outside the layers{}",
            self.carried.len(),
            if self.other_stacks.is_empty() {
                String::new()
            } else {
                format!(
                    " (including the stacks {})",
                    self.other_stacks.iter().map(|(p, n)| format!("`{p}` ×{n}")).collect::<Vec<_>>().join(", ")
                )
            }
        ));
        out
    }
}

/// `0..3, 5, 7..9`.
fn ranges(v: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { v[i].to_string() } else { format!("{}..{}", v[i], v[j]) });
        i = j + 1;
    }
    parts.join(", ")
}

/// The MoE block of layer `i` (and its expert count) from its tensors' names relative to the
/// layer, or `None` for a dense layer.
fn infer_moe(
    i: usize,
    rests: &[&str],
    hidden: usize,
    name: &dyn Fn(&str) -> String,
    shape: &dyn Fn(&str) -> Vec<usize>,
) -> Result<Option<(MoeBlock, usize)>> {
    let mut modules = BTreeSet::new();
    let mut per_expert: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    let mut stacked = Vec::new();
    for r in rests {
        if let Some((m, e, s)) = split_expert(r) {
            modules.insert(m);
            match e {
                Some(e) => {
                    per_expert.entry(e).or_default().insert(s);
                }
                None => stacked.push(*r),
            }
        }
    }
    let module = match modules.iter().collect::<Vec<_>>().as_slice() {
        [] => return Ok(None),
        [m] => m.to_string(),
        _ => {
            return Err(Error::Invalid(format!(
                "--infer-schema: layer {i} has experts under {} modules ({}); refusing to guess",
                modules.len(),
                modules.iter().map(|m| format!("`{m}experts`")).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let refuse = |why: String| Err(Error::Invalid(format!("--infer-schema: layer {i}: {why}")));
    let (experts, at) = if !per_expert.is_empty() {
        if !stacked.is_empty() {
            return refuse(format!("`{}` is stacked while other experts are stored one by one", name(stacked[0])));
        }
        let e = per_expert.len();
        if per_expert.keys().copied().ne(0..e) {
            return refuse(format!("expert indices are not 0..{}: {:?}", e - 1, per_expert.keys().collect::<Vec<_>>()));
        }
        let first = per_expert[&0].clone();
        for (x, s) in &per_expert {
            if *s != first {
                return refuse(format!("expert {x} has tensors {s:?}, expert 0 {first:?}"));
            }
            for suf in s {
                let (a, b) = (shape(&format!("{module}experts.0.{suf}")), shape(&format!("{module}experts.{x}.{suf}")));
                if a != b {
                    return refuse(format!("`{}` is {b:?}, expert 0's {a:?}", name(&format!("{module}experts.{x}.{suf}"))));
                }
            }
        }
        (e, ExpertsAt::PerExpert { suffixes: first.into_iter().map(String::from).collect() })
    } else {
        if let Some(r) = stacked.iter().find(|r| shape(r).is_empty()) {
            return refuse(format!("`{}` is a scalar, not a tensor stacked over experts", name(r)));
        }
        let dims: BTreeSet<usize> = stacked.iter().filter_map(|r| shape(r).first().copied()).collect();
        let e = match dims.iter().collect::<Vec<_>>().as_slice() {
            [e] if **e > 0 => **e,
            _ => return refuse(format!("stacked expert tensors disagree on the expert count (first dimensions {dims:?})")),
        };
        let names = stacked.iter().map(|r| r.strip_prefix(&format!("{module}experts.")).unwrap_or(r).to_string()).collect();
        (e, ExpertsAt::Stacked { names })
    };
    // The router and biases: tensors of the module outside `experts.`.
    let mut routers = Vec::new();
    let mut biases = Vec::new();
    for r in rests {
        if !r.starts_with(&module) || split_expert(r).is_some() {
            continue;
        }
        let s = shape(r);
        if s == [experts, hidden] {
            routers.push(r.to_string());
        } else if s == [experts] || s == [1, experts] {
            biases.push(r.to_string());
        }
    }
    let router = match routers.as_slice() {
        [r] => r.clone(),
        [] => return refuse(format!("no [{experts}, {hidden}] router next to the experts under `{module}`")),
        many => return refuse(format!("{} tensors could be the router ({}); refusing to guess", many.len(), many.join(", "))),
    };
    biases.sort();
    Ok(Some((MoeBlock { module, experts: at, router, biases }, experts)))
}

/// A growth plan for an inferred schema: interposed or stacked depth ×K, experts ×M appended.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredPlan {
    /// New layer `j` is made from source layer `sources[j]`.
    pub sources: Vec<usize>,
    pub width: usize,
    /// Noise std relative to each copied tensor's std, on the copies only.
    pub noise: f32,
    pub seed: u64,
}

impl InferredPlan {
    /// Refuse what this schema cannot grow, with the reason.
    pub fn check(&self, s: &Inferred, ck: &RawCheckpoint) -> Result<()> {
        let text = ck.text(&s.text_key)?;
        if self.sources.is_empty() {
            return Err(Error::Invalid("the layer map is empty".into()));
        }
        if let Some(bad) = self.sources.iter().find(|&&x| x >= s.num_layers) {
            return Err(Error::Invalid(format!(
                "the layer map names layer {bad}, but the source has {} layers",
                s.num_layers
            )));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::Invalid(format!("α must be a non-negative number, not {}", self.noise)));
        }
        if self.sources.len() != s.num_layers || self.sources.iter().enumerate().any(|(j, &x)| j != x) {
            if let Some(k) = s.layer_index_lists.first() {
                return Err(Error::Invalid(format!(
                    "--infer-schema cannot grow depth: config.json's `{k}` names layers by index, and moegrow does not know what it means for this family"
                )));
            }
            let kinds: Vec<bool> = (0..s.num_layers).map(|i| s.layers[i].moe.is_some()).collect();
            // A mixed dense/MoE stack can follow the map only through a per-layer list that
            // tells the kinds apart (its values at MoE layers never occur at dense ones).
            let tracked = s.per_layer_lists.iter().any(|k| {
                let Some(Value::Array(a)) = text.get(k) else { return false };
                let at = |moe: bool| -> Vec<&Value> { (0..kinds.len()).filter(|&i| kinds[i] == moe).map(|i| &a[i]).collect() };
                let (m, d) = (at(true), at(false));
                m.iter().all(|v| !d.contains(v))
            });
            // Or dense layers only at the start, counted by `first_k_dense_replace` (DeepSeek's
            // rule, which its many descendants keep), and still only at the start after the map.
            let leading = kinds.iter().take_while(|&&k| !k).count();
            let prefix_rule = kinds[leading..].iter().all(|&k| k)
                && text.get("first_k_dense_replace").and_then(int_of) == Some(leading)
                && {
                    let new: Vec<bool> = self.sources.iter().map(|&x| kinds[x]).collect();
                    let l = new.iter().take_while(|&&k| !k).count();
                    new[l..].iter().all(|&k| k)
                };
            if kinds.iter().any(|&k| k != kinds[0]) && !tracked && !prefix_rule {
                let moe: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i]).collect();
                return Err(Error::Invalid(format!(
                    "--infer-schema cannot grow depth: layers {} are MoE and the rest dense, and moegrow does not know which config rule (e.g. first_k_dense_replace) says so for this family",
                    ranges(&moe)
                )));
            }
        }
        if self.width > 1 {
            if s.experts == 0 {
                return Err(Error::Invalid("--infer-schema: no routed experts to widen".into()));
            }
            if s.expert_keys.is_empty() {
                return Err(Error::Invalid(format!(
                    "--infer-schema cannot widen: no config key holds the expert count {} (looked for {})",
                    s.experts,
                    EXPERT_KEYS.join(", ")
                )));
            }
            if s.topk.is_none() {
                return Err(Error::Invalid(format!(
                    "--infer-schema cannot widen: no config key holds the experts per token (looked for {})",
                    TOPK_KEYS.join(", ")
                )));
            }
            // Copies keep the function when the router splits a twin's weight (softmax) or
            // renormalises the chosen weights; sigmoid scores without renormalisation would
            // double them, and the scoring is unknown for a family without a schema.
            let sigmoid = text.get("scoring_func").and_then(Value::as_str) == Some("sigmoid")
                || s.layers.iter().any(|l| l.moe.as_ref().is_some_and(|m| !m.biases.is_empty()));
            // A family moegrow knows says its routing outright: a sigmoid router that does not
            // renormalise (Llama-4's) needs its copies' down projections scaled, which only
            // the typed growth does.
            if let Ok(typed) = crate::ModelConfig::from_json(Value::Object(ck.raw.clone())) {
                let r = &typed.moe.router;
                if r.scoring == crate::config::Scoring::Sigmoid && !r.normalize {
                    return Err(Error::Invalid(format!(
                        "--infer-schema cannot widen {}: its router is sigmoid-scored without renormalisation, so twin experts would double their output; the typed `grow` (without --infer-schema) scales the copies' down projections to keep the function",
                        typed.family.name()
                    )));
                }
            }
            if sigmoid && text.get("norm_topk_prob").and_then(Value::as_bool) != Some(true) {
                return Err(Error::Invalid(
                    "--infer-schema cannot widen: the router looks sigmoid-scored (a routing bias or `scoring_func: sigmoid`) and config.json does not say the chosen weights are renormalised (`norm_topk_prob: true`), so twin experts might double their output".into(),
                ));
            }
        }
        if self.noise > 0.0 && self.width > 1 {
            for (i, l) in s.layers.iter().enumerate() {
                let Some(m) = &l.moe else { continue };
                for r in m.expert_tensor_names().into_iter().chain([m.router.clone()]).chain(m.biases.clone()) {
                    let t = ck.tensor(&format!("{}{i}.{r}", s.prefix))?;
                    if !matches!(t.dtype, DType::F32 | DType::BF16 | DType::F16) {
                        return Err(Error::Invalid(format!(
                            "--infer-schema cannot add noise to `{}`, stored as {}: without a schema moegrow does not know how to requantise it; use --noise 0 (exact copies)",
                            t.name,
                            t.dtype.name()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl MoeBlock {
    /// The expert tensors of expert `e` (relative to the layer), or the stacked ones.
    fn expert_tensor_names(&self) -> Vec<String> {
        match &self.experts {
            ExpertsAt::PerExpert { suffixes } => suffixes.iter().map(|s| format!("{}experts.0.{s}", self.module)).collect(),
            ExpertsAt::Stacked { names } => names.iter().map(|n| format!("{}experts.{n}", self.module)).collect(),
        }
    }
}

/// `src` plus, for copy `c > 0`, `noise · σ(src) · N(0, 1)`, in the source dtype; refused for
/// dtypes moegrow cannot rewrite (packed or float8 tensors need a schema).
fn noised(name: &str, dtype: DType, bytes: &[u8], noise: f32, seed: u64, stream: u64) -> Result<Vec<u8>> {
    let cannot = || Error::Invalid(format!(
        "--infer-schema cannot add noise to `{name}`, stored as {}; use --noise 0 (exact copies)",
        dtype.name()
    ));
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
        return Err(cannot());
    }
    let mut v = try_decode_f32(dtype, bytes).ok_or_else(cannot)?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt() as f32;
    let z = normals(seed, stream, v.len());
    v.iter_mut().zip(z).for_each(|(x, z)| *x += noise * std * z);
    try_encode_f32(dtype, &v).ok_or_else(cannot)
}

/// FNV-1a of a tensor's name, to key its noise stream.
fn name_key(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The grown checkpoint: its `config.json` and the tensors to write (produced lazily from the
/// memory-mapped source, one tensor at a time).
pub fn grow<'a>(
    ck: &'a RawCheckpoint,
    s: &'a Inferred,
    plan: &'a InferredPlan,
) -> Result<(Map<String, Value>, Vec<OutputTensor<'a>>)> {
    plan.check(s, ck)?;
    let m = plan.width.max(1);
    let e = s.experts;
    let new_l = plan.sources.len();
    let mut out: Vec<OutputTensor<'a>> = Vec::new();
    let copy = |name: String, from: &'a RawTensor| OutputTensor {
        pieces: None,
        name,
        dtype: from.dtype,
        shape: from.shape.clone(),
        data: Box::new(move || Ok(Cow::Borrowed(ck.bytes(from)))),
    };
    for n in &s.carried {
        out.push(copy(n.clone(), ck.tensor(n)?));
    }
    // Decoder layers from their sources, then the extra blocks renumbered after them.
    let targets: Vec<(usize, usize)> = plan
        .sources
        .iter()
        .copied()
        .enumerate()
        .chain((0..s.extra_blocks).map(|b| (new_l + b, s.num_layers + b)))
        .collect();
    for (j, src) in targets {
        let from = |r: &str| ck.tensor(&format!("{}{src}.{r}", s.prefix));
        let layer = s.layers.get(src).ok_or_else(|| Error::Invalid(format!("internal: no layer {src} in the schema")))?;
        let to = |r: &str| format!("{}{j}.{r}", s.prefix);
        let moe = layer.moe.as_ref().filter(|_| m > 1);
        let special: BTreeSet<String> = match moe {
            None => BTreeSet::new(),
            Some(b) => layer
                .tensors
                .iter()
                .filter(|r| split_expert(r).is_some() || **r == b.router || b.biases.contains(r))
                .cloned()
                .collect(),
        };
        for r in layer.tensors.iter().filter(|r| !special.contains(*r)) {
            out.push(copy(to(r), from(r)?));
        }
        let Some(b) = moe else { continue };
        let (noise, seed) = (plan.noise, plan.seed);
        // Rows of a `[E, …]` tensor repeated M times (appended copies), copies noised.
        let repeat = |r: &String| -> Result<OutputTensor<'a>> {
            let t = from(r)?;
            let mut shape = t.shape.clone();
            let rows_dim = if shape.len() == 2 && shape[0] == 1 { 1 } else { 0 };
            shape[rows_dim] *= m;
            let name = to(r);
            let key = name_key(r);
            let layer_key = j as u64;
            Ok(OutputTensor {
                pieces: None,
                name: name.clone(),
                dtype: t.dtype,
                shape,
                data: Box::new(move || {
                    let bytes = ck.bytes(t);
                    let mut v = bytes.to_vec();
                    for c in 1..m {
                        if noise > 0.0 {
                            v.extend(noised(&name, t.dtype, bytes, noise, seed, stream_id(&[1, layer_key, key, c as u64]))?);
                        } else {
                            v.extend_from_slice(bytes);
                        }
                    }
                    Ok(Cow::Owned(v))
                }),
            })
        };
        out.push(repeat(&b.router)?);
        for bias in &b.biases {
            out.push(repeat(bias)?);
        }
        match &b.experts {
            ExpertsAt::PerExpert { suffixes } => {
                for x in 0..m * e {
                    for suf in suffixes {
                        let t = from(&format!("{}experts.{}.{suf}", b.module, x % e))?;
                        let name = to(&format!("{}experts.{x}.{suf}", b.module));
                        let stream = stream_id(&[2, j as u64, x as u64, name_key(suf)]);
                        if x < e || noise == 0.0 {
                            out.push(copy(name, t));
                        } else {
                            out.push(OutputTensor {
                                pieces: None,
                                name: name.clone(),
                                dtype: t.dtype,
                                shape: t.shape.clone(),
                                data: Box::new(move || Ok(Cow::Owned(noised(&name, t.dtype, ck.bytes(t), noise, seed, stream)?))),
                            });
                        }
                    }
                }
            }
            ExpertsAt::Stacked { names } => {
                for n in names {
                    let r = format!("{}experts.{n}", b.module);
                    let t = from(&r)?;
                    let mut shape = t.shape.clone();
                    shape[0] *= m;
                    let name = to(&r);
                    let key = name_key(n);
                    let layer_key = j as u64;
                    out.push(OutputTensor {
                        pieces: None,
                        name: name.clone(),
                        dtype: t.dtype,
                        shape,
                        data: Box::new(move || {
                            let bytes = ck.bytes(t);
                            let per = bytes.len() / e;
                            let mut v = bytes.to_vec();
                            for c in 1..m {
                                for x in 0..e {
                                    let one = &bytes[x * per..(x + 1) * per];
                                    if noise > 0.0 {
                                        v.extend(noised(&name, t.dtype, one, noise, seed, stream_id(&[3, layer_key, key, (c * e + x) as u64]))?);
                                    } else {
                                        v.extend_from_slice(one);
                                    }
                                }
                            }
                            Ok(Cow::Owned(v))
                        }),
                    });
                }
            }
        }
    }
    // The config: layer count, per-layer lists along the map, expert count and top-k × M.
    let mut raw = ck.raw.clone();
    {
        let text = match &s.text_key {
            Some(k) => raw
                .get_mut(k)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Error::config(format!("`{k}` is not an object")))?,
            None => &mut raw,
        };
        text.insert("num_hidden_layers".into(), new_l.into());
        if text.contains_key("first_k_dense_replace") {
            let dense = plan.sources.iter().take_while(|&&x| s.layers[x].moe.is_none()).count();
            text.insert("first_k_dense_replace".into(), dense.into());
        }
        for k in &s.per_layer_lists {
            if let Some(Value::Array(a)) = text.get(k).cloned() {
                text.insert(k.clone(), Value::Array(plan.sources.iter().map(|&x| a[x].clone()).collect()));
            }
        }
        if m > 1 {
            for k in &s.expert_keys {
                text.insert(k.clone(), (e * m).into());
            }
            if let Some((k, v)) = &s.topk {
                text.insert(k.clone(), (v * m).into());
            }
            // Appended copies form groups of twins: group-limited routing keeps its choice
            // when the group counts grow with the experts.
            if text.get("n_group").and_then(int_of).is_some_and(|g| g > 1) {
                for k in ["n_group", "topk_group"] {
                    if let Some(v) = text.get(k).and_then(int_of) {
                        text.insert(k.into(), (v * m).into());
                    }
                }
            }
        }
    }
    check_against_typed(ck, &raw, &plan.sources)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((raw, out))
}

/// For a family moegrow also knows by schema, the inferred config must say what the typed rules
/// read: each grown layer keeps its source's kind (dense or MoE, attention window or chunk,
/// RoPE or not). A family whose per-layer rules are not plain lists (Llama-4's NoPE interval,
/// its `moe_layers` indices) is refused here rather than written wrong.
fn check_against_typed(ck: &RawCheckpoint, grown: &Map<String, Value>, sources: &[usize]) -> Result<()> {
    let Ok(before) = crate::ModelConfig::from_json(Value::Object(ck.raw.clone())) else {
        return Ok(());
    };
    let after = crate::ModelConfig::from_json(Value::Object(grown.clone())).map_err(|e| {
        Error::Invalid(format!(
            "--infer-schema wrote a config that {}'s rules reject ({e}); use the typed `grow`",
            before.family.name()
        ))
    })?;
    let follows = |what: &str, ok: bool| -> Result<()> {
        if ok {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "--infer-schema cannot grow this {} checkpoint: its config's {what} would not follow the layer map (the family's rule is not a per-layer list); use the typed `grow` (without --infer-schema), which rewrites it",
            before.family.name()
        )))
    };
    let mapped = |v: &dyn Fn(&crate::ModelConfig, usize) -> String| -> bool {
        after.num_layers == sources.len()
            && sources.iter().enumerate().all(|(j, &x)| v(&after, j) == v(&before, x))
    };
    follows("dense/MoE pattern", mapped(&|c, i| format!("{:?}", c.mlp[i])))?;
    follows(
        "attention pattern",
        mapped(&|c, i| format!("{:?}{:?}", c.sliding_window[i], c.attention_chunk[i])),
    )?;
    follows("RoPE/NoPE pattern", mapped(&|c, i| c.rope_layers[i].to_string()))
}
