//! The MoE layer: routing in f32 and a grouped expert dispatch.
//!
//! Expert *selection* happens on the host with `core`'s reference router (softmax or sigmoid
//! scores, correction / balancing bias, group limits: one implementation for inference,
//! growth checks and training), because grouping needs the per-expert token counts on the host
//! anyway. The routing *weights* are then gathered from the device scores so that gradients flow
//! into the router. Tokens are sorted by expert, experts run over their own tokens (grouped into
//! few padded batches on the CPU, grouped tiles on the GPU), and the weighted outputs are
//! scatter-added back: the work is about `top_k` expert FFNs per token, never every expert over
//! every token with a mask. The experts' weights are the stacked `[E, 2I, H]` / `[E, H, I]`
//! parameters, gate and up applied as one product.

use super::arch::Arch;
use super::kernels::{grouped_linear_wgsl, is_wgpu, select_experts_wgsl, TilePlan, TILE};
use super::model::MoeView;
use burn::tensor::activation::{sigmoid, silu, softmax};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use moegrow_core::config::Scoring;
use moegrow_core::reference::routing::route;

/// What the loss and the balancing rule need from one MoE layer.
pub struct LayerRouting {
    /// `[N, E]` softmax of the router logits (the Hugging Face aux loss uses it for every
    /// family).
    pub probs: Tensor<2>,
    /// How many of the `N · top_k` selections went to each expert.
    pub counts: Vec<usize>,
}

/// Per-layer expert biases added to the scores for selection only (aux-loss-free balancing,
/// DeepSeek-V3 style). Empty when balancing by bias is off.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RouteBias {
    pub layers: Vec<Vec<f32>>,
}

impl RouteBias {
    pub fn zeros(moe_layers: usize, experts: usize) -> RouteBias {
        RouteBias {
            layers: vec![vec![0.0; experts]; moe_layers],
        }
    }

    pub fn layer(&self, i: usize) -> Option<&[f32]> {
        self.layers.get(i).map(|v| v.as_slice())
    }

    /// `b_e += rate · sign(mean load − load_e)` per layer.
    pub fn update(&mut self, counts: &[Vec<usize>], rate: f32) {
        for (b, c) in self.layers.iter_mut().zip(counts) {
            let mean = c.iter().sum::<usize>() as f32 / c.len().max(1) as f32;
            for (bi, &ci) in b.iter_mut().zip(c) {
                let diff = mean - ci as f32;
                if diff != 0.0 {
                    *bi += rate * diff.signum();
                }
            }
        }
    }
}

/// `x [N, H]` → `[N, H]`.
pub fn moe_forward(
    arch: &Arch,
    moe: &MoeView,
    x: Tensor<2>,
    bias: Option<&[f32]>,
) -> anyhow::Result<(Tensor<2>, LayerRouting)> {
    let cfg = &arch.config;
    let router = arch.router();
    let [n, _] = x.dims();
    let e_count = cfg.moe.num_experts;
    let k = cfg.moe.top_k;
    let device = x.device();
    let logits = x.clone().matmul(moe.router.clone().transpose()); // [N, E]
    // Selection: our WGSL kernel on the wgpu device, `core`'s reference router elsewhere (and
    // for group-limited routing, which the trainable families do not use).
    let chosen: Vec<usize> = if is_wgpu(&device) && router.group_limit.is_none() {
        select_experts_wgsl(logits.clone(), bias, k, router.scoring == Scoring::Sigmoid)?
    } else {
        let host: Vec<f32> = logits
            .clone()
            .detach()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read router logits: {e:?}"))?;
        (0..n)
            .flat_map(|t| route(&host[t * e_count..(t + 1) * e_count], router, k, bias).experts)
            .collect()
    };
    let mut lists: Vec<Vec<(usize, usize)>> = vec![Vec::new(); e_count];
    for (s, &e) in chosen.iter().enumerate() {
        lists[e].push((s / k, s % k));
    }
    let chosen: Vec<i64> = chosen.iter().map(|&e| e as i64).collect();
    let counts: Vec<usize> = lists.iter().map(|l| l.len()).collect();
    let probs = softmax(logits.clone(), 1);
    let scores = match router.scoring {
        Scoring::Softmax => probs.clone(),
        Scoring::Sigmoid => sigmoid(logits),
    };
    let idx = Tensor::<2, Int>::from_data(TensorData::new(chosen, [n, k]), &device);
    let mut weights = scores.gather(1, idx); // [N, k]
    if router.normalize {
        let sum = weights.clone().sum_dim(1) + 1e-20;
        weights = weights / sum;
    }
    if router.routed_scaling_factor != 1.0 {
        weights = weights * router.routed_scaling_factor as f64;
    }
    let mut out = if is_wgpu(&device) {
        dispatch_wgsl(moe, x.clone(), weights, &lists, k)?
    } else {
        dispatch_bucketed(moe, x.clone(), weights, &lists, k)
    };
    if let Some(shared) = &moe.shared {
        let mut s = shared.forward(x.clone());
        if let Some(g) = &moe.shared_gate {
            s = s * sigmoid(x.matmul(g.clone().transpose()));
        }
        out = out + s;
    }
    Ok((out, LayerRouting { probs, counts }))
}

/// The Hugging Face load-balancing loss (`load_balancing_loss_func`, no padding mask) over all
/// MoE layers: `E · Σ_e f_e · P_e`, `f_e` the share of the `top_k` selections that went to
/// expert `e` and `P_e` its mean router probability, both pooled over layers and tokens.
pub fn aux_loss(routing: &[LayerRouting], experts: usize) -> Option<Tensor<1>> {
    if routing.is_empty() {
        return None;
    }
    let device = routing[0].probs.device();
    let rows: usize = routing.iter().map(|r| r.probs.dims()[0]).sum();
    let mut f = vec![0f32; experts];
    for r in routing {
        for (fe, &c) in f.iter_mut().zip(&r.counts) {
            *fe += c as f32;
        }
    }
    f.iter_mut().for_each(|v| *v /= rows as f32);
    let p_sum = routing
        .iter()
        .map(|r| r.probs.clone().sum_dim(0))
        .reduce(|a, b| a + b)
        .expect("non-empty")
        / rows as f64; // [1, E]
    let f = Tensor::<2>::from_data(TensorData::new(f, [1, experts]), &device);
    Some((p_sum * f).sum() * experts as f64)
}

/// `silu(gate) ⊙ up` of a gate-up product `[…, 2I]` (gate columns first).
fn swiglu_halves<const D: usize>(gu: Tensor<D>) -> Tensor<D> {
    let dims = gu.dims();
    let i = dims[D - 1] / 2;
    let g = gu.clone().narrow(D - 1, 0, i);
    let u = gu.narrow(D - 1, i, i);
    silu(g) * u
}

/// burn's own ops, one expert at a time: tokens sorted by expert, one SwiGLU chain per expert
/// over exactly its rows, weighted outputs scatter-added back. The plainest dispatch, which the
/// others are tested against.
#[cfg(test)]
pub(crate) fn dispatch_per_expert(
    moe: &MoeView,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
) -> Tensor<2> {
    let [n, h] = x.dims();
    let [_, i2, _] = moe.gate_up.dims();
    let i = i2 / 2;
    let device = x.device();
    let m = n * k;
    let tokens: Vec<i64> = lists.iter().flatten().map(|&(t, _)| t as i64).collect();
    let slots: Vec<i64> = lists
        .iter()
        .flatten()
        .map(|&(t, j)| (t * k + j) as i64)
        .collect();
    let tokens = Tensor::<1, Int>::from_data(TensorData::new(tokens, [m]), &device);
    let slots = Tensor::<1, Int>::from_data(TensorData::new(slots, [m]), &device);
    let w = weights.reshape([m]).select(0, slots).unsqueeze_dim::<2>(1);
    let mut xs = x.select(0, tokens.clone()); // [M, H], expert-sorted
    if moe.input_scaled {
        xs = xs * w.clone();
    }
    let mut outs = Vec::new();
    let mut off = 0;
    for (e, list) in lists.iter().enumerate() {
        let c = list.len();
        if c == 0 {
            continue;
        }
        let gu = moe.gate_up.clone().narrow(0, e, 1).reshape([i2, h]);
        let down = moe.down.clone().narrow(0, e, 1).reshape([h, i]);
        let rows = xs.clone().slice([off..off + c, 0..h]);
        outs.push(swiglu_halves(rows.matmul(gu.transpose())).matmul(down.transpose()));
        off += c;
    }
    let ys = Tensor::cat(outs, 0);
    let ys = if moe.input_scaled { ys } else { ys * w };
    Tensor::<2>::zeros([n, h], &device).select_assign(0, tokens, ys, IndexingUpdateOp::Add)
}

/// Our WGSL kernels (`shaders/grouped_matmul.wgsl`) on the wgpu backend: each expert's rows
/// padded to 16-row tiles (padding rows read a zero row and carry zero weight), the gate-up and
/// down products of every expert as one grouped dispatch each, forward and backward.
fn dispatch_wgsl(
    moe: &MoeView,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
) -> anyhow::Result<Tensor<2>> {
    let [n, _] = x.dims();
    let counts: Vec<usize> = lists.iter().map(|l| l.len()).collect();
    let plan = TilePlan::new(&counts);
    let base: Vec<usize> = plan.tile_start.iter().map(|&t| t as usize * TILE).collect();
    let rows = PaddedRows::new(lists, &base, plan.rows(), n, k, &x.device());
    let xs = rows.gather(x, &weights, moe.input_scaled);
    let gu = grouped_linear_wgsl(xs, moe.gate_up.clone(), plan.clone())?;
    let y = grouped_linear_wgsl(swiglu_halves(gu), moe.down.clone(), plan)?;
    Ok(rows.scatter(y, weights, moe.input_scaled))
}

/// burn's own ops, batched: the given experts' rows padded to `cap` (padding rows read a zero
/// row and carry zero weight), then one batched product per projection over those experts.
/// `experts` lists which experts (all of them, in order, when `None`).
fn batched_group(
    moe: &MoeView,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    experts: Option<&[usize]>,
    k: usize,
    cap: usize,
) -> Tensor<2> {
    let [n, h] = x.dims();
    let device = x.device();
    let (group, gate_up, down): (Vec<&Vec<(usize, usize)>>, Tensor<3>, Tensor<3>) = match experts
    {
        None => (lists.iter().collect(), moe.gate_up.clone(), moe.down.clone()),
        Some(ids) => {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(ids.iter().map(|&e| e as i64).collect(), [ids.len()]),
                &device,
            );
            (
                ids.iter().map(|&e| &lists[e]).collect(),
                moe.gate_up.clone().select(0, idx.clone()),
                moe.down.clone().select(0, idx),
            )
        }
    };
    let g = group.len();
    let base: Vec<usize> = (0..g).map(|e| e * cap).collect();
    let owned: Vec<Vec<(usize, usize)>> = group.into_iter().cloned().collect();
    let rows = PaddedRows::new(&owned, &base, g * cap, n, k, &device);
    let xs = rows.gather(x, &weights, moe.input_scaled).reshape([g, cap, h]);
    let gu = xs.matmul(gate_up.swap_dims(1, 2));
    let y = swiglu_halves(gu)
        .matmul(down.swap_dims(1, 2))
        .reshape([g * cap, h]);
    rows.scatter(y, weights, moe.input_scaled)
}

/// Every expert padded to the largest group `cap`, one batched product per projection.
#[cfg(test)]
pub(crate) fn dispatch_batched(
    moe: &MoeView,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
    cap: usize,
) -> Tensor<2> {
    batched_group(moe, x, weights, lists, None, k, cap)
}

/// Experts grouped by load so that padding wastes at most half: when every expert padded to
/// the busiest one wastes at most half of the rows, one group of all experts (the stacked
/// weights used as they are, no gather); otherwise experts sorted by token count, each group
/// holding those with at least half its largest count, one batched product per group and
/// projection — a few products instead of one per expert or all padded to the busiest.
pub(crate) fn dispatch_bucketed(
    moe: &MoeView,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
) -> Tensor<2> {
    let counts: Vec<usize> = lists.iter().map(|l| l.len()).collect();
    let (slots, busiest) = (counts.iter().sum::<usize>(), counts.iter().copied().max());
    let groups = match busiest {
        Some(cap) if cap * counts.len() <= 2 * slots => vec![((0..counts.len()).collect(), cap)],
        _ => load_groups(&counts),
    };
    let mut out: Option<Tensor<2>> = None;
    for (ids, cap) in groups {
        let all = ids.len() == lists.len() && ids.iter().enumerate().all(|(i, &e)| i == e);
        let y = batched_group(
            moe,
            x.clone(),
            weights.clone(),
            lists,
            (!all).then_some(ids.as_slice()),
            k,
            cap,
        );
        out = Some(match out {
            Some(o) => o + y,
            None => y,
        });
    }
    out.unwrap_or_else(|| x.zeros_like())
}

/// Experts with tokens grouped by load: (experts in index order, the group's largest count).
fn load_groups(counts: &[usize]) -> Vec<(Vec<usize>, usize)> {
    let mut order: Vec<usize> = (0..counts.len()).filter(|&e| counts[e] > 0).collect();
    order.sort_by_key(|&e| std::cmp::Reverse(counts[e]));
    let mut groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let cap = counts[order[start]];
        let mut end = start + 1;
        while end < order.len() && 2 * counts[order[end]] >= cap {
            end += 1;
        }
        let mut ids = order[start..end].to_vec();
        ids.sort_unstable();
        groups.push((ids, cap));
        start = end;
    }
    groups
}

/// Expert-sorted rows with per-expert padding: which token each row reads (`n`, a zero row, for
/// padding) and which routing weight it carries (`n·k`, a zero weight, for padding).
struct PaddedRows {
    token: Tensor<1, Int>,
    slot: Tensor<1, Int>,
}

impl PaddedRows {
    /// Expert `e`'s rows start at `base[e]`; `rows` in all.
    fn new(
        lists: &[Vec<(usize, usize)>],
        base: &[usize],
        rows: usize,
        n: usize,
        k: usize,
        device: &burn::tensor::Device,
    ) -> PaddedRows {
        let mut token = vec![n as i64; rows];
        let mut slot = vec![(n * k) as i64; rows];
        for (list, &b) in lists.iter().zip(base) {
            for (i, &(t, j)) in list.iter().enumerate() {
                token[b + i] = t as i64;
                slot[b + i] = (t * k + j) as i64;
            }
        }
        PaddedRows {
            token: Tensor::from_data(TensorData::new(token, [rows]), device),
            slot: Tensor::from_data(TensorData::new(slot, [rows]), device),
        }
    }

    /// The rows' inputs: `x [N, H]` gathered, padding rows zero; with `scaled` (Llama-4) each
    /// row times its routing weight.
    fn gather(&self, x: Tensor<2>, weights: &Tensor<2>, scaled: bool) -> Tensor<2> {
        let [_, h] = x.dims();
        let device = x.device();
        let xs = Tensor::cat(vec![x, Tensor::zeros([1, h], &device)], 0).select(0, self.token.clone());
        if scaled {
            xs * self.row_weights(weights.clone())
        } else {
            xs
        }
    }

    /// Each row's routing weight `[rows, 1]` (padding rows 0).
    fn row_weights(&self, weights: Tensor<2>) -> Tensor<2> {
        let [n, k] = weights.dims();
        let device = weights.device();
        let w_pad = Tensor::cat(vec![weights.reshape([n * k]), Tensor::zeros([1], &device)], 0);
        w_pad.select(0, self.slot.clone()).unsqueeze_dim::<2>(1)
    }

    /// Add each row's output `y [rows, H]` to its token, weighted by its routing weight unless
    /// the weight already scaled the row's input (`scaled`).
    fn scatter(self, y: Tensor<2>, weights: Tensor<2>, scaled: bool) -> Tensor<2> {
        let [n, _] = weights.dims();
        let [_, h] = y.dims();
        let device = y.device();
        let y = if scaled { y } else { y * self.row_weights(weights) };
        Tensor::<2>::zeros([n + 1, h], &device)
            .select_assign(0, self.token, y, IndexingUpdateOp::Add)
            .slice([0..n, 0..h])
    }
}
