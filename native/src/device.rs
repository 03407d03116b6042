//! `--device auto|cpu|gpu`: where statistics, forward passes and training run — one policy for
//! every command. `auto` takes a GPU only when it is real hardware: a software renderer such as
//! Mesa's lavapipe computes correctly but far slower than the CPU paths (it trains ~30× slower
//! than burn's CPU backend), so `auto` leaves it to those who ask for it with `--device gpu`.

use moegrow_core::gpu::Gpu;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The GPU when it is real hardware, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for Device {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Device> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            other => anyhow::bail!("--device must be auto, cpu or gpu, got `{other}`"),
        }
    }
}

/// Where a choice runs: the GPU to use (`None`: the CPU), and in words where and why.
pub fn resolve(choice: Device) -> anyhow::Result<(Option<Gpu>, String)> {
    match choice {
        Device::Cpu => Ok((None, "CPU".into())),
        Device::Gpu => {
            let g = Gpu::new_blocking()?;
            let d = format!("GPU: {}", g.describe());
            Ok((Some(g), d))
        }
        Device::Auto => match Gpu::new_blocking() {
            Ok(g) if !g.is_software() => {
                let d = format!("GPU: {}", g.describe());
                Ok((Some(g), d))
            }
            Ok(g) => Ok((
                None,
                format!(
                    "CPU (the only GPU adapter, {}, is a software renderer; --device gpu uses it)",
                    g.describe()
                ),
            )),
            Err(_) => Ok((None, "CPU (no GPU adapter)".into())),
        },
    }
}

/// The GPU for this choice: `None` for `cpu` (or `auto` without a hardware adapter), an error
/// for `gpu` without one.
pub fn open(choice: Device) -> anyhow::Result<Option<Gpu>> {
    Ok(resolve(choice)?.0)
}

/// Where the work ran, in words.
pub fn describe(gpu: &Option<Gpu>) -> String {
    match gpu {
        Some(g) => format!("GPU: {}", g.describe()),
        None => "CPU".into(),
    }
}
