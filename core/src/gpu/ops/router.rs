//! Expert selection for every token, top-k on the device (`shaders/router.wgsl`).

use crate::gpu::context::{grid, Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub struct RouterParams in "router.wgsl" {
    pub tokens: u32,
    pub experts: u32,
    pub top_k: u32,
    pub sigmoid: u32,
    pub normalize: u32,
    pub has_bias: u32,
    pub n_group: u32,
    pub topk_group: u32,
    pub group_sum_top2: u32,
    pub scaling: f32,
    pub _p0: u32,
    pub _p1: u32,}
}

/// The most experts the router kernel handles (its per-token scores live in registers).
pub const MAX_ROUTER_EXPERTS: usize = 512;

/// The most expert groups of group-limited routing the kernel handles.
pub const MAX_ROUTER_GROUPS: usize = 64;

impl RouterParams {
    pub fn new(tokens: usize, moe: &crate::config::MoeConfig) -> RouterParams {
        use crate::config::{GroupScore, Scoring};
        let r = &moe.router;
        RouterParams {
            tokens: tokens as u32,
            experts: moe.num_experts as u32,
            top_k: moe.top_k as u32,
            sigmoid: (r.scoring == Scoring::Sigmoid) as u32,
            normalize: r.normalize as u32,
            has_bias: r.correction_bias as u32,
            n_group: r.group_limit.map_or(0, |g| g.n_group as u32),
            topk_group: r.group_limit.map_or(0, |g| g.topk_group as u32),
            group_sum_top2: r
                .group_limit
                .is_some_and(|g| g.score == GroupScore::SumTop2) as u32,
            scaling: r.routed_scaling_factor,
            _p0: 0,
            _p1: 0,
        }
    }
}

/// Route every token: `chosen[t·k + j]` (u32) and `weights[t·k + j]`.
pub fn route(
    rec: &mut Recorder,
    logits: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    chosen: &GpuBuffer,
    weights: &GpuBuffer,
    p: RouterParams,
) {
    assert!(
        p.experts as usize <= MAX_ROUTER_EXPERTS && p.n_group as usize <= MAX_ROUTER_GROUPS,
        "router: {} experts / {} groups exceed the kernel's limits",
        p.experts,
        p.n_group
    );
    let u = rec.gpu().uniform(&p);
    let dummy = rec.gpu().dummy();
    rec.dispatch(
        shaders::ROUTER,
        "route",
        &[
            Bind::Uniform(&u),
            Bind::Storage(logits),
            Bind::Storage(bias.unwrap_or(dummy)),
            Bind::Storage(chosen),
            Bind::Storage(weights),
        ],
        grid(p.tokens as usize, 64),
    );
}
