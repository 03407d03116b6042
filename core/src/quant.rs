//! Block-scaled FP8 weights, as DeepSeek-V3/R1, Kimi-K2 and the Qwen3 `-FP8` checkpoints ship
//! them (`quantization_config: {quant_method: "fp8", weight_block_size: [b0, b1]}`): a weight
//! `X.weight` stored as `F8_E4M3` `[rows, cols]` with `X.weight_scale_inv` of shape
//! `[ceil(rows/b0), ceil(cols/b1)]` (F32 for DeepSeek, BF16 for Qwen, E8M0 for some newer
//! checkpoints); element `(i, j)` is `e4m3(w[i, j]) · scale[i / b0][j / b1]`. Stacked experts
//! keep their leading dimension (`[E, rows, cols]` with `[E, …grid]` scales).
//!
//! Quantising writes what transformers' `Fp8Quantize` writes: per block `amax`, the inverse
//! scale `amax / 448` (1 for an all-zero block) stored in the scale dtype, values divided by
//! the stored scale, clamped to ±448 and rounded to nearest even.

use crate::dtype::{decode_f32, encode_f32, f32_to_e4m3, DType, E4M3_MAX};
use crate::error::{Error, Result};
use serde_json::Value;

/// How a model's quantised weights are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Fp8Block {
    /// `[rows, cols]` of one block.
    pub block: [usize; 2],
    /// Modules the checkpoint keeps unquantised (`modules_to_not_convert`, names without the
    /// `.weight` suffix).
    pub not_converted: Vec<String>,
    /// `scale_fmt: "ue8m0"`: every block scale a power of two.
    pub pow2_scales: bool,
}

impl Fp8Block {
    /// `quantization_config` of a config, if any. Methods other than block-scaled FP8 are
    /// refused: their tensors (packed integers, zero points) are not weights moegrow can map.
    pub(crate) fn parse(raw: &serde_json::Map<String, Value>) -> Result<Option<Fp8Block>> {
        let Some(q) = raw.get("quantization_config").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
        if method != "fp8" {
            return Err(Error::config(format!(
                "`quantization_config.quant_method` `{method}` is not supported (moegrow reads block-scaled fp8)"
            )));
        }
        let block = q
            .get("weight_block_size")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .filter(|b| b.len() == 2 && b.iter().all(|&x| x > 0))
            .ok_or_else(|| {
                Error::config(
                    "`quantization_config.weight_block_size` must be two positive integers (per-tensor fp8 is not supported)",
                )
            })?;
        let not_converted = q
            .get("modules_to_not_convert")
            .or_else(|| q.get("ignored_layers"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Fp8Block {
            block: [block[0] as usize, block[1] as usize],
            not_converted,
            pow2_scales: q.get("scale_fmt").and_then(Value::as_str) == Some("ue8m0"),
        }))
    }

    /// The `quantization_config` to write for these settings.
    pub fn to_json(&self) -> Value {
        let mut q = serde_json::json!({
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": self.block,
        });
        if !self.not_converted.is_empty() {
            q["modules_to_not_convert"] = self.not_converted.clone().into();
        }
        if self.pow2_scales {
            q["scale_fmt"] = "ue8m0".into();
        }
        q
    }
}

/// How one stored tensor is quantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQuant {
    pub block: [usize; 2],
    /// The dtype its scales are stored in.
    pub scale_dtype: DType,
    /// Scales are powers of two even when stored as floats (`scale_fmt: "ue8m0"`,
    /// DeepSeek-V3.1/V3.2): newly quantised blocks round their scale up to one.
    pub pow2: bool,
}

/// The name of a weight's scale tensor: `X.weight` → `X.weight_scale_inv`, any other name
/// (the fused `experts.gate_up_proj`) → `name_scale_inv`.
pub fn scale_name(weight: &str) -> String {
    format!("{weight}_scale_inv")
}

/// The scale grid of a tensor: its last two dimensions divided by the block, rounded up.
pub fn scale_shape(shape: &[usize], block: [usize; 2]) -> Vec<usize> {
    let n = shape.len();
    let mut s = shape.to_vec();
    if n >= 2 {
        s[n - 2] = shape[n - 2].div_ceil(block[0]);
        s[n - 1] = shape[n - 1].div_ceil(block[1]);
    }
    s
}

/// Whether moegrow reads and writes scales in this dtype.
pub fn is_scale_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::BF16 | DType::F16 | DType::F8E8M0)
}

/// (leading count, rows, cols) of a matrix or a stack of matrices.
fn dims(shape: &[usize]) -> (usize, usize, usize) {
    match shape {
        [r, c] => (1, *r, *c),
        [e, r, c] => (*e, *r, *c),
        [n] => (1, 1, *n),
        _ => (1, 1, shape.iter().product()),
    }
}

/// Dequantise e4m3 `bytes` of `shape` with their scale grid.
pub fn dequantize(bytes: &[u8], shape: &[usize], scales: &[f32], q: BlockQuant) -> Result<Vec<f32>> {
    let (e, r, c) = dims(shape);
    let [b0, b1] = q.block;
    let (gr, gc) = (r.div_ceil(b0), c.div_ceil(b1));
    if bytes.len() != e * r * c || scales.len() != e * gr * gc {
        return Err(Error::Invalid(format!(
            "{} float8 values and {} scales do not make a {shape:?} tensor in {b0}x{b1} blocks",
            bytes.len(),
            scales.len()
        )));
    }
    let values = decode_f32(DType::F8E4M3, bytes);
    let mut out = Vec::with_capacity(values.len());
    for x in 0..e {
        for i in 0..r {
            let srow = &scales[(x * gr + i / b0) * gc..][..gc];
            let row = &values[(x * r + i) * c..][..c];
            out.extend(row.iter().enumerate().map(|(j, v)| v * srow[j / b1]));
        }
    }
    Ok(out)
}

/// Quantise f32 `values` of `shape` into e4m3 bytes and their scale grid (in
/// `q.scale_dtype`, which must be F32, BF16, F16 or E8M0).
pub fn quantize(values: &[f32], shape: &[usize], q: BlockQuant) -> Result<(Vec<u8>, Vec<u8>)> {
    let (e, r, c) = dims(shape);
    let [b0, b1] = q.block;
    let (gr, gc) = (r.div_ceil(b0), c.div_ceil(b1));
    if values.len() != e * r * c {
        return Err(Error::Invalid(format!(
            "{} values do not make a {shape:?} tensor",
            values.len()
        )));
    }
    // Per block: the inverse scale amax / 448, rounded to what the scale dtype stores, so that
    // dequantising with the stored scale inverts the division below.
    let mut inv = vec![0f32; e * gr * gc];
    for x in 0..e {
        for i in 0..r {
            for j in 0..c {
                let s = &mut inv[(x * gr + i / b0) * gc + j / b1];
                *s = s.max(values[(x * r + i) * c + j].abs());
            }
        }
    }
    for s in inv.iter_mut() {
        *s = if *s > 0.0 && s.is_finite() { *s / E4M3_MAX } else { 1.0 };
        if q.scale_dtype == DType::F8E8M0 || q.pow2 {
            *s = 2f32.powi(s.log2().ceil() as i32);
        }
    }
    let scale_bytes = match q.scale_dtype {
        DType::F8E8M0 => inv
            .iter()
            .map(|s| (s.log2().round() as i32 + 127).clamp(0, 254) as u8)
            .collect(),
        d if is_scale_dtype(d) => encode_f32(d, &inv),
        d => {
            return Err(Error::Invalid(format!(
                "block scales in {} are not supported (F32, BF16, F16, F8_E8M0)",
                d.name()
            )))
        }
    };
    let stored = decode_f32(q.scale_dtype, &scale_bytes);
    let mut bytes = Vec::with_capacity(values.len());
    for x in 0..e {
        for i in 0..r {
            let srow = &stored[(x * gr + i / b0) * gc..][..gc];
            bytes.extend(
                values[(x * r + i) * c..][..c]
                    .iter()
                    .enumerate()
                    .map(|(j, v)| f32_to_e4m3((v / srow[j / b1]).clamp(-E4M3_MAX, E4M3_MAX))),
            );
        }
    }
    Ok((bytes, scale_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantise then dequantise: every value within half an e4m3 step of its block's scale,
    /// ragged edge blocks included (a 5×7 matrix in 2×3 blocks, like DeepSeek-V3's
    /// `kv_a_proj_with_mqa` whose 576 rows leave a partial 128-row block).
    #[test]
    fn round_trip_is_within_e4m3_precision_on_ragged_blocks() {
        let shape = [2usize, 5, 7];
        let v: Vec<f32> = (0..70).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013).collect();
        for sd in [DType::F32, DType::BF16, DType::F8E8M0] {
            let q = BlockQuant {
                block: [2, 3],
                scale_dtype: sd,
                pow2: false,
            };
            let (bytes, scales) = quantize(&v, &shape, q).unwrap();
            assert_eq!(scales.len(), 2 * 3 * 3 * sd.size().unwrap());
            let back = dequantize(&bytes, &shape, &decode_f32(sd, &scales), q).unwrap();
            for (i, (a, b)) in v.iter().zip(&back).enumerate() {
                // 3 mantissa bits: relative error at most 2^-4 of the value, or a subnormal step.
                assert!(
                    (a - b).abs() <= a.abs() / 16.0 + 2e-5,
                    "{sd:?} index {i}: {a} vs {b}"
                );
            }
        }
        assert_eq!(scale_shape(&[576, 7168], [128, 128]), vec![5, 56]);
        assert_eq!(scale_name("model.layers.0.mlp.down_proj.weight"), "model.layers.0.mlp.down_proj.weight_scale_inv");
    }

    /// `scale_fmt: ue8m0` (DeepSeek-V3.2): F32 scales that are powers of two, the next one up
    /// from amax / 448, so the block maximum still fits.
    #[test]
    fn ue8m0_scales_are_powers_of_two_at_or_above_amax_over_448() {
        let v = [0.3f32, -0.01, 112.0, 2.0];
        let q = BlockQuant { block: [1, 2], scale_dtype: DType::F32, pow2: true };
        let (bytes, scales) = quantize(&v, &[2, 2], q).unwrap();
        let s = decode_f32(DType::F32, &scales);
        assert_eq!(s, vec![2f32.powi(-10), 2f32.powi(-2)]);
        let back = dequantize(&bytes, &[2, 2], &s, q).unwrap();
        assert_eq!(back[2], 112.0);
        assert!((back[0] - 0.3).abs() < 0.3 / 16.0);
    }

    #[test]
    fn quantised_values_are_exact_at_the_block_maximum_and_zero_blocks_scale_one() {
        let v = [0.0f32, 0.0, 3.5, -7.0];
        let q = BlockQuant {
            block: [1, 2],
            scale_dtype: DType::F32,
            pow2: false,
        };
        let (bytes, scales) = quantize(&v, &[2, 2], q).unwrap();
        let s = decode_f32(DType::F32, &scales);
        assert_eq!(s, vec![1.0, 7.0 / 448.0]);
        let back = dequantize(&bytes, &[2, 2], &s, q).unwrap();
        assert_eq!(back[3], -7.0);
        assert_eq!(&back[..2], &[0.0, 0.0]);
    }
}
