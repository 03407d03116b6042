//! Orthogonal growth of MoE checkpoints: depth by interposition (or stacking), width by expert
//! duplication. A [`GrowthPlan`] can be printed, validated against a checkpoint and applied;
//! applying it yields lazy [`OutputTensor`]s that read the source one tensor at a time, so a
//! checkpoint of any size grows in memory bounded by its largest tensor.

pub mod depth;
pub mod inferred;
pub mod noise;
pub mod provenance;
pub mod stages;
pub mod width;

mod options;

pub use depth::{DepthMethod, LayerMap};
pub use options::GrowthOptions;
pub use width::{AuxCoef, NewExperts, NoiseOn, WidthStep};

use crate::checkpoint::OutputTensor;
use crate::config::ModelConfig;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::roles::{ExpertLayout, Role};
use crate::schema::{layout, TensorSource};
use stages::{DepthStage, WidthStage};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepthStep {
    pub factor: usize,
    pub method: DepthMethod,
    pub keep_first: usize,
    pub keep_last: usize,
    pub zero_init_copies: bool,
    /// Any other order, overriding factor/method/keep.
    pub layer_map: Option<Vec<usize>>,
}

impl DepthStep {
    pub fn layer_map(&self, n: usize) -> Result<LayerMap> {
        if let Some(m) = &self.layer_map {
            return LayerMap::explicit(n, m);
        }
        match self.method {
            DepthMethod::Interpose => {
                LayerMap::interpose(n, self.factor, self.keep_first, self.keep_last)
            }
            DepthMethod::Stack => LayerMap::stack(n, self.factor, self.keep_first, self.keep_last),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrowthStep {
    Depth(DepthStep),
    Width(WidthStep),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GrowthPlan {
    pub steps: Vec<GrowthStep>,
    pub seed: u64,
}

/// A plan applied to a model: the grown config and the stage chain that produces tensors. It
/// is itself a [`TensorSource`], so the grown model can be run (`grow --verify`) or written
/// without ever existing whole.
pub struct Grown<'a> {
    pub config: ModelConfig,
    /// Per step, what it did to the config, in words.
    pub notes: Vec<String>,
    /// Final layer map relative to the source (composition of all depth steps).
    pub layer_sources: Vec<usize>,
    stage: Box<dyn TensorSource + 'a>,
    fp8_noise: std::sync::Arc<std::sync::Mutex<(f64, f64, f64)>>,
}

/// The grown config parsed from its rewritten language-model config, keeping what the JSON
/// alone cannot say ([`ModelConfig::with_raw`]).
fn reparse(raw: serde_json::Map<String, serde_json::Value>, like: &ModelConfig) -> Result<ModelConfig> {
    like.with_raw(raw)
}

impl GrowthPlan {
    /// Check the plan against a model and build the stage chain.
    pub fn apply<'a, S: TensorSource + ?Sized + 'a>(&self, src: &'a S) -> Result<Grown<'a>> {
        if self.steps.is_empty() {
            return Err(Error::Invalid(
                "nothing to grow: give --depth and/or --experts".into(),
            ));
        }
        let mut stage: Box<dyn TensorSource + 'a> = Box::new(src);
        let fp8_noise = std::sync::Arc::new(std::sync::Mutex::new((0f64, 0f64, 0f64)));
        let mut notes = Vec::new();
        let mut layer_sources: Vec<usize> = (0..src.config().num_layers).collect();
        for (index, step) in self.steps.iter().enumerate() {
            let cfg = stage.config().clone();
            match step {
                GrowthStep::Depth(d) => {
                    let map = d.layer_map(cfg.num_layers)?;
                    let config = reparse(depth::grow_config(&cfg, &map)?, &cfg)?;
                    notes.push(format!(
                        "depth: {} → {} layers, map {:?}",
                        cfg.num_layers,
                        map.len(),
                        map.sources()
                    ));
                    if cfg.mtp_layers > 0 {
                        notes.push(format!(
                            "{} multi-token-prediction block(s) kept after the last layer (now layer {})",
                            cfg.mtp_layers,
                            map.len()
                        ));
                    }
                    layer_sources = map.sources().iter().map(|&s| layer_sources[s]).collect();
                    stage = Box::new(DepthStage {
                        prev: stage,
                        map,
                        zero_init_copies: d.zero_init_copies,
                        config,
                    });
                }
                GrowthStep::Width(w) => {
                    w.validate(&cfg)?;
                    let (raw, mut n) = w.grow_config(&cfg)?;
                    let config = reparse(raw, &cfg)?;
                    notes.push(format!(
                        "width: {} → {} experts, top-{} → top-{}",
                        cfg.moe.num_experts,
                        config.moe.num_experts,
                        cfg.moe.top_k,
                        config.moe.top_k
                    ));
                    notes.append(&mut n);
                    if cfg.mtp_layers > 0 {
                        notes.push(
                            "the multi-token-prediction blocks' experts are widened too (the expert count is global)".into(),
                        );
                    }
                    if cfg.carried.iter().any(|c| c.name.starts_with("mtp.")) {
                        notes.push(format!(
                            "the multi-token-prediction block (`mtp.*`) is carried verbatim with its {} experts: transformers ignores it; an engine that drafts with it needs it widened or retrained",
                            cfg.moe.num_experts
                        ));
                    }
                    stage = Box::new(WidthStage {
                        prev: stage,
                        step: w.clone(),
                        experts_before: cfg.moe.num_experts,
                        seed: self.seed,
                        index: index as u64,
                        down_scale: w.down_scale(&cfg),
                        bias_scale: w.bias_scale(&cfg),
                        config,
                        fp8_noise: fp8_noise.clone(),
                        pending_scales: Default::default(),
                    });
                }
            }
        }
        Ok(Grown {
            config: stage.config().clone(),
            notes,
            layer_sources,
            stage,
            fp8_noise,
        })
    }
}

impl Grown<'_> {
    /// The output tensors in `layout`, each produced when the writer asks for it.
    pub fn tensors(&self, layout: ExpertLayout) -> Result<Vec<OutputTensor<'_>>> {
        layout::output_tensors(self, layout, layout::Storage::AsSource)
    }

    /// The tensors in `layout` stored as `storage` (dequantised to bf16, say).
    pub fn tensors_as(
        &self,
        layout: ExpertLayout,
        storage: layout::Storage,
    ) -> Result<Vec<OutputTensor<'_>>> {
        layout::output_tensors(self, layout, storage)
    }

    /// The share of the width noise that survived requantisation of float8 experts (the
    /// projection of what the requantised copies differ from their sources by onto the noise
    /// added): 1 when every bit of noise is kept, 0 when rounding removed it all. `None` until
    /// a noised float8 expert has been produced.
    pub fn fp8_noise_survival(&self) -> Option<f64> {
        let (de, ee, _) = *self.fp8_noise.lock().unwrap_or_else(|e| e.into_inner());
        (ee > 0.0).then(|| de / ee)
    }

    /// How far the requantised noisy copies are from their sources, relative to the noise
    /// added (`|δ| / |ε|`): 1 when requantising changes nothing; coarse formats (MXFP4) round
    /// some values a whole step away, so the copies move much further than the noise asked.
    pub fn quantised_noise_amplification(&self) -> Option<f64> {
        let (_, ee, dd) = *self.fp8_noise.lock().unwrap_or_else(|e| e.into_inner());
        (ee > 0.0).then(|| (dd / ee).sqrt())
    }
}

impl TensorSource for Grown<'_> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, role: Role) -> Result<DType> {
        self.stage.dtype_of(role)
    }
    fn read(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        self.stage.read(role)
    }
    fn quant_of(&self, role: Role) -> Result<Option<crate::quant::BlockQuant>> {
        self.stage.quant_of(role)
    }
    fn read_scales(&self, role: Role) -> Result<Cow<'_, [u8]>> {
        self.stage.read_scales(role)
    }
    fn read_f32(&self, role: Role) -> Result<Vec<f32>> {
        self.stage.read_f32(role)
    }
    fn release(&self, role: Role) {
        self.stage.release(role)
    }
}
