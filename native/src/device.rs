//! `--device auto|cpu|gpu`: where statistics and forward passes run.

use moegrow_core::gpu::Gpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The GPU when an adapter exists, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

/// The GPU for this choice: `None` for `cpu` (or `auto` without an adapter), an error for `gpu`
/// without one.
pub fn open(choice: Device) -> anyhow::Result<Option<Gpu>> {
    match choice {
        Device::Cpu => Ok(None),
        Device::Gpu => Ok(Some(Gpu::new_blocking()?)),
        Device::Auto => Ok(Gpu::new_blocking().ok()),
    }
}

/// Where the work ran, in words.
pub fn describe(gpu: &Option<Gpu>) -> String {
    match gpu {
        Some(g) => format!("GPU: {}", g.describe()),
        None => "CPU".into(),
    }
}
