//! `moegrow`: grow pretrained Mixture-of-Experts checkpoints and train on.

mod cmd;
mod data;
mod device;
mod experiment;
mod fmt;
mod plot;
mod progress;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "moegrow",
    version,
    about = "Recycle pretrained MoE checkpoints: inspect, grow, train on"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a freshly initialised, seeded checkpoint (Qwen3-MoE layout) from a preset.
    Init(cmd::init::Args),
    /// Summarise a checkpoint: architecture, routing, parameters, FLOPs, expert-norm profile.
    Inspect(cmd::inspect::Args),
    /// Run the CPU reference forward pass on a token sequence.
    Forward(cmd::forward::Args),
    /// Grow a checkpoint: depth by interposition (or stacking), width by expert duplication.
    Grow(cmd::grow::Args),
    /// Per-layer expert weight-norm profiles of two or more checkpoints side by side.
    Compare(cmd::compare::Args),
    /// Load a training corpus (default: the Rust documentation books), train a byte-level BPE
    /// tokenizer on it and report sizes and the unigram baseline loss.
    Corpus(cmd::corpus::Args),
    /// Train with burn (GPU via wgpu, or CPU): continue a grown checkpoint or start from a
    /// preset; metrics.jsonl, resumable checkpoints and a final Hugging Face checkpoint.
    Train(cmd::train::Args),
    /// The sunk-cost study in miniature: base with WSD, growth at several sunk-compute points,
    /// ablations, scratch; report.md, results.json and plots.
    Experiment(experiment::Args),
    /// Benchmarks (growth throughput and peak memory).
    Bench(cmd::bench::Args),
    /// Rewrite a checkpoint in another expert layout, dtype or shard size.
    Convert(cmd::convert::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => cmd::init::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Forward(a) => cmd::forward::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Grow(a) => cmd::grow::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Corpus(a) => cmd::corpus::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Experiment(a) => experiment::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
