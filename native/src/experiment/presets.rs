//! Study presets: the base architecture and every budget, all tied to the base's
//! Chinchilla-optimal compute `F_c = 120 · N_a²` so that the same shape of study (checkpoints
//! before and after `F_c`, growth budgets as a share of it) holds at every scale.

use moegrow_core::init::Preset;

#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyPreset {
    pub name: &'static str,
    /// The base model (Qwen3-MoE layout, every layer MoE).
    #[serde(skip)]
    pub model: Preset,
    /// `auto`, `cpu` or `gpu` (as `train --device`).
    pub device: String,
    pub batch_size: usize,
    pub seq_len: usize,
    /// The base trains with warmup-stable-decay and is saved at these multiples of `F_c`; the
    /// last one is its annealed end.
    pub checkpoints: &'static [f64],
    /// Extra compute of every growth arm and the scratch arm, as a multiple of `F_c`.
    pub extra_compute: f64,
    /// The fixed-total-budget variant: sunk + extra = this multiple of `F_c`.
    pub total_compute: f64,
    pub base_lr: f64,
    /// Constant learning rate after growth (fresh optimizer state), and for scratch.
    pub grow_lr: f64,
    pub warmup: usize,
    /// Evaluations per run (roughly): the curves' resolution.
    pub evals: usize,
    pub eval_sequences: usize,
    /// Include the k = 4 depth arms.
    pub k4: bool,
}

fn model(
    name: &'static str,
    vocab: usize,
    hidden: usize,
    layers: usize,
    experts: usize,
    ffn: usize,
) -> Preset {
    Preset {
        name,
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: hidden / 4,
        expert_intermediate: ffn,
        num_experts: experts,
        top_k: 2,
    }
}

pub const NAMES: &[&str] = &["tiny", "quick", "standard", "gpu"];

pub fn study_preset(name: &str) -> anyhow::Result<StudyPreset> {
    Ok(match name {
        // A smoke test of every arm: seconds per arm, no claim expected to hold.
        "tiny" => StudyPreset {
            name: "tiny",
            model: model("study-tiny", 288, 16, 2, 4, 16),
            device: "cpu".into(),
            batch_size: 4,
            seq_len: 32,
            checkpoints: &[0.0125, 0.025, 0.05],
            extra_compute: 0.05,
            total_compute: 0.1,
            base_lr: 3e-3,
            grow_lr: 2e-3,
            warmup: 2,
            evals: 4,
            eval_sequences: 4,
            k4: true,
        },
        // Within 15 minutes on a 2-core CPU: checkpoints at ¼, ½, 1 and 1½ × F_c.
        "quick" => StudyPreset {
            name: "quick",
            model: model("study-quick", 320, 32, 4, 8, 32),
            device: "cpu".into(),
            batch_size: 16,
            seq_len: 64,
            checkpoints: &[0.25, 0.5, 1.0, 1.5],
            extra_compute: 0.25,
            total_compute: 1.25,
            base_lr: 3e-3,
            grow_lr: 2e-3,
            warmup: 20,
            evals: 8,
            eval_sequences: 16,
            k4: true,
        },
        // About an hour on a CPU: a wider model, finer sunk-compute points, more extra compute.
        "standard" => StudyPreset {
            name: "standard",
            model: model("study-standard", 512, 64, 4, 8, 64),
            device: "cpu".into(),
            batch_size: 16,
            seq_len: 128,
            checkpoints: &[0.25, 0.5, 1.0, 1.5, 2.0],
            extra_compute: 0.5,
            total_compute: 2.5,
            base_lr: 3e-3,
            grow_lr: 2e-3,
            warmup: 40,
            evals: 10,
            eval_sequences: 32,
            k4: true,
        },
        // About 10 minutes on one large GPU.
        "gpu" => StudyPreset {
            name: "gpu",
            model: model("study-gpu", 4096, 256, 8, 16, 256),
            device: "gpu".into(),
            batch_size: 32,
            seq_len: 256,
            checkpoints: &[0.25, 0.5, 1.0, 2.0],
            extra_compute: 0.5,
            total_compute: 2.5,
            base_lr: 2e-3,
            grow_lr: 1e-3,
            warmup: 50,
            evals: 10,
            eval_sequences: 32,
            k4: true,
        },
        other => anyhow::bail!(
            "unknown study preset `{other}`; choose one of {}",
            NAMES.join(", ")
        ),
    })
}
