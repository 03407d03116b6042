//! The paper's per-layer expert weight-norm profile (on WebGPU, or the CPU when there is no
//! GPU or it is lost) and the expert × expert similarity heatmap. Both fetch a few layers'
//! experts at a time and drop them before the next, so memory stays bounded.

use crate::progress::Progress;
use crate::session::Session;
use moegrow_core::analysis::{expert_similarity, layer_expert_norm, slot_roles};
use moegrow_core::roles::LayerSlot;
use moegrow_core::gpu::Gpu;
use moegrow_core::roles::is_routed_expert;
use moegrow_core::Role;
use serde_json::{json, Value};

/// Layers are processed in groups whose experts take at most this many bytes.
const GROUP_BYTES: u64 = 256 << 20;

fn expert_roles(s: &Session, layer: usize) -> Vec<Role> {
    slot_roles(&s.ckpt.borrow(), LayerSlot::Decoder(layer))
        .into_iter()
        .filter(|r| is_routed_expert(*r))
        .collect()
}

/// `{profile, device, fallback}`: `fallback` says why the CPU was used when a GPU was asked for.
// The checkpoint stays borrowed while the GPU reduces it. Sound: the explorer runs one job at
// a time (`lib.rs`, `job`), and only jobs make tensors resident or drop them.
#[allow(clippy::await_holding_refcell_ref)]
pub async fn norm_profile(s: &Session, gpu: Option<&Gpu>, p: &Progress) -> Result<Value, String> {
    let n = s.ckpt.borrow().config.num_layers;
    let mut profile: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut use_gpu = gpu;
    let mut fallback: Option<String> = None;
    let mut layer = 0;
    while layer < n {
        // As many layers as fit in the group budget (at least one).
        let mut roles = expert_roles(s, layer);
        let mut end = layer + 1;
        while end < n {
            let next = expert_roles(s, end);
            if s.bytes_of(&roles) + s.bytes_of(&next) > GROUP_BYTES {
                break;
            }
            roles.extend(next);
            end += 1;
        }
        s.load(&roles, p).await?;
        let part = match use_gpu {
            Some(g) => {
                let ckpt = s.ckpt.borrow();
                match moegrow_core::gpu::stats::expert_norms(g, &ckpt, layer..end).await {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        fallback = Some(format!("the GPU failed ({e}); finished on the CPU"));
                        use_gpu = None;
                        Err(())
                    }
                }
            }
            None => Err(()),
        };
        let part = match part {
            Ok(v) => v,
            Err(()) => {
                let ckpt = s.ckpt.borrow();
                (layer..end)
                    .map(|l| layer_expert_norm(&ckpt, l))
                    .collect::<moegrow_core::Result<Vec<_>>>()
                    .map_err(|e| e.to_string())?
            }
        };
        s.evict();
        profile.extend(part);
        layer = end;
        p.report(layer as f64, n as f64, &format!("layer {layer}/{n}"))
            .await?;
    }
    Ok(json!({
        "profile": profile,
        "device": match use_gpu { Some(g) => format!("WebGPU: {}", g.describe()), None => "CPU".into() },
        "fallback": fallback,
    }))
}

/// `{layer, experts, cosine: [E*E]}` for one MoE layer.
pub async fn similarity(s: &Session, layer: usize, p: &Progress) -> Result<Value, String> {
    let (n, moe) = {
        let c = s.ckpt.borrow();
        (c.config.num_layers, c.config.is_moe(layer))
    };
    if layer >= n {
        return Err(format!("layer {layer} out of range (the model has {n})"));
    }
    if !moe {
        return Err(format!("layer {layer} is a dense layer; it has no experts"));
    }
    let roles = expert_roles(s, layer);
    s.load(&roles, p).await?;
    let result = expert_similarity(&s.ckpt.borrow(), layer).map_err(|e| e.to_string());
    s.evict();
    let cos = result?;
    let experts = s.ckpt.borrow().config.moe.num_experts;
    Ok(json!({"layer": layer, "experts": experts, "cosine": cos}))
}
