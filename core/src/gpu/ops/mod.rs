//! Host-side launchers for the WGSL kernels, one module per shader family: each fills its
//! kernel's parameter block, binds buffers and records a dispatch. Shapes are checked here, so
//! a wrong call is a Rust panic with the shapes in the message rather than a silent
//! out-of-bounds read on the device. Every parameter block is declared with
//! [`shader_params!`], which records its WGSL twin so that a test checks the two layouts agree.

use super::context::{Gpu, GpuBuffer};

/// A kernel parameter block: `#[repr(C)]`, `Pod`, and the name of the WGSL struct it mirrors,
/// whose members (names, offsets, scalar types) `gpu::shaders`' reflection test compares.
pub trait ShaderParams: bytemuck::Pod {
    /// (shader file, WGSL struct name).
    const WGSL: (&'static str, &'static str);
    /// (field, byte offset, Rust scalar type) in declaration order.
    fn fields() -> Vec<(&'static str, usize, &'static str)>;
}

/// Declares a kernel's parameter block and the WGSL struct it mirrors.
macro_rules! shader_params {
    (
        $(#[$m:meta])*
        $vis:vis struct $name:ident in $file:literal { $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ident),* $(,)? }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }
        impl $crate::gpu::ops::ShaderParams for $name {
            const WGSL: (&'static str, &'static str) = ($file, "Params");
            fn fields() -> Vec<(&'static str, usize, &'static str)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),*]
            }
        }
    };
}

mod attention;
mod elementwise;
mod matmul;
mod moe;
mod noise;
mod norm;
mod reduce;
mod rope;
mod router;

pub use attention::*;
pub use elementwise::*;
pub use matmul::*;
pub use moe::*;
pub use noise::*;
pub use norm::*;
pub use reduce::*;
pub use rope::*;
pub use router::*;

/// A `[rows, cols]` weight on the device, split by rows into parts that each fit one storage
/// binding (WebGPU devices may bind as little as 128 MiB at once).
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// (first row, buffer holding rows first..first + buffer.len / cols)
    pub parts: Vec<(usize, GpuBuffer)>,
}

impl GpuMatrix {
    pub fn upload(gpu: &Gpu, rows: usize, cols: usize, data: &[f32]) -> GpuMatrix {
        assert_eq!(
            data.len(),
            rows * cols,
            "GpuMatrix::upload: {rows}x{cols} needs {} values, got {}",
            rows * cols,
            data.len()
        );
        let max_rows = ((gpu.part_bytes() / 4) as usize / cols.max(1)).max(1);
        let mut parts = Vec::new();
        let mut first = 0;
        while first < rows || parts.is_empty() {
            let n = max_rows.min(rows - first);
            parts.push((first, gpu.upload(&data[first * cols..(first + n) * cols])));
            first += n.max(1);
        }
        GpuMatrix { rows, cols, parts }
    }

    /// The one buffer of a vector (norm weights and biases are uploaded as a single row).
    pub fn vector(&self) -> &GpuBuffer {
        assert!(
            self.parts.len() == 1,
            "a {}x{} weight split into {} parts is not a vector",
            self.rows,
            self.cols,
            self.parts.len()
        );
        &self.parts[0].1
    }
}

/// Where a matrix operand lives inside a buffer: `rows` rows of `cols` values starting at
/// `offset`, `stride` apart.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Region {
    pub fn dense(rows: usize, cols: usize) -> Region {
        Region {
            offset: 0,
            rows,
            cols,
            stride: cols,
        }
    }
    pub fn cols(rows: usize, stride: usize, offset: usize, cols: usize) -> Region {
        Region {
            offset,
            rows,
            cols,
            stride,
        }
    }
}
