//! Growth in the browser with the same code as `moegrow grow`: the same plan, the same seeded
//! noise, the same shard layout and provenance, hence the same bytes. Output tensors are
//! produced in order; the source tensors they need (one source layer at a time) are fetched
//! just before and dropped just after, so memory is one source layer plus one output tensor.

use crate::progress::Progress;
use crate::session::Session;
use moegrow_core::analysis::{param_counts_for, slot_roles};
use moegrow_core::checkpoint::{parse_size, plan_files, INDEX_FILE};
use moegrow_core::growth::{provenance, GrowthOptions, GrowthPlan};
use moegrow_core::roles::LayerSlot;
use moegrow_core::schema::layout::disk_tensors;
use moegrow_core::{ExpertLayout, Role};
use serde_json::{json, Value};

/// The growth controls of the page; the same meaning as `moegrow grow`'s flags.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrowOptions {
    /// Depth factor K (1 or absent: no depth growth).
    pub depth: Option<usize>,
    /// `interpose` or `stack`.
    #[serde(default = "interpose")]
    pub depth_method: String,
    /// Width multiplier M (1 or absent: no width growth).
    pub experts: Option<usize>,
    /// α: noise std relative to each copied tensor's std.
    #[serde(default = "paper_alpha")]
    pub noise: f32,
    /// `copy` or `random`.
    #[serde(default = "copy")]
    pub new_experts: String,
    #[serde(default)]
    pub width_first: bool,
    #[serde(default)]
    pub seed: u64,
    /// e.g. `5GB`.
    #[serde(default = "five_gb")]
    pub max_shard_size: String,
    /// `per-expert` or `fused` (default: the source's).
    pub layout: Option<String>,
}

fn interpose() -> String {
    "interpose".into()
}
fn paper_alpha() -> f32 {
    0.01
}
fn copy() -> String {
    "copy".into()
}
fn five_gb() -> String {
    "5GB".into()
}

impl GrowOptions {
    /// The plan `moegrow grow` builds from the same flags: the form's fields become `core`'s
    /// growth options, and `core` builds and checks the plan.
    pub fn plan(&self) -> Result<GrowthPlan, String> {
        let o = GrowthOptions {
            depth: self.depth,
            depth_method: self.depth_method.parse()?,
            experts: self.experts,
            noise: self.noise,
            new_experts: self.new_experts.parse()?,
            width_first: self.width_first,
            seed: self.seed,
            ..GrowthOptions::default()
        };
        o.plan().map_err(|e| e.to_string())
    }

    fn layout(&self, source: ExpertLayout) -> Result<ExpertLayout, String> {
        match self.layout.as_deref() {
            None | Some("") => Ok(source),
            Some("per-expert") => Ok(ExpertLayout::PerExpert),
            Some("fused") => Ok(ExpertLayout::Fused),
            Some(l) => Err(format!("unknown layout `{l}` (per-expert or fused)")),
        }
    }
}

/// What the plan would produce, without reading a tensor: sizes, the grown architecture and
/// the layer map (the page draws the grown norm profile from the base's through it).
pub fn preview(s: &Session, o: &GrowOptions) -> Result<Value, String> {
    let plan = o.plan()?;
    let ckpt = s.ckpt.borrow();
    let layout = o.layout(ckpt.layout)?;
    let grown = plan.apply(&*ckpt).map_err(|e| e.to_string())?;
    let tensors = grown.tensors(layout).map_err(|e| e.to_string())?;
    let max = parse_size(&o.max_shard_size).map_err(|e| e.to_string())?;
    let (files, _) = plan_files(&tensors, max, &Default::default());
    let before = param_counts_for(&ckpt.config);
    let after = param_counts_for(&grown.config);
    Ok(json!({
        "plan": plan,
        "notes": grown.notes,
        "layer_sources": grown.layer_sources,
        "layout": layout.name(),
        "before": {"layers": ckpt.config.num_layers, "experts": ckpt.config.moe.num_experts, "top_k": ckpt.config.moe.top_k, "parameters": before},
        "after": {"layers": grown.config.num_layers, "experts": grown.config.moe.num_experts, "top_k": grown.config.moe.top_k, "parameters": after},
        "output_bytes": tensors.iter().map(|t| t.nbytes() as u64).sum::<u64>(),
        "shards": files.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
    }))
}

/// Which source tensors an output tensor needs: a whole source layer (or the layer of a
/// multi-token-prediction block), or one global tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Layer(LayerSlot),
    Global(Role),
}

/// Receives output files in pieces: `(file, bytes, last piece of that file)`.
pub type Sink<'a> = dyn FnMut(&str, &[u8], bool) -> Result<(), String> + 'a;

/// Grow and hand every output file to `sink` in pieces: `sink(file, bytes, last)`; `last`
/// is true on a file's final piece. Returns the list of files written.
pub async fn grow(
    s: &Session,
    o: &GrowOptions,
    p: &Progress,
    sink: &mut Sink<'_>,
) -> Result<Vec<String>, String> {
    let plan = o.plan()?;
    let max = parse_size(&o.max_shard_size).map_err(|e| e.to_string())?;
    let (layout, shards, index, needs, sizes, total, config_json, extra) = {
        let ckpt = s.ckpt.borrow();
        let layout = o.layout(ckpt.layout)?;
        let grown = plan.apply(&*ckpt).map_err(|e| e.to_string())?;
        let tensors = grown.tensors(layout).map_err(|e| e.to_string())?;
        let record = provenance::record(
            &s.name,
            s.config_text.as_bytes(),
            &ckpt,
            &plan,
            &grown.config,
            layout,
        );
        let (metadata, extra) = provenance::outputs(&record);
        let (shards, index) = plan_files(&tensors, max, &metadata.into_iter().collect());
        // One need per output tensor: a block-quantised weight's scales (FP8 `_scale_inv`,
        // MXFP4 `_scales`, int4 `weight_scale` and `weight_shape`, written right after it)
        // need what the weight needs.
        let disk = disk_tensors(&grown.config, layout);
        let need_of = |d: &moegrow_core::schema::layout::DiskTensor| match d.role.layer_part() {
            Some((LayerSlot::Decoder(l), _)) => Need::Layer(LayerSlot::Decoder(grown.layer_sources[l])),
            Some((slot, _)) => Need::Layer(slot),
            None => Need::Global(d.role),
        };
        let mut at = 0;
        let mut needs: Vec<Need> = Vec::with_capacity(tensors.len());
        for t in &tensors {
            let starts = disk.get(at).is_some_and(|d| {
                t.name == d.name
                    || t.name == moegrow_core::schema::layout::mxfp4_names(&d.name).0
                    || t.name == moegrow_core::schema::layout::int4_names(&d.name)[0]
            });
            match (starts, needs.last()) {
                (true, _) => {
                    needs.push(need_of(&disk[at]));
                    at += 1;
                }
                (false, Some(&prev)) => needs.push(prev),
                (false, None) => return Err(format!("internal: `{}` has no source tensor", t.name)),
            }
        }
        let sizes: Vec<usize> = tensors.iter().map(|t| t.nbytes()).collect();
        let total: usize = sizes.iter().sum();
        (
            layout,
            shards,
            index,
            needs,
            sizes,
            total,
            grown.config.to_json_string(),
            extra,
        )
    };
    let mut files = Vec::new();
    let mut done = 0usize;
    let mut resident: Option<Need> = None;
    for shard in &shards {
        sink(&shard.name, &shard.header, shard.tensors.is_empty())?;
        let mut k = 0;
        while k < shard.tensors.len() {
            // A run of consecutive tensors with the same source needs: fetch once, produce all.
            let need = needs[shard.tensors[k]];
            let mut end = k + 1;
            while end < shard.tensors.len() && needs[shard.tensors[end]] == need {
                end += 1;
            }
            if resident != Some(need) {
                s.evict();
                let roles = match need {
                    Need::Layer(l) => slot_roles(&s.ckpt.borrow(), l),
                    Need::Global(r) => vec![r],
                };
                s.load(&roles, p).await?;
                resident = Some(need);
            }
            let produced: Vec<Vec<u8>> = {
                let ckpt = s.ckpt.borrow();
                let grown = plan.apply(&*ckpt).map_err(|e| e.to_string())?;
                let tensors = grown.tensors(layout).map_err(|e| e.to_string())?;
                shard.tensors[k..end]
                    .iter()
                    .map(|&i| {
                        let t = &tensors[i];
                        let bytes = (t.data)().map_err(|e| e.to_string())?;
                        if bytes.len() != sizes[i] {
                            return Err(format!(
                                "{}: produced {} bytes, expected {}",
                                t.name,
                                bytes.len(),
                                sizes[i]
                            ));
                        }
                        Ok(bytes.into_owned())
                    })
                    .collect::<Result<_, String>>()?
            };
            for (j, bytes) in produced.iter().enumerate() {
                let last = k + j + 1 == shard.tensors.len();
                sink(&shard.name, bytes, last)?;
                done += bytes.len();
            }
            k = end;
            p.report(done as f64, total as f64, &shard.name).await?;
        }
        files.push(shard.name.clone());
    }
    s.evict();
    if let Some(index) = index {
        sink(INDEX_FILE, index.as_bytes(), true)?;
        files.push(INDEX_FILE.into());
    }
    sink("config.json", config_json.as_bytes(), true)?;
    files.push("config.json".into());
    for (name, src) in &s.companions {
        let bytes = src.read(name, 0..src.len()).await?;
        sink(name, &bytes, true)?;
        files.push(name.clone());
    }
    for (name, bytes) in &extra {
        sink(name, bytes, true)?;
        files.push(name.clone());
    }
    Ok(files)
}
