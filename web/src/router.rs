//! The router view: tokenise a prompt (with `tokenizer.json` when the checkpoint has one,
//! else token ids), run the forward pass (WebGPU, or the CPU reference), and report which
//! experts every token goes to in every MoE layer, with their weights and the expert load.

use crate::progress::Progress;
use crate::session::Session;
use moegrow_core::gpu::{model::GpuModel, Gpu};
use moegrow_core::reference::routing::{route, top_k, Choice};
use moegrow_core::reference::{Mat, ReferenceModel};
use moegrow_core::{LayerRole, Role};
use serde_json::{json, Value};

/// The forward pass needs every tensor resident; beyond this many stored bytes the view
/// refuses rather than exhausting the tab's memory.
pub const MAX_FORWARD_BYTES: u64 = 1 << 30;

/// Token ids and their text pieces.
pub fn tokenize(s: &Session, prompt: &str) -> Result<(Vec<u32>, Vec<String>), String> {
    let vocab = s.ckpt.borrow().config.vocab_size;
    let (ids, pieces) = match &s.tokenizer {
        Some(t) => {
            let enc = t
                .encode(prompt, false)
                .map_err(|e| format!("tokenizer: {e}"))?;
            (enc.get_ids().to_vec(), enc.get_tokens().to_vec())
        }
        None => {
            let ids = prompt
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<u32>().map_err(|_| {
                        format!("`{t}` is not a token id; this checkpoint has no tokenizer.json, so type ids such as 1 17 42")
                    })
                })
                .collect::<Result<Vec<u32>, String>>()?;
            let pieces = ids.iter().map(|i| format!("#{i}")).collect();
            (ids, pieces)
        }
    };
    if ids.is_empty() {
        return Err("the prompt has no tokens".into());
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        ));
    }
    Ok((ids, pieces))
}

/// Route every token through every MoE layer. `gpu`: run on WebGPU (falls back to the CPU
/// reference, and says so, if the device fails).
pub async fn run(
    s: &Session,
    prompt: &str,
    gpu: Option<&Gpu>,
    p: &Progress,
) -> Result<Value, String> {
    let (ids, pieces) = tokenize(s, prompt)?;
    let roles: Vec<Role> = s.ckpt.borrow().entries().iter().map(|e| e.role).collect();
    let bytes = s.bytes_of(&roles);
    if bytes > MAX_FORWARD_BYTES {
        return Err(format!(
            "the forward pass needs the whole model in the tab ({:.2} GB); the browser view runs models up to {:.1} GB — use `moegrow forward` natively",
            bytes as f64 / 1e9,
            MAX_FORWARD_BYTES as f64 / 1e9
        ));
    }
    p.report(0.0, 3.0, "reading weights").await?;
    s.load(&roles, p).await?;
    let result = forward(s, &ids, gpu, p).await;
    s.evict();
    let (device, fallback, router_logits, logits) = result?;
    let c = s.ckpt.borrow();
    let cfg = &c.config;
    let layers: Vec<Value> = router_logits
        .iter()
        .enumerate()
        .map(|(l, rl)| match rl {
            None => Value::Null,
            Some((m, bias)) => {
                let choices: Vec<Choice> = (0..m.rows)
                    .map(|t| route(m.row(t), &cfg.moe.router, cfg.moe.top_k, bias.as_deref()))
                    .collect();
                let mut load = vec![0u32; cfg.moe.num_experts];
                for ch in &choices {
                    for &e in &ch.experts {
                        load[e] += 1;
                    }
                }
                json!({
                    "layer": l,
                    "experts": choices.iter().map(|c| c.experts.clone()).collect::<Vec<_>>(),
                    "weights": choices.iter().map(|c| c.weights.clone()).collect::<Vec<_>>(),
                    "load": load,
                })
            }
        })
        .collect();
    let last = logits.row(logits.rows - 1);
    let next: Vec<Value> = top_k(last, 5.min(last.len()))
        .into_iter()
        .map(|i| {
            let text = s
                .tokenizer
                .as_ref()
                .and_then(|t| t.id_to_token(i as u32))
                .unwrap_or_else(|| format!("#{i}"));
            json!({"id": i, "text": text, "logit": last[i]})
        })
        .collect();
    Ok(json!({
        "tokens": ids.iter().zip(&pieces).map(|(i, t)| json!({"id": i, "text": t})).collect::<Vec<_>>(),
        "experts": cfg.moe.num_experts,
        "top_k": cfg.moe.top_k,
        // The family's formula (gpt-oss: softmax over the chosen logits; sigmoid with a
        // correction bias for DeepSeek/GLM), shown above the table.
        "routing": moegrow_core::analysis::routing_words(cfg),
        "layers": layers,
        "next_token": next,
        "device": device,
        "fallback": fallback,
    }))
}

type RouterLogits = Vec<Option<(Mat, Option<Vec<f32>>)>>;

// The checkpoint stays borrowed during the GPU forward pass; sound because the explorer runs
// one job at a time and only jobs make tensors resident or drop them.
#[allow(clippy::await_holding_refcell_ref)]
async fn forward(
    s: &Session,
    ids: &[u32],
    gpu: Option<&Gpu>,
    p: &Progress,
) -> Result<(String, Option<String>, RouterLogits, Mat), String> {
    let c = s.ckpt.borrow();
    let biases = (0..c.config.num_layers)
        .map(|l| {
            let r = Role::Layer(l, LayerRole::RouterBias);
            c.has(r).then(|| c.f32(r)).transpose()
        })
        .collect::<moegrow_core::Result<Vec<Option<Vec<f32>>>>>()
        .map_err(|e| e.to_string())?;
    let mut fallback = None;
    let mut done = None;
    if let Some(g) = gpu {
        p.report(1.0, 3.0, "uploading to the GPU").await?;
        let out = match GpuModel::load(g, &*c) {
            Ok(m) => m.forward(ids, true).await,
            Err(e) => Err(e),
        };
        match out {
            Ok(f) => {
                done = Some((
                    format!("WebGPU: {}", g.describe()),
                    f.router_logits,
                    f.logits,
                ))
            }
            Err(e) => fallback = Some(format!("the GPU failed ({e}); ran on the CPU instead")),
        }
    }
    let (device, router_logits, logits) = match done {
        Some(d) => d,
        None => {
            p.report(2.0, 3.0, "forward pass on the CPU").await?;
            let model = ReferenceModel::load(&*c).map_err(|e| e.to_string())?;
            let f = model.forward(ids).map_err(|e| e.to_string())?;
            ("CPU".to_string(), f.router_logits, f.logits)
        }
    };
    let rl = router_logits
        .into_iter()
        .zip(biases)
        .map(|(m, b)| m.map(|m| (m, b)))
        .collect();
    Ok((device, fallback, rl, logits))
}
