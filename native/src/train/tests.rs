//! The burn model against the references: exact load/save round trips, logits against the
//! logits transformers produced for the fixtures, and the CPU (flex) and wgpu backends agreeing
//! on the loss and every gradient.

use super::arch::Arch;
use super::model::{Net, RopeTables};
use super::moe::{aux_loss, RouteBias};
use super::run::cross_entropy;
use super::weights::HostWeights;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// `logits` and `tokens` that transformers wrote next to a fixture.
fn transformers_logits(dir: &Path) -> (Vec<i64>, Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tokens = Vec::new();
    let mut logits = (Vec::new(), Vec::new());
    for (name, view) in st.tensors() {
        if view.dtype() == safetensors::Dtype::I64 {
            tokens = view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
        } else if name == "logits" {
            logits = (
                view.shape().to_vec(),
                view.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            );
        }
    }
    (tokens, logits.0, logits.1)
}

fn load(name: &str, device: &Device) -> (Arch, HostWeights, Net) {
    let ckpt = moegrow_core::Checkpoint::open(fixture(name)).unwrap();
    let host = HostWeights::from_checkpoint(&ckpt).unwrap();
    let arch = Arch::new(&host.config).unwrap();
    let net = Net::load(&arch, &host, device).unwrap();
    (arch, host, net)
}

const TRAINABLE: &[&str] = &[
    "qwen3_moe_experts_f32",
    "qwen3_moe_fused_bf16",
    "mixtral_experts_f32",
    "mixtral_experts_f32_window",
    "mixtral_fused_bf16",
    "olmoe_experts_f32",
    "olmoe_experts_f32_clip",
    "olmoe_fused_bf16",
    "qwen2_moe_experts_f32",
    "qwen2_moe_experts_f32_window",
    "qwen2_moe_fused_bf16",
    // GLM-4.5 from its real hub config: sigmoid routing with the correction bias, shared
    // experts, partial rotary, q/k/v biases, a dense first layer, an MTP block (not run).
    "hub/glm-4.5-air",
    "hub/glm-4.5-air-qk-norm",
    // MiniMax-M2.5: full-width q/k norm, partial rotary, sigmoid routing with the bias on the block.
    "hub/minimax-m2.5",
    // Llama-4: interleaved RoPE with the L2 q/k norm and chunks of 4 on the RoPE layers, the
    // temperature on the NoPE layer, input-scaled top-1 experts, dense layers (Maverick), the
    // multimodal wrapper (its vision tower carried, not trained).
    "hub/llama4-scout",
    "hub/llama4-maverick",
    "hub/llama4-scout-text",
    // ERNIE-4.5: interleaved RoPE over the whole head, softmax routing with a [1, E] correction
    // bias for selection, two ungated shared experts, a dense first layer, a tied head.
    "hub/ernie-4.5-21b-a3b",
];

#[test]
fn logits_match_transformers_on_every_trainable_fixture() {
    let device = Device::flex();
    let mut failures = Vec::new();
    for name in TRAINABLE {
        let (arch, _, net) = load(name, &device);
        let (tokens, shape, want) = transformers_logits(&fixture(name));
        let t = tokens.len();
        let rope = RopeTables::new(&arch, t, &device);
        let x = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, t]), &device);
        let (_, host, _) = load(name, &device);
        let bias = super::run::initial_route_bias(&arch, &host, 0.0);
        let out = net.forward(&arch, &rope, x, &bias).unwrap();
        assert_eq!(out.logits.dims()[1..], shape[shape.len() - 2..], "{name}");
        let got = out.logits.into_data().try_to_vec::<f32>().unwrap();
        let (worst, at) = got
            .iter()
            .zip(&want)
            .enumerate()
            .map(|(i, (a, b))| ((a - b).abs(), i))
            .fold(
                (0f32, 0),
                |m, x| if x.0 > m.0 || x.0.is_nan() { x } else { m },
            );
        if !(worst <= 1e-4) {
            let v = arch.config.vocab_size;
            failures.push(format!(
                "{name}: max |Δlogit| {worst:e} at token {} vocab {} (burn {} vs transformers {})",
                at / v,
                at % v,
                got[at],
                want[at]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn load_then_save_is_identical_tensor_by_tensor() {
    let device = Device::flex();
    for name in [
        "qwen3_moe_experts_f32",
        "mixtral_fused_bf16",
        "olmoe_fused_f32",
        "qwen2_moe_experts_bf16",
    ] {
        let dir = fixture(name);
        let ckpt = moegrow_core::Checkpoint::open(&dir).unwrap();
        let (_, mut host, net) = load(name, &device);
        // Scramble the host copy so that only what comes back from the device can pass.
        host.tensors
            .iter_mut()
            .for_each(|t| t.values.iter_mut().for_each(|v| *v = 7.0));
        net.store(&mut host).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("saved");
        moegrow_core::checkpoint::write_checkpoint(
            &out,
            &host.config.to_json_string(),
            &host.export(),
            None,
            &Default::default(),
            |_| {},
        )
        .unwrap();
        let back = moegrow_core::Checkpoint::open(&out).unwrap();
        assert_eq!(back.layout, ckpt.layout, "{name}");
        assert_eq!(back.entries().len(), ckpt.entries().len(), "{name}");
        for (a, b) in ckpt.entries().iter().zip(back.entries()) {
            assert_eq!(
                (&a.name, a.dtype, &a.shape),
                (&b.name, b.dtype, &b.shape),
                "{name}"
            );
            assert!(
                ckpt.bytes(a.role).unwrap() == back.bytes(b.role).unwrap(),
                "{name}: tensor {} differs after load/save",
                a.name
            );
        }
    }
}

#[derive(Default)]
struct Collect(Vec<(String, Vec<f32>)>);
impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push((
            format!("{:?}", p.id),
            p.val().into_data().try_to_vec::<f32>().unwrap(),
        ));
    }
}

/// Loss (cross-entropy + aux) and every parameter gradient of one batch on `device`.
fn loss_and_grads(name: &str, device: Device) -> (f32, Vec<(String, Vec<f32>)>) {
    let (arch, _, net) = load(name, &device);
    let (tokens, _, _) = transformers_logits(&fixture(name));
    let t = tokens.len() - 1;
    let x: Vec<i64> = tokens[..t].to_vec();
    let y: Vec<i64> = tokens[1..].to_vec();
    let rope = RopeTables::new(&arch, t, &device);
    let xs = Tensor::<2, Int>::from_data(TensorData::new(x, [1, t]), &device);
    let ys = Tensor::<2, Int>::from_data(TensorData::new(y, [1, t]), &device);
    let out = net
        .forward(&arch, &rope, xs, &RouteBias::default())
        .unwrap();
    let aux = aux_loss(&out.routing, arch.config.moe.num_experts).unwrap();
    let loss = cross_entropy(out.logits, ys) + aux * 0.01;
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut gs = Collect::default();
    // Gradients as a module of the same shape: map each parameter to its gradient.
    let gp = burn::optim::GradientsParams::from_grads(grads, &net);
    struct G<'a>(&'a burn::optim::GradientsParams, Vec<(String, Vec<f32>)>);
    impl ModuleVisitor for G<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(p.id)
                .expect("every parameter has a gradient");
            self.1.push((
                format!("{:?}", p.id),
                g.into_data().try_to_vec::<f32>().unwrap(),
            ));
        }
    }
    let mut g = G(&gp, Vec::new());
    net.visit(&mut g);
    gs.0 = g.1;
    (value, gs.0)
}

#[test]
fn cpu_and_gpu_backends_give_the_same_loss_and_gradients() {
    // Llama-4: the WGSL grouped dispatch with input-scaled experts, interleaved RoPE, chunks.
    for name in ["qwen3_moe_experts_f32", "hub/llama4-maverick"] {
        same_loss_and_gradients_on_cpu_and_gpu(name);
    }
}

fn same_loss_and_gradients_on_cpu_and_gpu(name: &str) {
    let (cpu_loss, cpu) = loss_and_grads(name, Device::flex().autodiff());
    let (gpu_device, _) = super::run::open_device("gpu").expect("a wgpu adapter (lavapipe in CI)");
    let (gpu_loss, gpu) = loss_and_grads(name, gpu_device.autodiff());
    assert!(
        (cpu_loss - gpu_loss).abs() < 1e-4,
        "{name}: loss: cpu {cpu_loss} gpu {gpu_loss}"
    );
    assert_eq!(cpu.len(), gpu.len());
    for ((id, a), (_, b)) in cpu.iter().zip(&gpu) {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-3 * scale + 1e-6,
                "{name}: gradient of parameter {id} element {i}: cpu {x} gpu {y} (scale {scale})"
            );
        }
    }
}

/// Seeded values in [-1, 1).
fn seeded(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, shape: &[usize], got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if !((g - w).abs() <= tol * (1.0 + w.abs())) {
            let mut idx = Vec::new();
            let mut rest = i;
            for d in shape.iter().rev() {
                idx.push(rest % d);
                rest /= d;
            }
            idx.reverse();
            panic!("{what}: element {idx:?} (flat {i}) of shape {shape:?}: got {g}, want {w}");
        }
    }
}

/// The WGSL grouped products (forward, input gradient, weight gradient) against burn's own
/// ops on the CPU, over odd shapes and uneven (including empty) expert groups.
#[test]
fn grouped_matmul_kernels_match_the_cpu_reference_forward_and_backward() {
    use super::kernels::{grouped_linear_reference, grouped_linear_wgsl, TilePlan};
    let (gpu, _) = super::run::open_device("gpu").expect("a wgpu adapter (lavapipe in CI)");
    let cases: &[(&[usize], usize, usize)] = &[
        (&[5, 0, 17, 1], 37, 23),
        (&[16, 16], 16, 16),
        (&[0, 0, 40], 9, 70),
        (&[3, 33, 2, 0, 7], 64, 5),
    ];
    for (case, &(counts, k, n)) in cases.iter().enumerate() {
        let plan = TilePlan::new(counts);
        let rows = plan.rows();
        let e = counts.len();
        let xv = seeded(rows * k, 1 + case as u64);
        let wv = seeded(e * n * k, 100 + case as u64);
        let dyv = seeded(rows * n, 200 + case as u64);
        let run = |device: Device, wgsl: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(xv.clone(), [rows, k]), &device)
                .require_grad();
            let w = Tensor::<3>::from_data(TensorData::new(wv.clone(), [e, n, k]), &device)
                .require_grad();
            let dy = Tensor::<2>::from_data(TensorData::new(dyv.clone(), [rows, n]), &device);
            let y = if wgsl {
                grouped_linear_wgsl(x.clone(), w.clone(), plan.clone()).unwrap()
            } else {
                grouped_linear_reference(x.clone(), w.clone(), &plan)
            };
            let yv = y.clone().into_data().try_to_vec::<f32>().unwrap();
            // Backward through Σ y·dy gives dy as the output gradient.
            let grads = (y * dy).sum().backward();
            let gx = x
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let gw = w
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (yv, gx, gw)
        };
        let (y0, gx0, gw0) = run(Device::flex().autodiff(), false);
        let (y1, gx1, gw1) = run(gpu.clone().autodiff(), true);
        let tag = format!("case {case} (counts {counts:?}, K {k}, N {n})");
        assert_close(&format!("{tag} forward"), &[rows, n], &y1, &y0, 1e-5);
        assert_close(
            &format!("{tag} input gradient"),
            &[rows, k],
            &gx1,
            &gx0,
            1e-5,
        );
        assert_close(
            &format!("{tag} weight gradient"),
            &[e, n, k],
            &gw1,
            &gw0,
            1e-5,
        );
    }
}

/// The WGSL expert selection against `core`'s reference router: softmax and sigmoid scoring,
/// with and without a selection bias, odd expert counts and top-k, more tokens than one
/// workgroup.
#[test]
fn expert_selection_kernel_matches_the_reference_router() {
    use moegrow_core::config::{RouterConfig, Scoring};
    use moegrow_core::reference::routing::route;
    let (gpu, _) = super::run::open_device("gpu").expect("a wgpu adapter (lavapipe in CI)");
    for (case, &(n, e, k, sigmoid, with_bias)) in [
        (1usize, 4usize, 1usize, false, false),
        (70, 7, 2, false, true),
        (130, 16, 3, true, false),
        (33, 5, 5, true, true),
    ]
    .iter()
    .enumerate()
    {
        let logits = seeded(n * e, 300 + case as u64);
        let bias: Vec<f32> = seeded(e, 400 + case as u64)
            .iter()
            .map(|v| v * 0.1)
            .collect();
        let bias = with_bias.then_some(bias.as_slice());
        let t = Tensor::<2>::from_data(TensorData::new(logits.clone(), [n, e]), &gpu);
        let got = super::kernels::select_experts_wgsl(t, bias, k, sigmoid).unwrap();
        let mut router = RouterConfig::softmax(true);
        if sigmoid {
            router.scoring = Scoring::Sigmoid;
        }
        for tok in 0..n {
            let want = route(&logits[tok * e..(tok + 1) * e], &router, k, bias).experts;
            assert_eq!(
                &got[tok * k..(tok + 1) * k],
                want.as_slice(),
                "case {case} (N {n}, E {e}, k {k}, sigmoid {sigmoid}, bias {with_bias}): token {tok}"
            );
        }
    }
}

/// The batched CPU dispatch (experts padded to the largest group) and the per-expert one give
/// the same output and the same input and weight gradients.
#[test]
fn batched_and_per_expert_cpu_dispatch_agree() {
    use super::moe::{dispatch_batched, dispatch_per_expert};
    let device = Device::flex().autodiff();
    let (arch, _, net) = load("qwen3_moe_experts_f32", &device);
    let gate_up_slot = &arch.slots.layers[0].mlp.moe().unwrap().experts.gate_up;
    let (e, k, h) = (
        arch.config.moe.num_experts,
        arch.config.moe.top_k,
        arch.config.hidden_size,
    );
    let n = 23;
    // Each token takes experts (t + j·3) mod E: uneven but every group non-empty or not.
    let mut lists = vec![Vec::new(); e];
    for t in 0..n {
        for j in 0..k {
            lists[(t + j * 3) % e].push((t, j));
        }
    }
    let cap = lists.iter().map(|l| l.len()).max().unwrap();
    let i = arch.config.moe.intermediate;
    // `scaled`: Llama-4's routing weight on the expert's input.
    let run = |batched: bool, scaled: bool| {
        let mut moe = net.moe(&arch, 0).unwrap();
        moe.input_scaled = scaled;
        let moe = &moe;
        let x = Tensor::<2>::from_data(TensorData::new(seeded(n * h, 7), [n, h]), &device)
            .require_grad();
        let w = Tensor::<2>::from_data(TensorData::new(seeded(n * k, 8), [n, k]), &device)
            .require_grad();
        let y = if batched {
            dispatch_batched(moe, x.clone(), w.clone(), &lists, k, cap)
        } else {
            dispatch_per_expert(moe, x.clone(), w.clone(), &lists, k)
        };
        let yv = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = (y.clone() * y).sum().backward();
        let gx = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let gw = w
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Expert 1's gate rows of the stacked gate-up parameter.
        let gate = net.params[gate_up_slot.index]
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[2 * i * h..3 * i * h]
            .to_vec();
        (yv, gx, gw, gate)
    };
    for scaled in [false, true] {
        let (a, b) = (run(false, scaled), run(true, scaled));
        let what = |w: &str| format!("{w} (input-scaled: {scaled})");
        assert_close(&what("output"), &[n, h], &a.0, &b.0, 1e-5);
        assert_close(&what("input gradient"), &[n, h], &a.1, &b.1, 1e-5);
        assert_close(&what("routing-weight gradient"), &[n, k], &a.2, &b.2, 1e-5);
        assert_close(&what("expert 1 gate gradient"), &[i, h], &a.3, &b.3, 1e-5);
    }
    let (plain, scaled) = (run(false, false), run(false, true));
    assert!(plain.0.iter().zip(&scaled.0).any(|(a, b)| (a - b).abs() > 1e-3), "input scaling changes nothing");
}

/// The CPU dispatch that training uses (experts grouped by load, one batched product per
/// group) against the per-expert one, on routing so skewed that it makes several groups and
/// leaves an expert without tokens.
#[test]
fn load_grouped_cpu_dispatch_agrees_with_the_per_expert_one() {
    use super::moe::{dispatch_bucketed, dispatch_per_expert};
    let device = Device::flex().autodiff();
    let (arch, _, net) = load("qwen3_moe_experts_f32", &device);
    let gate_up_slot = &arch.slots.layers[0].mlp.moe().unwrap().experts.gate_up;
    let (e, k, h, i) = (
        arch.config.moe.num_experts,
        arch.config.moe.top_k,
        arch.config.hidden_size,
        arch.config.moe.intermediate,
    );
    let n = 41;
    // Expert 0 takes every token's first slot, experts 1..E-1 share the second unevenly
    // (1 twice as often as the others), expert E-1 none.
    let mut lists = vec![Vec::new(); e];
    for t in 0..n {
        lists[0].push((t, 0));
        let second = if t % 3 == 0 { 1 } else { 1 + t % (e - 2) };
        lists[second].push((t, 1));
    }
    assert!(lists[e - 1].is_empty() && lists[0].len() > 2 * lists[2].len());
    let run = |grouped: bool, scaled: bool| {
        let mut moe = net.moe(&arch, 0).unwrap();
        moe.input_scaled = scaled;
        let moe = &moe;
        let x = Tensor::<2>::from_data(TensorData::new(seeded(n * h, 17), [n, h]), &device)
            .require_grad();
        let w = Tensor::<2>::from_data(TensorData::new(seeded(n * k, 18), [n, k]), &device)
            .require_grad();
        let y = if grouped {
            dispatch_bucketed(moe, x.clone(), w.clone(), &lists, k)
        } else {
            dispatch_per_expert(moe, x.clone(), w.clone(), &lists, k)
        };
        let yv = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = (y.clone() * y).sum().backward();
        let read = |t: Option<Tensor<2>>| t.unwrap().into_data().try_to_vec::<f32>().unwrap();
        let gx = read(x.grad(&grads));
        let gw = read(w.grad(&grads));
        let gu = net.params[gate_up_slot.index]
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (yv, gx, gw, gu)
    };
    for scaled in [false, true] {
        let (a, b) = (run(false, scaled), run(true, scaled));
        let what = |w: &str| format!("{w} (input-scaled: {scaled})");
        assert_close(&what("output"), &[n, h], &b.0, &a.0, 1e-5);
        assert_close(&what("input gradient"), &[n, h], &b.1, &a.1, 1e-5);
        assert_close(&what("routing-weight gradient"), &[n, k], &b.2, &a.2, 1e-5);
        assert_close(&what("gate-up gradient"), &[e, 2 * i, h], &b.3, &a.3, 1e-5);
    }
}

/// Training GLM-4.5 (its real hub config): the routed weights, router and attention move, the
/// correction bias stays what the checkpoint says (balancing by bias is off) and steers the
/// selection, and the multi-token-prediction block is carried through byte for byte.
/// Three training steps (batches of two `seq_len`-token sequences, lr 1e-2, a loss that must
/// stay finite with a non-zero gradient) on the checkpoint at `dir`, saved and reopened: the
/// source, the result and the directory that holds it.
fn train_three_steps(
    dir: &Path,
    seq_len: usize,
) -> (moegrow_core::Checkpoint, moegrow_core::Checkpoint, tempfile::TempDir) {
    use super::batches::Batches;
    use super::config::TrainConfig;
    use super::run::Trainer;
    let src = moegrow_core::Checkpoint::open(dir).unwrap();
    let host = HostWeights::from_checkpoint(&src).unwrap();
    let cfg = TrainConfig {
        steps: 3,
        batch_size: 2,
        seq_len,
        warmup: 0,
        lr: 1e-2,
        ..TrainConfig::default()
    };
    let device = Device::flex();
    let mut t = Trainer::new(cfg, host, 0.0, device.autodiff(), "cpu".into()).unwrap();
    let tokens: Vec<u32> = (0..400u32).map(|i| (i * 37 + i / 7) % 96).collect();
    let mut data = Batches::new(tokens, seq_len, 0).unwrap();
    for _ in 0..3 {
        let (ce, _, norm, _) = t.step(&mut data).unwrap();
        assert!(ce.is_finite() && norm > 0.0, "loss {ce}, grad norm {norm}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trained");
    t.save(&out, &[], false).unwrap();
    let back = moegrow_core::Checkpoint::open(&out).unwrap();
    (src, back, tmp)
}

#[test]
fn glm_trains_with_its_correction_bias_and_carries_the_mtp_block() {
    let (src, back, _tmp) = train_three_steps(&fixture("hub/glm-4.5-air"), 8);
    assert!(src.config.mtp_layers > 0);
    assert_eq!(back.config.mtp_layers, src.config.mtp_layers);
    let (mut same, mut moved) = (Vec::new(), Vec::new());
    for e in src.entries() {
        let b = back
            .entry(e.role)
            .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(b.name, e.name);
        let equal = src.bytes(e.role).unwrap() == back.bytes(b.role).unwrap();
        let keep = matches!(e.role, moegrow_core::Role::Mtp(..))
            || e.name.ends_with("e_score_correction_bias");
        if keep && !equal {
            same.push(e.name.clone());
        }
        if !keep && !equal {
            moved.push(e.name.clone());
        }
    }
    assert!(same.is_empty(), "changed by training: {same:?}");
    for want in [
        "self_attn.q_proj.bias",
        "mlp.gate.weight",
        "mlp.shared_experts.up_proj.weight",
    ] {
        assert!(
            moved.iter().any(|n| n.ends_with(want)),
            "{want} did not train: {moved:?}"
        );
    }
}

/// gpt-oss's blocks (attention sinks, router and expert biases, clamped SwiGLU) are not the
/// trainer's: `train` refuses it up front, naming what is missing, before reading weights.
#[test]
fn gpt_oss_is_refused_by_the_trainer_with_the_reason() {
    for name in ["hub/gpt-oss-20b", "hub/gpt-oss-20b-bf16"] {
        let ckpt = moegrow_core::Checkpoint::open(fixture(name)).unwrap();
        let err = Arch::new(&ckpt.config).unwrap_err().to_string();
        assert!(err.contains("gpt-oss") && err.contains("sinks") && err.contains("clamped SwiGLU"), "{name}: {err}");
    }
}

/// Llama-4 trains: its router, experts (through the input scaling), shared expert and
/// attention move; the vision tower comes back byte for byte and the saved checkpoint is still a
/// Llama-4 multimodal one.
/// ERNIE-4.5 trains (its correction bias steered, not trained, as GLM's) and its
/// multi-token-prediction block, which transformers drops, is carried through unchanged.
#[test]
fn ernie_trains_and_carries_its_mtp_block() {
    let (src, back, _tmp) = train_three_steps(&fixture("hub/ernie-4.5-21b-a3b"), 8);
    let mut moved = Vec::new();
    let mut carried = 0;
    for e in src.entries() {
        let b = back.entry(e.role).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(b.name, e.name);
        let equal = src.bytes(e.role).unwrap() == back.bytes(b.role).unwrap();
        if matches!(e.role, moegrow_core::Role::Carried(_)) {
            assert!(equal && e.name.starts_with("model.mtp_"), "{}: the MTP block changed", e.name);
            carried += 1;
        } else if e.name.ends_with("e_score_correction_bias") {
            assert!(equal, "{}: trained", e.name);
        } else if !equal {
            moved.push(e.name.clone());
        }
    }
    assert_eq!(carried, 12, "the fixture's MTP tensors");
    for want in ["mlp.gate.weight", "mlp.shared_experts.up_proj.weight", "experts.1.down_proj.weight", "mlp.up_proj.weight"] {
        assert!(moved.iter().any(|n| n.ends_with(want)), "{want} did not train: {moved:?}");
    }
}

#[test]
fn llama4_trains_and_carries_its_vision_tower() {
    let (src, back, _tmp) = train_three_steps(&fixture("hub/llama4-scout"), 12);
    assert!(back.config.wrapper.is_some(), "still the multimodal checkpoint");
    let mut moved = Vec::new();
    for e in src.entries() {
        let b = back.entry(e.role).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(b.name, e.name);
        let equal = src.bytes(e.role).unwrap() == back.bytes(b.role).unwrap();
        if matches!(e.role, moegrow_core::Role::Carried(_)) {
            assert!(equal, "{}: the tower changed", e.name);
        } else if !equal {
            moved.push(e.name.clone());
        }
    }
    for want in [
        "feed_forward.router.weight",
        "feed_forward.experts.gate_up_proj",
        "feed_forward.shared_expert.down_proj.weight",
        "self_attn.q_proj.weight",
    ] {
        assert!(moved.iter().any(|n| n.ends_with(want)), "{want} did not train: {moved:?}");
    }
}

/// Qwen3-Next's Gated DeltaNet layers are not the trainer's: `train` refuses it up front.
#[test]
fn qwen3_next_is_refused_by_the_trainer_with_the_reason() {
    for (name, family) in [("hub/qwen3-next-80b-a3b", "Qwen3-Next"), ("hub/qwen3.5-35b-a3b", "Qwen3.5-MoE")] {
        let ckpt = moegrow_core::Checkpoint::open(fixture(name)).unwrap();
        let err = Arch::new(&ckpt.config).unwrap_err().to_string();
        assert!(err.contains(family) && err.contains("Gated DeltaNet"), "{name}: {err}");
    }
}
