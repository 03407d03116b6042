//! Our WGSL inside burn: on burn's wgpu backend (burn's `template` feature) the MoE layer's
//! expert selection (`shaders/train_router.wgsl`) and its grouped expert products
//! (`shaders/grouped_matmul.wgsl`, forward and backward, with burn's autodiff calling our
//! backward kernels) run as our own kernels. On other backends the same
//! product is computed with burn's own ops (one matmul per expert), which is also the reference
//! the kernels are tested against.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{
    into_contiguous, CubeTensor, KernelSource, SourceKernel, SourceTemplate,
};
use burn::backend::{
    Autodiff, AutodiffBackend, Cube, DispatchDevice, DispatchKindConversion, DispatchTensor,
    TensorMetadata,
};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::{KernelArguments, MetadataBindingInfo};
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, GradientCheckpointingStrategy, Shape, Tensor};
use std::sync::Arc;

/// Rows per tile: each expert's rows are padded to a multiple of this on the wgpu path.
pub const TILE: usize = moegrow_core::gpu::shaders::GROUPED_TILE_ROWS;

/// Which expert each 16-row tile belongs to, as the kernels read it.
#[derive(Debug, Clone)]
pub struct TilePlan {
    pub experts: usize,
    /// Expert of each tile.
    pub tile_expert: Vec<u32>,
    /// First tile of each expert, plus the total (`experts + 1` entries).
    pub tile_start: Vec<u32>,
}

impl TilePlan {
    /// Tiles for experts with `counts[e]` rows each (rows padded per expert to `TILE`).
    pub fn new(counts: &[usize]) -> TilePlan {
        let mut tile_expert = Vec::new();
        let mut tile_start = vec![0u32];
        for (e, &c) in counts.iter().enumerate() {
            let tiles = c.div_ceil(TILE);
            tile_expert.extend(std::iter::repeat_n(e as u32, tiles));
            tile_start.push(tile_expert.len() as u32);
        }
        TilePlan {
            experts: counts.len(),
            tile_expert,
            tile_start,
        }
    }

    pub fn rows(&self) -> usize {
        self.tile_expert.len() * TILE
    }

    fn info(&self, rows: usize, k: usize, n: usize) -> Vec<u64> {
        let mut v = vec![
            rows as u64,
            k as u64,
            n as u64,
            self.experts as u64,
            self.tile_expert.len() as u64,
        ];
        v.extend(self.tile_expert.iter().map(|&x| x as u64));
        v.extend(self.tile_start.iter().map(|&x| x as u64));
        v
    }
}

/// Whether tensors on `device` run on burn's wgpu backend (where our kernels apply).
pub fn is_wgpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Cube(_)
    )
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    Nt,
    Nn,
    Tn,
}

#[derive(Clone, Copy, Debug)]
struct Wgsl(Entry);

impl KernelSource for Wgsl {
    fn source(&self) -> SourceTemplate {
        let entry = match self.0 {
            Entry::Nt => "fn gmm_nt(",
            Entry::Nn => "fn gmm_nn(",
            Entry::Tn => "fn gmm_tn(",
        };
        // burn's template kernels enter at `main`.
        SourceTemplate::new(moegrow_core::gpu::shaders::GROUPED_MATMUL.replace(entry, "fn main("))
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(format!("{:?}", self.0))
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

fn launch(entry: Entry, count: CubeCount, bufs: [&CubeTensor; 3], info: Vec<u64>) {
    let mut args = KernelArguments::new();
    for t in bufs {
        args = args.with_buffer(t.handle.clone().binding());
    }
    bufs[0].client.launch(
        Box::new(SourceKernel::new(Wgsl(entry), CubeDim::new_2d(16, 16))),
        count,
        args.with_info(MetadataBindingInfo::custom(info)),
    );
}

fn empty(like: &CubeTensor, shape: Shape) -> CubeTensor {
    let h = like.client.empty(shape.num_elements() * 4);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        h,
        DType::F32,
    )
}

fn check_f32(t: &CubeTensor, what: &str) {
    assert_eq!(t.dtype, DType::F32, "grouped matmul: {what} must be f32");
}

/// `x [R, K] · w[e]ᵀ` per tile, `w [E, N, K]` → `[R, N]`.
fn nt(x: CubeTensor, w: CubeTensor, plan: &TilePlan) -> CubeTensor {
    check_f32(&x, "x");
    check_f32(&w, "w");
    let (x, w) = (into_contiguous(x), into_contiguous(w));
    let [r, k] = x.shape().dims::<2>();
    let [_, n, _] = w.shape().dims::<3>();
    let y = empty(&x, Shape::new([r, n]));
    let count = CubeCount::Static(
        n.div_ceil(16) as u32,
        plan.tile_expert.len().max(1) as u32,
        1,
    );
    launch(Entry::Nt, count, [&x, &w, &y], plan.info(r, k, n));
    y
}

/// `dy [R, N] · w[e]` per tile → `[R, K]`.
fn nn(dy: CubeTensor, w: CubeTensor, plan: &TilePlan) -> CubeTensor {
    let (dy, w) = (into_contiguous(dy), into_contiguous(w));
    let [r, n] = dy.shape().dims::<2>();
    let [_, _, k] = w.shape().dims::<3>();
    let y = empty(&dy, Shape::new([r, k]));
    let count = CubeCount::Static(
        k.div_ceil(16) as u32,
        plan.tile_expert.len().max(1) as u32,
        1,
    );
    launch(Entry::Nn, count, [&dy, &w, &y], plan.info(r, k, n));
    y
}

/// `Σ_{r ∈ e} dy[r]ᵀ x[r]` → `[E, N, K]`.
fn tn(dy: CubeTensor, x: CubeTensor, plan: &TilePlan) -> CubeTensor {
    let (dy, x) = (into_contiguous(dy), into_contiguous(x));
    let [r, n] = dy.shape().dims::<2>();
    let [_, k] = x.shape().dims::<2>();
    let y = empty(&dy, Shape::new([plan.experts, n, k]));
    let count = CubeCount::Static(
        k.div_ceil(16) as u32,
        n.div_ceil(16) as u32,
        plan.experts as u32,
    );
    launch(Entry::Tn, count, [&dy, &x, &y], plan.info(r, k, n));
    y
}

#[derive(Debug)]
struct GroupedBackward;

impl Backward<Cube, 2> for GroupedBackward {
    type State = (CubeTensor, CubeTensor, Arc<TilePlan>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, plan) = ops.state;
        let plan2 = plan.clone();
        binary::<Cube, _, _>(
            ops.parents,
            ops.node,
            grads,
            move |dy| nn(dy, w, &plan),
            move |dy| tn(dy, x, &plan2),
        );
    }
}

/// The wgpu primitive of a tensor that is not tracked by autodiff.
fn cube<const D: usize>(t: Tensor<D>) -> anyhow::Result<CubeTensor> {
    t.try_into_primitive::<Cube>().map_err(|e| {
        anyhow::anyhow!("our WGSL kernels need a tensor on burn's wgpu backend: {e:?}")
    })
}

fn ad_primitive<C: CheckpointStrategy, const D: usize>(
    t: Tensor<D>,
) -> anyhow::Result<FloatTensor<Autodiff<Cube, C>>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Cube, C>>,
{
    if t.is_autodiff() {
        t.try_into_primitive::<Autodiff<Cube, C>>().map_err(|e| {
            anyhow::anyhow!(
                "our WGSL kernels need an autodiff tensor on burn's wgpu backend: {e:?}"
            )
        })
    } else {
        Ok(<Autodiff<Cube, C> as AutodiffBackend>::from_inner(cube(t)?))
    }
}

fn grouped_autodiff<C: CheckpointStrategy>(
    x: Tensor<2>,
    w: Tensor<3>,
    plan: TilePlan,
) -> anyhow::Result<Tensor<2>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Cube, C>>,
{
    let (xp, xn) = ad_primitive::<C, 2>(x)?.into_parts();
    let (wp, wn) = ad_primitive::<C, 3>(w)?.into_parts();
    let plan = Arc::new(plan);
    let out = match GroupedBackward
        .prepare::<C>([xn, wn])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = nt(xp.clone(), wp.clone(), &plan);
            prep.finish((xp, wp, plan), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(nt(xp, wp, &plan)),
    };
    Ok(Tensor::from_primitive::<Autodiff<Cube, C>>(out))
}

/// `x [R, K]` (rows grouped by expert, padded per expert to 16-row tiles as `plan` says) times
/// each row's expert's `w[e]ᵀ` (`w [E, N, K]`, Hugging Face `[out, in]` matrices) → `[R, N]`,
/// on the wgpu backend with our kernels. Differentiable in `x` and `w`.
pub fn grouped_linear_wgsl(
    x: Tensor<2>,
    w: Tensor<3>,
    plan: TilePlan,
) -> anyhow::Result<Tensor<2>> {
    anyhow::ensure!(
        x.dims()[0] == plan.rows(),
        "grouped matmul: {} input rows, but the expert plan has {}",
        x.dims()[0],
        plan.rows()
    );
    let device = x.device();
    if !(x.is_autodiff() || w.is_autodiff()) {
        let y = nt(cube(x)?, cube(w)?, &plan);
        return Ok(Tensor::from_primitive::<Cube>(y));
    }
    match device.gradient_checkpointing_strategy() {
        Some(GradientCheckpointingStrategy::Balanced) => {
            grouped_autodiff::<BalancedCheckpointing>(x, w, plan)
        }
        _ => grouped_autodiff::<NoCheckpointing>(x, w, plan),
    }
}

/// The same product with burn's own ops: one matmul per expert over its rows (the reference
/// the kernels are tested against).
#[cfg(test)]
pub fn grouped_linear_reference(x: Tensor<2>, w: Tensor<3>, plan: &TilePlan) -> Tensor<2> {
    let [_, k] = x.dims();
    let [_, n, _] = w.dims();
    let mut outs = Vec::new();
    for e in 0..plan.experts {
        let (a, b) = (
            plan.tile_start[e] as usize * TILE,
            plan.tile_start[e + 1] as usize * TILE,
        );
        if a == b {
            continue;
        }
        let we = w.clone().slice([e..e + 1, 0..n, 0..k]).reshape([n, k]);
        outs.push(x.clone().slice([a..b, 0..k]).matmul(we.transpose()));
    }
    Tensor::cat(outs, 0)
}

#[derive(Clone, Copy, Debug)]
struct RouterWgsl;

impl KernelSource for RouterWgsl {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(moegrow_core::gpu::shaders::TRAIN_ROUTER)
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>()
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Each token's `top_k` experts, best first (ties to the lower index), chosen on the GPU from
/// router logits `[N, E]`: by softmax probability or sigmoid score, plus the selection `bias`.
/// The same choice as `core`'s reference router (without group limits).
pub fn select_experts_wgsl(
    logits: Tensor<2>,
    bias: Option<&[f32]>,
    top_k: usize,
    sigmoid: bool,
) -> anyhow::Result<Vec<usize>> {
    let [n, e] = logits.dims();
    anyhow::ensure!(top_k <= e, "top-k {top_k} exceeds the {e} experts");
    let logits = logits.detach();
    let logits = if logits.is_autodiff() {
        logits.inner()
    } else {
        logits
    };
    let device = logits.device();
    let bias = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(bias.map_or_else(|| vec![0.0; e], |b| b.to_vec()), [e]),
        &device,
    );
    let l = into_contiguous(cube(logits)?);
    let b = cube(bias)?;
    let out = empty(&l, Shape::new([n, top_k]));
    let groups = n.div_ceil(64).max(1) as u32;
    let (gx, gy) = if groups <= 65535 {
        (groups, 1)
    } else {
        (65535, groups.div_ceil(65535))
    };
    let args = KernelArguments::new()
        .with_buffer(l.handle.clone().binding())
        .with_buffer(b.handle.clone().binding())
        .with_buffer(out.handle.clone().binding())
        .with_info(MetadataBindingInfo::custom(vec![
            n as u64,
            e as u64,
            top_k as u64,
            sigmoid as u64,
        ]));
    l.client.launch(
        Box::new(SourceKernel::new(RouterWgsl, CubeDim::new_1d(64))),
        CubeCount::Static(gx, gy, 1),
        args,
    );
    let chosen = Tensor::<2>::from_primitive::<Cube>(out)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|err| anyhow::anyhow!("cannot read the chosen experts: {err:?}"))?;
    let out: Vec<usize> = chosen.into_iter().map(|v| v as usize).collect();
    anyhow::ensure!(
        out.iter().all(|&x| x < e),
        "the GPU router produced an invalid expert index"
    );
    Ok(out)
}
