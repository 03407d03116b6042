//! The MoE layer: routing in f32 and a grouped expert dispatch.
//!
//! Expert *selection* happens on the host with `core`'s reference router (softmax or sigmoid
//! scores, correction / balancing bias, group limits: one implementation for inference,
//! growth checks and training), because grouping needs the per-expert token counts on the host
//! anyway. The routing *weights* are then gathered from the device scores so that gradients flow
//! into the router. Tokens are sorted by expert, each expert runs one matmul chain over exactly
//! its tokens, and the weighted outputs are scatter-added back: the work is `top_k` expert FFNs
//! per token, never every expert over every token with a mask.

use super::arch::Arch;
use super::kernels::{grouped_linear_wgsl, is_wgpu, select_experts_wgsl, TilePlan, TILE};
use super::model::{Ffn, Moe};
use burn::module::Param;
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
    moe: &Moe,
    x: Tensor<2>,
    bias: Option<&[f32]>,
) -> anyhow::Result<(Tensor<2>, LayerRouting)> {
    let cfg = &arch.config;
    let router = arch.router();
    let [n, _] = x.dims();
    let e_count = cfg.moe.num_experts;
    let k = cfg.moe.top_k;
    let device = x.device();
    let logits = x.clone().matmul(moe.router.val().transpose()); // [N, E]
                                                                 // Selection: our WGSL kernel on the wgpu device, `core`'s reference router elsewhere (and for
                                                                 // group-limited routing, which the trainable families do not use).
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
    let max = lists.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut out = if is_wgpu(&device) {
        dispatch_wgsl(moe, x.clone(), weights, &lists, k)?
    } else if max * e_count <= 2 * n * k {
        // Balanced enough that padding every expert to the largest group wastes at most half:
        // one batched product per projection keeps both cores busy.
        dispatch_batched(moe, x.clone(), weights, &lists, k, max)
    } else {
        dispatch_per_expert(moe, x.clone(), weights, &lists, k)
    };
    if let Some(shared) = &moe.shared {
        let mut s = shared.forward(x.clone());
        if let Some(g) = &moe.shared_gate {
            s = s * sigmoid(x.matmul(g.val().transpose()));
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

/// burn's own ops: tokens sorted by expert, one SwiGLU chain per expert over exactly its rows,
/// weighted outputs scatter-added back to their tokens.
pub(crate) fn dispatch_per_expert(
    moe: &Moe,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
) -> Tensor<2> {
    let [n, h] = x.dims();
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
    let xs = x.select(0, tokens.clone()); // [M, H], expert-sorted
    let mut outs = Vec::new();
    let mut off = 0;
    for (e, list) in lists.iter().enumerate() {
        let c = list.len();
        if c == 0 {
            continue;
        }
        outs.push(moe.experts[e].forward(xs.clone().slice([off..off + c, 0..h])));
        off += c;
    }
    let ys = Tensor::cat(outs, 0);
    let w = weights.reshape([m]).select(0, slots).unsqueeze_dim::<2>(1);
    Tensor::<2>::zeros([n, h], &device).select_assign(0, tokens, ys * w, IndexingUpdateOp::Add)
}

/// Our WGSL kernels (`shaders/grouped_matmul.wgsl`) on the wgpu backend: the experts' weights
/// are stacked to `[E, out, in]`, each expert's rows padded to 16-row tiles (padding rows read a
/// zero row and carry zero weight), and the three products of every expert run as one grouped
/// dispatch each, forward and backward.
fn dispatch_wgsl(
    moe: &Moe,
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
    let xs = rows.gather(x);
    let stack = |pick: fn(&Ffn) -> &Param<Tensor<2>>| -> Tensor<3> {
        Tensor::stack(moe.experts.iter().map(|f| pick(f).val()).collect(), 0)
    };
    let g = grouped_linear_wgsl(xs.clone(), stack(|f| &f.gate), plan.clone())?;
    let u = grouped_linear_wgsl(xs, stack(|f| &f.up), plan.clone())?;
    let y = grouped_linear_wgsl(silu(g) * u, stack(|f| &f.down), plan)?;
    Ok(rows.scatter(y, weights))
}

/// burn's own ops, batched: every expert's rows padded to the largest group (padding rows read
/// a zero row and carry zero weight), then one batched matmul per projection over all experts.
pub(crate) fn dispatch_batched(
    moe: &Moe,
    x: Tensor<2>,
    weights: Tensor<2>,
    lists: &[Vec<(usize, usize)>],
    k: usize,
    cap: usize,
) -> Tensor<2> {
    let [n, h] = x.dims();
    let e_count = lists.len();
    let base: Vec<usize> = (0..e_count).map(|e| e * cap).collect();
    let rows = PaddedRows::new(lists, &base, e_count * cap, n, k, &x.device());
    let xs = rows.gather(x).reshape([e_count, cap, h]);
    let stack_t = |pick: fn(&Ffn) -> &Param<Tensor<2>>| -> Tensor<3> {
        let w: Tensor<3> = Tensor::stack(moe.experts.iter().map(|f| pick(f).val()).collect(), 0);
        w.swap_dims(1, 2)
    };
    let g = xs.clone().matmul(stack_t(|f| &f.gate));
    let u = xs.matmul(stack_t(|f| &f.up));
    let y = (silu(g) * u)
        .matmul(stack_t(|f| &f.down))
        .reshape([e_count * cap, h]);
    rows.scatter(y, weights)
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

    /// The rows' inputs: `x [N, H]` gathered, padding rows zero.
    fn gather(&self, x: Tensor<2>) -> Tensor<2> {
        let [_, h] = x.dims();
        let device = x.device();
        Tensor::cat(vec![x, Tensor::zeros([1, h], &device)], 0).select(0, self.token.clone())
    }

    /// Weight each row's output `y [rows, H]` by its routing weight and add it to its token.
    fn scatter(self, y: Tensor<2>, weights: Tensor<2>) -> Tensor<2> {
        let [n, k] = weights.dims();
        let [_, h] = y.dims();
        let device = y.device();
        let w_pad = Tensor::cat(
            vec![weights.reshape([n * k]), Tensor::zeros([1], &device)],
            0,
        );
        let w = w_pad.select(0, self.slot).unsqueeze_dim::<2>(1);
        Tensor::<2>::zeros([n + 1, h], &device)
            .select_assign(0, self.token, y * w, IndexingUpdateOp::Add)
            .slice([0..n, 0..h])
    }
}
