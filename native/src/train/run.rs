//! The training loop: data, forward/backward, AdamW with global-norm clipping, schedules,
//! evaluation, metrics, resumable checkpoints and the final Hugging Face checkpoint.

use super::arch::Arch;
use super::batches::{eval_windows, Batches};
use super::config::TrainConfig;
use super::model::{Net, RopeTables};
use super::moe::{aux_loss, RouteBias};
use super::schedule::Schedule;
use super::weights::HostWeights;
use crate::data::corpus::Corpus;
use crate::data::tokenizer;
use anyhow::{bail, Context};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use moegrow_core::analysis::param_counts_for;
use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::init::preset;
use moegrow_core::{DType, ModelConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::Tokenizer;

/// Everything besides weights and optimizer moments that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Position in the seeded order of training windows.
    pub position: u64,
    pub tokens: u64,
    /// Training FLOPs of the base before this run (from its provenance), and of this run.
    pub sunk_flops: f64,
    pub trained_flops: f64,
    pub route_bias: RouteBias,
    pub elapsed_s: f64,
    /// How parameters are laid out in `optimizer.bpk` ([`PARAM_LAYOUT`]; absent in runs of
    /// moegrow before the weight schema, whose optimizer state does not fit today's model).
    #[serde(default)]
    pub param_layout: u32,
}

/// One flat parameter per schema leaf, experts stacked (moegrow 0.1 with the weight schema).
const PARAM_LAYOUT: u32 = 2;

const STATE_FILE: &str = "trainer_state.json";
const OPTIM_FILE: &str = "optimizer.bpk";

/// Options that only the command line sets (not part of a run's configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub force: bool,
    /// Testing: kill the process (SIGKILL) right after this step, as an interruption would.
    pub kill_after: Option<usize>,
    /// Print one line per logged step to stdout.
    pub verbose: bool,
}

/// Collects every parameter's id and rank (global-norm clipping needs both).
#[derive(Default)]
struct Ranks(Vec<(ParamId, usize)>);

impl ModuleVisitor for Ranks {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push((p.id, D));
    }
}

/// burn's wgpu runtime registers once per process; later callers share the device.
fn wgpu_device() -> anyhow::Result<(Device, String)> {
    type Probe = Result<(Device, String), String>;
    static DEVICE: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            // Probe with our own runtime first: it reports a missing adapter as an error
            // rather than a panic.
            let name = moegrow_core::gpu::Gpu::new_blocking()
                .map_err(|e| e.to_string())?
                .describe();
            let device = Device::wgpu_options()
                .init()
                .map_err(|e| format!("burn cannot use the GPU ({name}): {e}"))?;
            Ok((device, name))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// The burn device for `--device` under every command's policy ([`crate::device::resolve`]):
/// `cpu` is burn's flex backend, `gpu` burn's wgpu backend on whatever adapter there is
/// (lavapipe included), `auto` the GPU when it is real hardware, else the CPU.
pub fn open_device(choice: &str) -> anyhow::Result<(Device, String)> {
    let choice: crate::device::Device = choice.parse()?;
    match crate::device::resolve(choice)? {
        (Some(_), _) => {
            let (d, name) = wgpu_device()?;
            Ok((d, format!("gpu (burn wgpu: {name})")))
        }
        (None, words) => Ok((
            Device::flex(),
            format!("cpu (burn flex){}", words.strip_prefix("CPU").unwrap_or("")),
        )),
    }
}

/// The starting weights, and the base's sunk FLOPs recorded in its provenance.
fn starting_weights(cfg: &TrainConfig) -> anyhow::Result<(HostWeights, f64)> {
    if let Some(path) = &cfg.init {
        let ckpt = crate::cmd::open(path)?;
        let sunk = moegrow_core::growth::provenance::sunk_flops(&ckpt).unwrap_or(0.0);
        let w = HostWeights::from_checkpoint(&ckpt)
            .with_context(|| format!("cannot read the weights of {}", path.display()))?;
        Ok((w, sunk))
    } else {
        let name = cfg.preset.as_deref().unwrap_or("tiny");
        let p = preset(name)?;
        let config = ModelConfig::from_json(p.config_json(DType::F32))?;
        Ok((
            HostWeights::initialised(&config, cfg.seed, cfg.init_std)?,
            0.0,
        ))
    }
}

fn latest_checkpoint(out: &Path) -> anyhow::Result<Option<(PathBuf, TrainerState)>> {
    let dir = out.join("checkpoints");
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(PathBuf, TrainerState)> = None;
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        let Ok(text) = std::fs::read_to_string(p.join(STATE_FILE)) else {
            continue;
        };
        let s: TrainerState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a trainer state", p.join(STATE_FILE).display()))?;
        if best.as_ref().is_none_or(|(_, b)| s.step > b.step) {
            best = Some((p, s));
        }
    }
    Ok(best)
}

/// Keep only the metrics of steps up to `step` (a resumed run rewrites what came after).
fn truncate_metrics(path: &Path, step: usize) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let mut kept = String::new();
    for line in text.lines() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => break, // a line cut short by the interruption
        };
        if v["step"].as_u64().is_some_and(|s| s as usize <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(path, kept)?;
    Ok(())
}

struct Batch {
    inputs: Tensor<2, Int>,
    targets: Tensor<2, Int>,
}

fn to_batch(x: Vec<i64>, y: Vec<i64>, rows: usize, seq: usize, device: &Device) -> Batch {
    Batch {
        inputs: Tensor::from_data(TensorData::new(x, [rows, seq]), device),
        targets: Tensor::from_data(TensorData::new(y, [rows, seq]), device),
    }
}

/// Mean next-token cross-entropy of `logits [B, T, V]` against `targets [B, T]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    let logp = log_softmax(logits.reshape([b * t, v]), 1);
    let picked = logp.gather(1, targets.reshape([b * t, 1]));
    picked.mean().neg()
}

/// Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_` does (burn's own
/// clipping is per tensor). Returns the norm before clipping.
fn clip_global(grads: &mut GradientsParams, ranks: &[(ParamId, usize)], max: f32) -> f64 {
    fn sq<const D: usize>(g: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
        g.get::<D>(id).map(|t| t.square().sum())
    }
    fn scale<const D: usize>(g: &mut GradientsParams, id: ParamId, s: f64) {
        if let Some(t) = g.remove::<D>(id) {
            g.register(id, t * s);
        }
    }
    let total = ranks
        .iter()
        .filter_map(|&(id, r)| match r {
            1 => sq::<1>(grads, id),
            2 => sq::<2>(grads, id),
            3 => sq::<3>(grads, id),
            _ => None,
        })
        .reduce(|a, b| a + b);
    let Some(total) = total else { return 0.0 };
    let norm = (total.into_scalar::<f32>() as f64).sqrt();
    if max > 0.0 && norm > max as f64 {
        let s = max as f64 / (norm + 1e-6);
        for &(id, r) in ranks {
            match r {
                1 => scale::<1>(grads, id, s),
                2 => scale::<2>(grads, id, s),
                3 => scale::<3>(grads, id, s),
                _ => {}
            }
        }
    }
    norm
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub arch: Arch,
    pub host: HostWeights,
    pub net: Net,
    pub device: Device,
    pub device_name: String,
    optim: ModuleOptimizer,
    ranks: Vec<(ParamId, usize)>,
    rope: RopeTables,
    pub state: TrainerState,
    aux_coef: f64,
    flops_per_token: f64,
}

impl Trainer {
    pub fn new(
        cfg: TrainConfig,
        host: HostWeights,
        sunk_flops: f64,
        device: Device,
        device_name: String,
    ) -> anyhow::Result<Trainer> {
        let arch = Arch::new(&host.config)?;
        let net = Net::load(&arch, &host, &device)?;
        let mut ranks = Ranks::default();
        net.visit(&mut ranks);
        let optim = AdamWConfig::new()
            .with_beta_1(cfg.beta1)
            .with_beta_2(cfg.beta2)
            .with_epsilon(cfg.eps)
            .with_weight_decay(cfg.weight_decay)
            .init();
        let rope = RopeTables::new(&arch, cfg.seq_len, &device);
        let aux_coef = cfg.aux_coef.unwrap_or_else(|| {
            host.config
                .raw
                .get("router_aux_loss_coef")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
        });
        let counts = param_counts_for(&host.config);
        let state = TrainerState {
            step: 0,
            position: 0,
            tokens: 0,
            sunk_flops,
            trained_flops: 0.0,
            route_bias: initial_route_bias(&arch, &host, cfg.bias_rate),
            elapsed_s: 0.0,
            param_layout: PARAM_LAYOUT,
        };
        Ok(Trainer {
            flops_per_token: counts.train_flops_per_token() as f64,
            cfg,
            arch,
            host,
            net,
            device,
            device_name,
            optim,
            ranks: ranks.0,
            rope,
            state,
            aux_coef,
        })
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.cfg.schedule,
            lr: self.cfg.lr,
            warmup: self.cfg.warmup,
            total: self.cfg.steps,
            min_ratio: self.cfg.min_lr_ratio,
            decay_fraction: self.cfg.decay_fraction,
        }
    }

    /// Loss of one batch on the autodiff graph: (total, cross-entropy, aux, expert counts).
    fn loss(&self, net: &Net, b: Batch) -> anyhow::Result<(Tensor<1>, f64, f64, Vec<Vec<usize>>)> {
        let out = net.forward(&self.arch, &self.rope, b.inputs, &self.state.route_bias)?;
        let ce = cross_entropy(out.logits, b.targets);
        let counts = out.routing.iter().map(|r| r.counts.clone()).collect();
        let aux = if self.aux_coef != 0.0 {
            aux_loss(&out.routing, self.arch.config.moe.num_experts)
        } else {
            None
        };
        let ce_value = ce.clone().detach().into_scalar::<f32>() as f64;
        match aux {
            Some(a) => {
                let a_value = a.clone().detach().into_scalar::<f32>() as f64;
                Ok((ce + a * self.aux_coef, ce_value, a_value, counts))
            }
            None => Ok((ce, ce_value, 0.0, counts)),
        }
    }

    /// One optimizer step over `grad_accum` micro-batches. Returns (cross-entropy, aux, grad
    /// norm, lr).
    pub fn step(&mut self, data: &mut Batches) -> anyhow::Result<(f64, f64, f64, f64)> {
        let (bs, seq, accum) = (self.cfg.batch_size, self.cfg.seq_len, self.cfg.grad_accum);
        let mut acc = GradientsAccumulator::<Net>::new();
        let (mut ce_sum, mut aux_sum) = (0.0, 0.0);
        let mut all_counts: Vec<Vec<usize>> = Vec::new();
        for _ in 0..accum {
            let (x, y) = data.batch(self.state.position, bs);
            self.state.position += bs as u64;
            let batch = to_batch(x, y, bs, seq, &self.device);
            let (loss, ce, aux, counts) = self.loss(&self.net, batch)?;
            if !ce.is_finite() {
                bail!(
                    "the loss became {ce} at step {}; lower --lr or check the data",
                    self.state.step + 1
                );
            }
            ce_sum += ce;
            aux_sum += aux;
            let loss = if accum > 1 { loss / accum as f64 } else { loss };
            let grads = loss.backward();
            acc.accumulate(&self.net, GradientsParams::from_grads(grads, &self.net));
            if all_counts.is_empty() {
                all_counts = counts;
            } else {
                for (a, c) in all_counts.iter_mut().zip(&counts) {
                    a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                }
            }
        }
        let mut grads = acc.grads();
        let norm = clip_global(&mut grads, &self.ranks, self.cfg.clip);
        let lr = self.schedule().at(self.state.step);
        let net = std::mem::replace(&mut self.net, placeholder());
        self.net = self.optim.step(lr, net, grads);
        if self.cfg.bias_rate > 0.0 {
            self.state
                .route_bias
                .update(&all_counts, self.cfg.bias_rate);
        }
        let tokens = (bs * seq * accum) as u64;
        self.state.tokens += tokens;
        self.state.trained_flops += self.flops_per_token * tokens as f64;
        self.state.step += 1;
        Ok((ce_sum / accum as f64, aux_sum / accum as f64, norm, lr))
    }

    /// Mean cross-entropy over held-out windows, without gradients.
    pub fn eval(&self, windows: &[(Vec<i64>, Vec<i64>)]) -> anyhow::Result<f64> {
        let net = self.net.valid();
        let device = self.device.clone().inner();
        let rope = RopeTables::new(&self.arch, self.cfg.seq_len, &device);
        let mut total = 0.0;
        let mut n = 0usize;
        for chunk in windows.chunks(self.cfg.batch_size) {
            let x: Vec<i64> = chunk.iter().flat_map(|(x, _)| x.clone()).collect();
            let y: Vec<i64> = chunk.iter().flat_map(|(_, y)| y.clone()).collect();
            let b = to_batch(x, y, chunk.len(), self.cfg.seq_len, &device);
            let out = net.forward(&self.arch, &rope, b.inputs, &self.state.route_bias)?;
            total += cross_entropy(out.logits, b.targets).into_scalar::<f32>() as f64
                * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(total / n.max(1) as f64)
    }

    /// Write the model as a Hugging Face checkpoint at `dir` (atomically), with the tokenizer,
    /// the trainer state and, for resumable checkpoints, the optimizer state.
    pub fn save(
        &mut self,
        dir: &Path,
        tokenizer_files: &[(String, Vec<u8>)],
        with_optimizer: bool,
    ) -> anyhow::Result<()> {
        self.net.store(&mut self.host)?;
        // The checkpoint's correction bias is the selection bias the run used (and moved, when
        // balancing by bias is on).
        for (slot, b) in self
            .arch
            .correction_bias_slots()
            .iter()
            .zip(&self.state.route_bias.layers)
        {
            self.host.tensors[slot.index].values.clone_from(b);
        }
        let total = self.state.sunk_flops + self.state.trained_flops;
        let mut extra = tokenizer_files.to_vec();
        extra.extend([(
            STATE_FILE.to_string(),
            serde_json::to_vec_pretty(&self.state)?,
        )]);
        if with_optimizer {
            let bytes = self
                .optim
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer state: {e:?}"))?;
            extra.push((OPTIM_FILE.to_string(), bytes.to_vec()));
        }
        let opts = WriteOptions {
            force: true,
            extra_files: extra,
            metadata: [
                ("moegrow_sunk_flops".to_string(), format!("{total:e}")),
                (
                    "moegrow_train".to_string(),
                    json!({"step": self.state.step, "tokens": self.state.tokens,
                           "trained_flops": self.state.trained_flops,
                           "sunk_flops_before": self.state.sunk_flops})
                    .to_string(),
                ),
            ]
            .into(),
            ..WriteOptions::default()
        };
        write_checkpoint(
            dir,
            &self.host.config.to_json_string(),
            &self.host.export(),
            None,
            &opts,
            |_| {},
        )
        .with_context(|| format!("cannot write checkpoint {}", dir.display()))?;
        Ok(())
    }

    fn load_optimizer(&mut self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(OPTIM_FILE);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let optim = std::mem::replace(&mut self.optim, AdamWConfig::new().init());
        self.optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("{}: not an optimizer state: {e:?}", path.display()))?;
        Ok(())
    }
}

/// The selection bias a run starts from: the checkpoint's routing correction bias where the
/// family has one (GLM-4.5: aux-loss-free balancing then moves it as DeepSeek-V3 does), zeros
/// when balancing by bias is asked for on a family without one, else none.
pub(super) fn initial_route_bias(arch: &Arch, host: &HostWeights, rate: f32) -> RouteBias {
    let slots = arch.correction_bias_slots();
    if !slots.is_empty() {
        RouteBias {
            layers: slots
                .iter()
                .map(|s| host.tensors[s.index].values.clone())
                .collect(),
        }
    } else if rate > 0.0 {
        RouteBias::zeros(arch.moe_layers(), host.config.moe.num_experts)
    } else {
        RouteBias::default()
    }
}

/// A zero-sized stand-in while the optimizer owns the model for one step.
fn placeholder() -> Net {
    Net { params: Vec::new() }
}

/// Prepare `o.out` for a run: continue the saved configuration and find the latest checkpoint
/// (`--resume`), refuse to overwrite a run without `--force`, or clear the old one.
fn open_run_dir(
    cfg: &mut TrainConfig,
    o: &RunOptions,
) -> anyhow::Result<Option<(PathBuf, TrainerState)>> {
    let out = &o.out;
    let cfg_path = out.join("train.json");
    let mut resume_from = None;
    if o.resume {
        let text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "--resume: {} has no train.json; start the run without --resume",
                out.display()
            )
        })?;
        let saved: TrainConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a training configuration", cfg_path.display()))?;
        // A resumed run continues the saved configuration; only the step count and the device
        // may change.
        let (steps, device) = (cfg.steps, cfg.device.clone());
        *cfg = saved;
        cfg.steps = steps.max(cfg.steps);
        cfg.device = device;
        resume_from = latest_checkpoint(out)?;
    } else if cfg_path.exists() && !o.force {
        bail!(
            "{} already holds a training run; pass --resume to continue it or --force to start over",
            out.display()
        );
    } else if o.force && out.exists() {
        for sub in ["checkpoints", "final"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let _ = std::fs::remove_file(out.join("metrics.jsonl"));
        let _ = std::fs::remove_file(out.join("metrics.csv"));
    }
    cfg.check()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(resume_from)
}

/// The tokenised corpus of a run.
struct RunData {
    /// `tokenizer.json` and `tokenizer_config.json`, written into every checkpoint.
    tokenizer_files: Vec<(String, Vec<u8>)>,
    train: Batches,
    eval: Vec<(Vec<i64>, Vec<i64>)>,
    /// Held-out cross-entropy of the training unigram distribution (the baseline).
    unigram: f64,
}

/// Load and tokenise the corpus with the run's own tokenizer (a resumed run), the starting
/// checkpoint's, or one trained on the corpus; write the run's `tokenizer.json` and
/// `train.json`.
fn prepare_data(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    model_vocab: usize,
) -> anyhow::Result<RunData> {
    let corpus = Corpus::load_or_default(cfg.corpus.as_deref(), &cfg.text_field)?.0;
    for line in &corpus.report {
        println!("corpus  {line}");
    }
    let tok_path = out.join("tokenizer.json");
    let load = |p: &Path| -> anyhow::Result<(Tokenizer, PathBuf)> {
        let (file, dir) = if p.is_dir() {
            (p.join("tokenizer.json"), p.to_path_buf())
        } else {
            (
                p.to_path_buf(),
                p.parent().unwrap_or(Path::new(".")).to_path_buf(),
            )
        };
        let tk = Tokenizer::from_file(&file)
            .map_err(|e| anyhow::anyhow!("{}: not a usable tokenizer: {e}", file.display()))?;
        Ok((tk, dir))
    };
    // The tokenizer, and where its end-of-document token is declared.
    let (tk, tok_dir): (Tokenizer, Option<PathBuf>) = if tok_path.exists() && resume {
        let (tk, dir) = load(&tok_path)?;
        (tk, Some(dir))
    } else if let Some(p) = &cfg.tokenizer {
        let (tk, dir) = load(p)?;
        (tk, Some(dir))
    } else if let Some(init) = cfg
        .init
        .as_ref()
        .filter(|i| i.join("tokenizer.json").exists())
    {
        let (tk, dir) = load(init)?;
        (tk, Some(dir))
    } else if cfg.init.is_none() || cfg.train_tokenizer {
        // From scratch there is no tokenizer to keep; asked to, train one on the corpus.
        (
            tokenizer::train(&corpus, cfg.vocab_size.unwrap_or(model_vocab))?,
            None,
        )
    } else {
        let init = cfg.init.as_ref().expect("checked");
        bail!(
            "{} has no tokenizer.json: pass --tokenizer PATH (the tokenizer it was trained with) or --train-tokenizer (a new one trained on the corpus, which the checkpoint's embeddings have never seen)",
            init.display()
        );
    };
    let dirs: Vec<&Path> = tok_dir
        .iter()
        .map(|d| d.as_path())
        .chain(cfg.init.iter().map(|p| p.as_path()))
        .collect();
    let (eos, eos_token) = tokenizer::end_of_document(&tk, &dirs)?;
    let tok_vocab = tk.get_vocab_size(true);
    if tok_vocab > model_vocab {
        bail!("the tokenizer has {tok_vocab} tokens but the model's vocabulary is {model_vocab}; pass a smaller --vocab-size");
    }
    let tokenizer_json = tk
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?
        .into_bytes();
    std::fs::write(&tok_path, &tokenizer_json)?;
    // The end-of-document token travels with the tokenizer (a resumed run and the written
    // checkpoints know it, and transformers' AutoTokenizer reads it).
    let tokenizer_config = serde_json::to_vec_pretty(&json!({"eos_token": eos_token}))?;
    std::fs::write(out.join("tokenizer_config.json"), &tokenizer_config)?;
    std::fs::write(
        out.join("train.json"),
        serde_json::to_string_pretty(cfg)? + "\n",
    )?;
    let train_ids = tokenizer::encode_with(&tk, eos, &corpus.train)?;
    let eval_ids = tokenizer::encode_with(&tk, eos, &corpus.heldout)?;
    let unigram = tokenizer::unigram_cross_entropy(&train_ids, &eval_ids, model_vocab);
    let train = Batches::new(train_ids, cfg.seq_len, cfg.seed)?;
    let eval = eval_windows(&eval_ids, cfg.seq_len, cfg.eval_sequences);
    if eval.is_empty() {
        bail!("the held-out text has fewer than {} tokens; use a larger corpus or a shorter --seq-len", cfg.seq_len + 1);
    }
    Ok(RunData {
        tokenizer_files: vec![
            ("tokenizer.json".into(), tokenizer_json),
            ("tokenizer_config.json".into(), tokenizer_config),
        ],
        train,
        eval,
        unigram,
    })
}

/// One logged step.
struct StepRecord {
    step: usize,
    loss: f64,
    aux: f64,
    lr: f64,
    norm: f64,
    tokens_per_s: f64,
    eval_loss: Option<f64>,
}

/// `metrics.jsonl` (always) and `metrics.csv` (`--csv`), appended to as the run goes.
struct MetricsLog {
    jsonl: std::fs::File,
    csv: Option<std::fs::File>,
}

impl MetricsLog {
    fn open(out: &Path, csv: bool, resumed: bool) -> anyhow::Result<MetricsLog> {
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))
        };
        let jsonl = append(&out.join("metrics.jsonl"))?;
        let csv = if csv {
            let p = out.join("metrics.csv");
            let fresh = !p.exists() || !resumed;
            let mut f = append(&p)?;
            if fresh {
                writeln!(
                    f,
                    "step,loss,aux_loss,lr,tokens,flops,grad_norm,tokens_per_s,eval_loss"
                )?;
            }
            Some(f)
        } else {
            None
        };
        Ok(MetricsLog { jsonl, csv })
    }

    fn write(&mut self, r: &StepRecord, s: &TrainerState) -> anyhow::Result<()> {
        let flops = s.sunk_flops + s.trained_flops;
        let mut rec = json!({
            "step": r.step, "loss": r.loss, "aux_loss": r.aux, "lr": r.lr,
            "tokens": s.tokens,
            "flops": flops,
            "trained_flops": s.trained_flops,
            "grad_norm": r.norm, "tokens_per_s": r.tokens_per_s, "elapsed_s": s.elapsed_s,
        });
        if let Some(e) = r.eval_loss {
            rec["eval_loss"] = json!(e);
        }
        writeln!(self.jsonl, "{rec}")?;
        if let Some(f) = self.csv.as_mut() {
            writeln!(
                f,
                "{},{},{},{},{},{flops},{},{},{}",
                r.step,
                r.loss,
                r.aux,
                r.lr,
                s.tokens,
                r.norm,
                r.tokens_per_s,
                r.eval_loss.map(|e| e.to_string()).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

fn step_bar(steps: usize, at: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(steps as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(at as u64);
    bar
}

/// `moegrow train`: the whole run.
pub fn run(mut cfg: TrainConfig, o: RunOptions) -> anyhow::Result<serde_json::Value> {
    let out = &o.out;
    let resume_from = open_run_dir(&mut cfg, &o)?;
    let started = Instant::now();

    // Weights: the latest checkpoint of this run, or the starting point.
    let (host, sunk) = match &resume_from {
        Some((dir, _)) => {
            let ckpt = crate::cmd::open(dir)?;
            (HostWeights::from_checkpoint(&ckpt)?, 0.0)
        }
        None => starting_weights(&cfg)?,
    };
    let RunData {
        tokenizer_files,
        train: mut data,
        eval,
        unigram,
    } = prepare_data(&cfg, out, o.resume, host.config.vocab_size)?;

    let (device, device_name) = open_device(&cfg.device)?;
    device.seed(cfg.seed);
    let mut t = Trainer::new(cfg.clone(), host, sunk, device.autodiff(), device_name)?;
    let metrics_path = out.join("metrics.jsonl");
    if let Some((dir, state)) = &resume_from {
        if state.param_layout != PARAM_LAYOUT {
            bail!(
                "{}: this run was saved by an older moegrow whose optimizer state does not match today's parameters; start a new run from it with --init {}",
                dir.display(),
                dir.display()
            );
        }
        t.load_optimizer(dir)?;
        t.state = state.clone();
        truncate_metrics(&metrics_path, state.step)?;
        eprintln!(
            "resuming {} at step {} from {}",
            out.display(),
            state.step,
            dir.display()
        );
    } else {
        if o.resume {
            eprintln!(
                "{} has no checkpoint yet; starting the run over",
                out.display()
            );
        }
        let _ = std::fs::remove_file(&metrics_path);
    }
    let mut metrics = MetricsLog::open(out, cfg.csv, resume_from.is_some())?;

    let counts = param_counts_for(&t.host.config);
    eprintln!(
        "training {} ({} layers, {} experts top-{}, {:.2}M parameters, {:.2}M activated) on {} — {} steps × {} sequences × {} tokens{}; held-out unigram baseline {:.3} nats",
        t.host.config.family.name(),
        t.host.config.num_layers,
        t.host.config.moe.num_experts,
        t.host.config.moe.top_k,
        counts.total as f64 / 1e6,
        counts.activated as f64 / 1e6,
        t.device_name,
        cfg.steps,
        cfg.batch_size * cfg.grad_accum,
        cfg.seq_len,
        if t.state.sunk_flops > 0.0 { format!("; sunk {:.3e} FLOPs", t.state.sunk_flops) } else { String::new() },
        unigram
    );

    let bar = step_bar(cfg.steps, t.state.step);
    let base_elapsed = t.state.elapsed_s;
    let mut window_start = Instant::now();
    let mut window_tokens = 0u64;
    let mut last_loss = f64::NAN;
    let mut last_eval = None;
    while t.state.step < cfg.steps {
        let (loss, aux, norm, lr) = t.step(&mut data)?;
        last_loss = loss;
        window_tokens += (cfg.batch_size * cfg.seq_len * cfg.grad_accum) as u64;
        let step = t.state.step;
        let eval_loss = if (cfg.eval_every > 0 && step % cfg.eval_every == 0) || step == cfg.steps {
            let e = t.eval(&eval)?;
            last_eval = Some(e);
            Some(e)
        } else {
            None
        };
        t.state.elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
        if step % cfg.log_every == 0 || eval_loss.is_some() || step == cfg.steps {
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            let tps = window_tokens as f64 / secs;
            window_start = Instant::now();
            window_tokens = 0;
            let r = StepRecord {
                step,
                loss,
                aux,
                lr,
                norm,
                tokens_per_s: tps,
                eval_loss,
            };
            metrics.write(&r, &t.state)?;
            bar.set_message(format!("loss {loss:.3} lr {lr:.2e} {tps:.0} tok/s"));
            if o.verbose || eval_loss.is_some() {
                bar.suspend(|| {
                    println!(
                        "step {step}/{} loss {loss:.4}{} lr {lr:.3e} grad-norm {norm:.3} {tps:.0} tok/s",
                        cfg.steps,
                        eval_loss.map(|e| format!(" eval {e:.4}")).unwrap_or_default()
                    )
                });
            }
        }
        bar.set_position(step as u64);
        if cfg.save_every > 0 && step % cfg.save_every == 0 && step < cfg.steps {
            let dir = out.join("checkpoints").join(format!("step-{step:07}"));
            t.save(&dir, &tokenizer_files, true)?;
            prune_checkpoints(out, cfg.keep_checkpoints)?;
        }
        if o.kill_after == Some(step) {
            metrics.jsonl.flush()?;
            kill_self();
        }
    }
    bar.finish_and_clear();
    t.save(&out.join("final"), &tokenizer_files, false)?;
    plot_metrics(out, unigram)?;
    let summary = json!({
        "steps": t.state.step, "tokens": t.state.tokens,
        "final_loss": last_loss, "final_eval_loss": last_eval,
        "unigram_cross_entropy_heldout": unigram,
        "sunk_flops": t.state.sunk_flops, "trained_flops": t.state.trained_flops,
        "flops": t.state.sunk_flops + t.state.trained_flops,
        "device": t.device_name, "elapsed_s": t.state.elapsed_s,
        "parameters": counts,
    });
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    println!(
        "trained {} steps ({} tokens) in {:.1} s: loss {:.4}, held-out {} (unigram baseline {:.3}); wrote {}",
        t.state.step,
        t.state.tokens,
        t.state.elapsed_s,
        last_loss,
        last_eval.map(|e| format!("{e:.4}")).unwrap_or("-".into()),
        unigram,
        out.join("final").display()
    );
    Ok(summary)
}

fn prune_checkpoints(out: &Path, keep: usize) -> anyhow::Result<()> {
    let dir = out.join("checkpoints");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    all.sort();
    let keep = keep.max(1);
    if all.len() > keep {
        for p in &all[..all.len() - keep] {
            std::fs::remove_dir_all(p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(())
}

/// `loss.png` / `loss.svg`: training and held-out loss against steps, with the unigram line.
fn plot_metrics(out: &Path, unigram: f64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let s = v["step"].as_f64().unwrap_or(0.0);
        if let Some(l) = v["loss"].as_f64() {
            train.push((s, l));
        }
        if let Some(e) = v["eval_loss"].as_f64() {
            eval.push((s, e));
        }
    }
    let series = vec![
        ("train loss".to_string(), train),
        ("held-out loss".to_string(), eval),
    ];
    let hl = vec![("unigram baseline (held-out)".to_string(), unigram)];
    for ext in ["png", "svg"] {
        crate::plot::lines(
            &out.join(format!("loss.{ext}")),
            "Training loss",
            "step",
            "cross-entropy (nats)",
            &series,
            &hl,
        )?;
    }
    Ok(())
}

/// End the process at once, as an interruption would (`--kill-after`, for the resume tests).
fn kill_self() {
    // SAFETY: plain syscall; SIGKILL ends the process at once, exactly as `kill -9`.
    #[cfg(unix)]
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}
