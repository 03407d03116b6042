//! `moegrow`: grow pretrained Mixture-of-Experts checkpoints and train on.

mod cmd;
mod plot;
mod progress;

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
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
