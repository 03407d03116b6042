//! Feed-forward blocks on the device: a dense (or shared) SwiGLU block, and the MoE block —
//! router logits, top-k on the device, grouped experts over the stacked expert weights, the
//! shared expert with its optional sigmoid gate.

use super::Pass;
use crate::gpu::context::{GpuBuffer, Recorder};
use crate::gpu::ops::*;
use crate::schema::{Ffn, Mlp};

impl Pass<'_, '_> {
    /// `out (+)= down(silu(gate·x) ⊙ up·x)`.
    fn ffn(
        &self,
        rec: &mut Recorder,
        f: &Ffn<GpuMatrix>,
        normed: &GpuBuffer,
        out: &GpuBuffer,
        accumulate: bool,
    ) {
        let i = f.gate.rows;
        let g = self.project(rec, normed, &f.gate, None);
        let u = self.project(rec, normed, &f.up, None);
        silu_mul(rec, &u, &g, self.t * i);
        self.linear(rec, &g, &f.down, None, out, accumulate);
    }

    /// The feed-forward block, added into `x`; returns the router logits buffer of MoE layers.
    pub(super) fn mlp(
        &self,
        rec: &mut Recorder,
        m: &Mlp<GpuMatrix>,
        normed: &GpuBuffer,
        x: &GpuBuffer,
        scratch: Option<&MoeScratch>,
    ) -> Option<GpuBuffer> {
        let (gpu, cfg, t) = (self.gpu, self.cfg, self.t);
        let h = cfg.hidden_size;
        let m = match m {
            Mlp::Dense(f) => {
                self.ffn(rec, f, normed, x, true);
                return None;
            }
            Mlp::Moe(m) => m,
        };
        let moe = &cfg.moe;
        let s = scratch.expect("scratch for MoE layers");
        let logits = self.project(rec, normed, &m.router, m.router_logit_bias.as_ref());
        route(
            rec,
            &logits,
            m.router_bias.as_ref().map(GpuMatrix::vector),
            &s.chosen,
            &s.weights,
            RouterParams::new(t, moe),
        );
        let biases = match (&m.experts.gate_up_bias, &m.experts.down_bias) {
            (Some(gu), Some(d)) => Some((gu.vector(), d.vector())),
            _ => None,
        };
        moe_experts(
            rec,
            normed,
            t,
            moe.top_k,
            moe.num_experts,
            h,
            moe.intermediate,
            &m.experts.gate_up,
            &m.experts.down,
            s,
            x,
            ExpertExtras { biases, act: Some(cfg.expert_act), input_scaled: cfg.expert_input_scaling },
        );
        if let Some(f) = &m.shared {
            let y = gpu.zeros(t * h);
            self.ffn(rec, f, normed, &y, false);
            if let Some(g) = &m.shared_gate {
                let gl = self.project(rec, normed, g, None);
                scale_rows_sigmoid(rec, &gl, &y, t, h);
            }
            add(rec, &y, x, t * h);
        }
        Some(logits)
    }
}
