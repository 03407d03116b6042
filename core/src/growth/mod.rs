//! Orthogonal growth of MoE checkpoints: depth by interposition (or stacking), width by expert
//! duplication. A [`GrowthPlan`] can be printed, validated against a checkpoint and applied;
//! applying it yields lazy [`OutputTensor`]s that read the source one tensor at a time, so a
//! checkpoint of any size grows in memory bounded by its largest tensor.

pub mod depth;
pub mod noise;
pub mod provenance;
pub mod stages;
pub mod width;

pub use depth::{DepthMethod, LayerMap};
pub use width::{AuxCoef, NewExperts, NoiseOn, WidthStep};

use crate::checkpoint::{Checkpoint, OutputTensor};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::roles::{expected_roles, role_shape, ExpertLayout, LayerRole, Proj, Role};
use stages::{DepthStage, Stage, WidthStage};
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

/// A plan applied to a checkpoint: the grown config and the stage chain that produces tensors.
pub struct Grown<'a> {
    pub config: ModelConfig,
    /// Per step, what it did to the config, in words.
    pub notes: Vec<String>,
    /// Final layer map relative to the source (composition of all depth steps).
    pub layer_sources: Vec<usize>,
    root: &'a Checkpoint,
    stage: Box<dyn Stage + 'a>,
}

impl GrowthPlan {
    /// Check the plan against a config and build the stage chain.
    pub fn apply<'a>(&self, ckpt: &'a Checkpoint) -> Result<Grown<'a>> {
        if self.steps.is_empty() {
            return Err(Error::Invalid(
                "nothing to grow: give --depth and/or --experts".into(),
            ));
        }
        let mut stage: Box<dyn Stage + 'a> = Box::new(ckpt);
        let mut notes = Vec::new();
        let mut layer_sources: Vec<usize> = (0..ckpt.config.num_layers).collect();
        for (index, step) in self.steps.iter().enumerate() {
            let cfg = stage.config().clone();
            match step {
                GrowthStep::Depth(d) => {
                    let map = d.layer_map(cfg.num_layers)?;
                    let raw = depth::grow_config(&cfg, &map)?;
                    let config = ModelConfig::from_json(serde_json::Value::Object(raw))?;
                    notes.push(format!(
                        "depth: {} → {} layers, map {:?}",
                        cfg.num_layers,
                        map.len(),
                        map.sources()
                    ));
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
                    let config = ModelConfig::from_json(serde_json::Value::Object(raw))?;
                    notes.push(format!(
                        "width: {} → {} experts, top-{} → top-{}",
                        cfg.moe.num_experts,
                        config.moe.num_experts,
                        cfg.moe.top_k,
                        config.moe.top_k
                    ));
                    notes.append(&mut n);
                    stage = Box::new(WidthStage {
                        prev: stage,
                        step: w.clone(),
                        experts_before: cfg.moe.num_experts,
                        seed: self.seed,
                        index: index as u64,
                        down_scale: w.down_scale(&cfg),
                        config,
                    });
                }
            }
        }
        Ok(Grown {
            config: stage.config().clone(),
            notes,
            layer_sources,
            root: ckpt,
            stage,
        })
    }
}

impl<'a> Grown<'a> {
    /// The output tensors in `layout`, each produced when the writer asks for it.
    pub fn tensors(&self, layout: ExpertLayout) -> Result<Vec<OutputTensor<'_>>> {
        let cfg = &self.config;
        let family = cfg.family;
        expected_roles(cfg, layout)
            .into_iter()
            .map(|role| {
                // The dtype is known without computing the tensor: the source's.
                let probe = match role {
                    Role::Layer(l, LayerRole::ExpertsGateUp) => {
                        Role::Layer(l, LayerRole::Expert(0, Proj::Gate))
                    }
                    Role::Layer(l, LayerRole::ExpertsDown) => {
                        Role::Layer(l, LayerRole::Expert(0, Proj::Down))
                    }
                    r => r,
                };
                let dtype = self.source_dtype(probe)?;
                let stage = &self.stage;
                let experts = cfg.moe.num_experts;
                Ok(OutputTensor {
                    name: family.tensor_name(role, layout),
                    dtype,
                    shape: role_shape(cfg, role),
                    data: Box::new(move || {
                        Ok(match role {
                            Role::Layer(l, LayerRole::ExpertsGateUp) => {
                                let mut v = Vec::new();
                                for e in 0..experts {
                                    v.extend_from_slice(
                                        &stage
                                            .tensor(Role::Layer(
                                                l,
                                                LayerRole::Expert(e, Proj::Gate),
                                            ))?
                                            .1,
                                    );
                                    v.extend_from_slice(
                                        &stage
                                            .tensor(Role::Layer(l, LayerRole::Expert(e, Proj::Up)))?
                                            .1,
                                    );
                                }
                                Cow::Owned(v)
                            }
                            Role::Layer(l, LayerRole::ExpertsDown) => {
                                let mut v = Vec::new();
                                for e in 0..experts {
                                    v.extend_from_slice(
                                        &stage
                                            .tensor(Role::Layer(
                                                l,
                                                LayerRole::Expert(e, Proj::Down),
                                            ))?
                                            .1,
                                    );
                                }
                                Cow::Owned(v)
                            }
                            r => stage.tensor(r)?.1,
                        })
                    }),
                })
            })
            .collect()
    }

    /// The stored dtype of the source tensor a grown tensor comes from, found by walking the
    /// role back through the layer map (no data is read). Experts of one layer share a dtype in
    /// every checkpoint moegrow accepts, so the source layer's expert 0 stands for all of them.
    fn source_dtype(&self, role: Role) -> Result<crate::DType> {
        Ok(match role {
            Role::Layer(l, LayerRole::Expert(_, p)) => {
                self.root.expert_dtype(self.layer_sources[l], 0, p)?
            }
            Role::Layer(l, r) => {
                self.root
                    .entry(Role::Layer(self.layer_sources[l], r))?
                    .dtype
            }
            r => self.root.entry(r)?.dtype,
        })
    }
}
