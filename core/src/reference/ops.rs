//! The elementary operations of the reference forward pass, in plain f32.
//!
//! Row-major matrices; linear weights are `[out, in]` as Hugging Face stores them, so a linear
//! layer is `x · Wᵀ`. The product itself goes to `matrixmultiply` (a blocked, vectorised
//! kernel), which keeps `--verify` on models of a few hundred million parameters practical.

/// A row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Mat {
        assert_eq!(
            data.len(),
            rows * cols,
            "Mat::from_vec: {rows}x{cols} needs {} values",
            rows * cols
        );
        Mat { rows, cols, data }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Copy the columns `start..start + width` into a new matrix.
    pub fn cols_slice(&self, start: usize, width: usize) -> Mat {
        let mut out = Mat::zeros(self.rows, width);
        for r in 0..self.rows {
            out.row_mut(r)
                .copy_from_slice(&self.row(r)[start..start + width]);
        }
        out
    }

    pub fn add_assign(&mut self, other: &Mat) {
        debug_assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        self.data
            .iter_mut()
            .zip(&other.data)
            .for_each(|(a, b)| *a += b);
    }
}

/// `C = A · B` for strided row-major operands (`rs*` row strides, `cs*` column strides),
/// overwriting C. The one place the reference calls into a GEMM kernel: `matrixmultiply`
/// (blocked, SIMD-dispatching, threaded natively). `gemm` measured no faster here (0.151 s vs
/// 0.140 s for a 256-token forward of the 100M preset) and builds slower.
///
/// # Safety
/// Every `(i, j)` access within `m × k`, `k × n` and `m × n` with the given strides must be in
/// bounds of the pointed-to allocations.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc);
}

/// `x · Wᵀ` for `x: [m, k]` and `w: [n, k]` (a linear layer without bias).
pub fn linear(x: &Mat, w: &[f32], n: usize) -> Mat {
    let (m, k) = (x.rows, x.cols);
    assert_eq!(
        w.len(),
        n * k,
        "linear: weight has {} values, expected {n}x{k}",
        w.len()
    );
    let mut out = Mat::zeros(m, n);
    if m == 0 || n == 0 {
        return out;
    }
    if k == 0 {
        return out;
    }
    // SAFETY: the slices hold m·k, n·k and m·n elements, matching the strides passed.
    unsafe {
        sgemm(
            m,
            k,
            n,
            x.data.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            out.data.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    out
}

/// A strided view of a row-major matrix: `rows × cols` values starting at `offset`, with
/// `row_stride` elements between rows (columns are contiguous). Lets attention multiply one
/// head's slice of a wider matrix without copying it out.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

impl<'a> View<'a> {
    /// Columns `start..start + width` of `m`.
    pub fn cols_of(m: &'a Mat, start: usize, width: usize) -> View<'a> {
        View {
            data: &m.data,
            offset: start,
            rows: m.rows,
            cols: width,
            row_stride: m.cols,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.offset + (self.rows - 1) * self.row_stride + self.cols;
            assert!(last <= self.data.len(), "view past the end of its matrix");
        }
    }
}

/// `out[.., out_offset..out_offset + n] = a · bᵀ` (`b_transposed`: `a · b`), for strided views;
/// `out_stride` is the output's row stride.
pub fn matmul_into(
    a: View,
    b: View,
    b_transposed: bool,
    out: &mut [f32],
    out_offset: usize,
    out_stride: usize,
) {
    a.check();
    b.check();
    let (m, k) = (a.rows, a.cols);
    let n = if b_transposed { b.rows } else { b.cols };
    assert_eq!(
        if b_transposed { b.cols } else { b.rows },
        k,
        "matmul: inner dimensions differ"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        out_offset + (m - 1) * out_stride + n <= out.len(),
        "matmul: output too small"
    );
    // B as the k×n operand: for a·bᵀ element (kk, j) is b[j][kk]; for a·b it is b[kk][j].
    let (rsb, csb) = if b_transposed {
        (1, b.row_stride as isize)
    } else {
        (b.row_stride as isize, 1)
    };
    // SAFETY: the checks above keep every strided access inside the slices.
    unsafe {
        sgemm(
            m,
            k,
            n,
            a.data.as_ptr().add(a.offset),
            a.row_stride as isize,
            1,
            b.data.as_ptr().add(b.offset),
            rsb,
            csb,
            out.as_mut_ptr().add(out_offset),
            out_stride as isize,
            1,
        );
    }
}

/// A linear layer with an optional bias.
pub fn linear_bias(x: &Mat, w: &[f32], b: Option<&[f32]>, n: usize) -> Mat {
    let mut out = linear(x, w, n);
    if let Some(b) = b {
        for r in 0..out.rows {
            out.row_mut(r).iter_mut().zip(b).for_each(|(o, b)| *o += b);
        }
    }
    out
}

/// RMSNorm over groups of `width` consecutive values (the whole row, or each head):
/// `w ⊙ x / sqrt(mean(x²) + eps)`.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let width = w.len();
    for group in x.chunks_exact_mut(width) {
        let ms = group.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        group
            .iter_mut()
            .zip(w)
            .for_each(|(v, w)| *v = w * (*v * inv));
    }
}

pub fn rms_norm_rows(x: &Mat, w: &[f32], eps: f32) -> Mat {
    let mut out = x.clone();
    rms_norm(&mut out.data, w, eps);
    out
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// A SwiGLU feed-forward block `down(silu(gate·x) ⊙ up·x)`.
pub fn swiglu(x: &Mat, gate: &[f32], up: &[f32], down: &[f32], intermediate: usize) -> Mat {
    let mut g = linear(x, gate, intermediate);
    let u = linear(x, up, intermediate);
    g.data
        .iter_mut()
        .zip(&u.data)
        .for_each(|(g, u)| *g = silu(*g) * u);
    linear(&g, down, x.cols)
}

pub use crate::rope::Rope;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_naive_on_odd_shapes() {
        let (m, k, n) = (5, 7, 3);
        let x = Mat::from_vec(m, k, (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect());
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let y = linear(&x, &w, n);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|j| x.row(r)[j] * w[c * k + j]).sum();
                let got = y.row(r)[c];
                assert!(
                    (got - want).abs() < 1e-5,
                    "Failed at index ({r},{c}): computed {got} vs expected {want}"
                );
            }
        }
    }

    #[test]
    fn strided_matmul_matches_naive_for_head_slices() {
        // Two "heads" of width 3 side by side; multiply head 1 of x by head 1 of y, both ways.
        let (t, w) = (5, 3);
        let x = Mat::from_vec(
            t,
            2 * w,
            (0..t * 2 * w).map(|i| (i as f32 * 0.7).sin()).collect(),
        );
        let y = Mat::from_vec(
            t,
            2 * w,
            (0..t * 2 * w).map(|i| (i as f32 * 0.3).cos()).collect(),
        );
        let mut xyt = vec![0.0; t * t];
        matmul_into(
            View::cols_of(&x, w, w),
            View::cols_of(&y, w, w),
            true,
            &mut xyt,
            0,
            t,
        );
        for i in 0..t {
            for j in 0..t {
                let want: f32 = (0..w).map(|c| x.row(i)[w + c] * y.row(j)[w + c]).sum();
                assert!(
                    (xyt[i * t + j] - want).abs() < 1e-5,
                    "Failed at index ({i},{j}): computed {} vs expected {want}",
                    xyt[i * t + j]
                );
            }
        }
        let p = Mat::from_vec(t, t, xyt);
        let mut out = vec![0.0; t * 2 * w];
        matmul_into(
            View::cols_of(&p, 0, t),
            View::cols_of(&y, w, w),
            false,
            &mut out,
            w,
            2 * w,
        );
        for i in 0..t {
            for c in 0..w {
                let want: f32 = (0..t).map(|j| p.row(i)[j] * y.row(j)[w + c]).sum();
                let got = out[i * 2 * w + w + c];
                assert!(
                    (got - want).abs() < 1e-4,
                    "Failed at index ({i},{c}): computed {got} vs expected {want}"
                );
                assert_eq!(
                    out[i * 2 * w + c],
                    0.0,
                    "head 0 columns must stay untouched"
                );
            }
        }
    }

    #[test]
    fn rms_norm_unit_weight_gives_unit_rms() {
        let mut x = vec![3.0, 4.0, 0.0, -5.0];
        rms_norm(&mut x, &[1.0; 4], 0.0);
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rope_preserves_norm_and_position_zero_is_identity() {
        let rope = Rope::new(8, 10000.0, 4);
        let orig: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        for interleaved in [false, true] {
            let mut v = orig.clone();
            rope.apply(&mut v, 0, interleaved);
            assert_eq!(v, orig);
            rope.apply(&mut v, 3, interleaved);
            let n0: f32 = orig.iter().map(|x| x * x).sum();
            let n1: f32 = v.iter().map(|x| x * x).sum();
            assert!((n0 - n1).abs() < 1e-4);
            assert_ne!(v, orig);
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1000.0, 1001.0, 999.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }
}
