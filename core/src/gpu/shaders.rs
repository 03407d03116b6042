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

/// Rows per expert tile of the training kernels (`T` in `grouped_matmul.wgsl`).
pub const GROUPED_TILE_ROWS: usize = 16;

/// Rust limits that a WGSL `const` mirrors: (shader file, WGSL name, value). The reflection
/// test below requires each pair to agree, so changing one side alone fails.
pub const MIRRORED_CONSTANTS: &[(&str, &str, usize)] = &[
    ("attention.wgsl", "MAX_T", super::ops::MAX_ATTENTION_TOKENS),
    ("moe.wgsl", "TILE", super::ops::MOE_TILE_ROWS),
    ("moe.wgsl", "MAX_EXPERTS", super::ops::MAX_MOE_EXPERTS),
    ("router.wgsl", "MAX_E", super::ops::MAX_ROUTER_EXPERTS),
    ("router.wgsl", "MAX_GROUPS", super::ops::MAX_ROUTER_GROUPS),
    ("grouped_matmul.wgsl", "T", GROUPED_TILE_ROWS),
];

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
    use crate::gpu::ops::*;

    fn module(file: &str) -> naga::Module {
        let (_, source) = super::ALL
            .iter()
            .find(|(f, _)| *f == file)
            .unwrap_or_else(|| panic!("{file} is not in gpu::shaders::ALL"));
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    /// A parameter block's Rust layout: (file, WGSL struct, size, fields).
    type Layout = (
        &'static str,
        &'static str,
        usize,
        Vec<(&'static str, usize, &'static str)>,
    );

    fn layout<P: ShaderParams>() -> Layout {
        (P::WGSL.0, P::WGSL.1, std::mem::size_of::<P>(), P::fields())
    }

    /// Every parameter block the launchers fill has a WGSL twin with the same members in the
    /// same order, at the same byte offsets, of the same scalar types, and the same size; a
    /// field added, renamed, retyped or reordered on one side only fails here.
    #[test]
    fn parameter_blocks_match_their_wgsl_structs() {
        let mut failures = Vec::new();
        for (file, name, size, fields) in [
            layout::<MatmulParams>(),
            layout::<NormParams>(),
            layout::<RopeParams>(),
            layout::<AttentionParams>(),
            layout::<EwParams>(),
            layout::<RouterParams>(),
            layout::<MoeParams>(),
            layout::<ReduceParams>(),
            layout::<NoiseParams>(),
        ] {
            let m = module(file);
            let Some((members, span)) = m.types.iter().find_map(|(_, t)| match &t.inner {
                naga::TypeInner::Struct { members, span } if t.name.as_deref() == Some(name) => {
                    Some((members.clone(), *span))
                }
                _ => None,
            }) else {
                failures.push(format!("{file}: no struct {name}"));
                continue;
            };
            let wgsl: Vec<(String, usize, &str)> = members
                .iter()
                .map(|mem| {
                    let ty = match m.types[mem.ty].inner {
                        naga::TypeInner::Scalar(naga::Scalar {
                            kind: naga::ScalarKind::Uint,
                            width: 4,
                        }) => "u32",
                        naga::TypeInner::Scalar(naga::Scalar {
                            kind: naga::ScalarKind::Sint,
                            width: 4,
                        }) => "i32",
                        naga::TypeInner::Scalar(naga::Scalar {
                            kind: naga::ScalarKind::Float,
                            width: 4,
                        }) => "f32",
                        _ => "other",
                    };
                    (mem.name.clone().unwrap_or_default(), mem.offset as usize, ty)
                })
                .collect();
            let rust: Vec<(String, usize, &str)> = fields
                .iter()
                .map(|(n, o, t)| (n.to_string(), *o, *t))
                .collect();
            if wgsl != rust {
                failures.push(format!("{file}::{name}:\n  WGSL {wgsl:?}\n  Rust {rust:?}"));
            }
            if span as usize != size {
                failures.push(format!("{file}::{name}: WGSL size {span}, Rust size {size}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Every Rust limit a shader mirrors equals the shader's `const`.
    #[test]
    fn mirrored_constants_agree() {
        for &(file, name, value) in super::MIRRORED_CONSTANTS {
            let m = module(file);
            let c = m
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{file}: no const {name}"))
                .1;
            let got = match m.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v as usize,
                naga::Expression::Literal(naga::Literal::I32(v)) => v as usize,
                ref other => panic!("{file}: const {name} is not an integer literal: {other:?}"),
            };
            assert_eq!(got, value, "{file}: const {name} = {got}, but Rust says {value}");
        }
    }

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
