//! The WGSL sources in `shaders/`, one file per op family, compiled into the binary.

pub const MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");
pub const NORM: &str = include_str!("../../../shaders/norm.wgsl");
pub const ROPE: &str = include_str!("../../../shaders/rope.wgsl");
pub const ATTENTION: &str = include_str!("../../../shaders/attention.wgsl");
pub const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
pub const ROUTER: &str = include_str!("../../../shaders/router.wgsl");
pub const MOE: &str = include_str!("../../../shaders/moe.wgsl");
pub const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
pub const NOISE: &str = include_str!("../../../shaders/noise.wgsl");
/// Grouped per-expert products for training (launched through burn by the `moegrow` binary).
pub const GROUPED_MATMUL: &str = include_str!("../../../shaders/grouped_matmul.wgsl");
/// Expert selection for training (launched through burn by the `moegrow` binary).
pub const TRAIN_ROUTER: &str = include_str!("../../../shaders/train_router.wgsl");

/// Every shader with its file name (for validation and error messages).
pub const ALL: &[(&str, &str)] = &[
    ("matmul.wgsl", MATMUL),
    ("norm.wgsl", NORM),
    ("rope.wgsl", ROPE),
    ("attention.wgsl", ATTENTION),
    ("elementwise.wgsl", ELEMENTWISE),
    ("router.wgsl", ROUTER),
    ("moe.wgsl", MOE),
    ("reduce.wgsl", REDUCE),
    ("noise.wgsl", NOISE),
    ("grouped_matmul.wgsl", GROUPED_MATMUL),
    ("train_router.wgsl", TRAIN_ROUTER),
];

#[cfg(test)]
mod tests {
    /// Every shader parses and validates with naga under WebGPU's baseline capabilities (no
    /// optional features: what the browser and lavapipe both guarantee), and every shader file
    /// in `shaders/` is listed here.
    #[test]
    fn every_wgsl_file_validates_with_webgpu_capabilities() {
        let mut failures = Vec::new();
        for (name, source) in super::ALL {
            let module = match naga::front::wgsl::parse_str(source) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{name}: {}", e.emit_to_string(source)));
                    continue;
                }
            };
            let mut v = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            );
            if let Err(e) = v.validate(&module) {
                failures.push(format!("{name}: {}", e.emit_to_string(source)));
            }
            for ep in &module.entry_points {
                let [x, y, z] = ep.workgroup_size;
                assert!(
                    x * y * z <= 256,
                    "{name}::{} uses {} invocations per workgroup (WebGPU allows 256)",
                    ep.name,
                    x * y * z
                );
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
        for e in std::fs::read_dir(dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            if n.ends_with(".wgsl") {
                assert!(
                    super::ALL.iter().any(|(f, _)| *f == n),
                    "{n} is not listed in gpu::shaders::ALL"
                );
            }
        }
    }
}
