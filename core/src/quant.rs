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
//!
//! MXFP4, as gpt-oss ships its routed experts (`quantization_config: {quant_method: "mxfp4"}`):
//! `X_blocks` U8 `[E, rows, cols/32, 16]` (two fp4 e2m1 codes per byte, the low nibble first)
//! and `X_scales` U8 `[E, rows, cols/32]`, one E8M0 exponent (`2^(byte − 127)`) per 32
//! consecutive values of a row. moegrow holds it as a block quantisation with `[1, 32]` blocks,
//! packed fp4 values and E8M0 scales, so every block-quantised path (dequantising reads, exact
//! byte copies, requantised noisy copies) serves both formats. Quantising follows the OCP
//! Microscaling rule: per block the shared exponent `floor(log2(amax)) − 2` (e2m1's largest
//! exponent), values divided by `2^e`, rounded to the nearest e2m1 value (ties to the even
//! code) and clamped to ±6; an all-zero block gets exponent 0 (byte 127).
//!
//! Int4, as Kimi-K2.5 ships its routed experts (`quantization_config: {quant_method:
//! "compressed-tensors", format: "pack-quantized"}` with one symmetric 4-bit integer group
//! scheme): a weight `X.weight [rows, cols]` stored as `X.weight_packed` I32 `[rows, cols/8]`
//! (eight codes per little-endian word, code `i` in bits `4i..4i+3`, each `q + 8`),
//! `X.weight_scale` `[rows, cols/G]` (BF16 on the hub) and `X.weight_shape` `[2]` holding
//! `[rows, cols]`. moegrow holds it as a block quantisation with `[1, G]` blocks whose values
//! are the packed nibbles ([`DType::I4`]). Decoding is compressed-tensors' `dequantize`:
//! `q · scale` computed in the scale's dtype (so rounded to bf16 for bf16 scales).
//! Quantising is its `calculate_qparams` and `quantize` for a model held in the scale's dtype:
//! values rounded to that dtype, per group `scale = amax / 7.5` (a zero group gets the dtype's
//! epsilon), `q = round_half_even(w / scale)` clamped to `[-8, 7]`, every step rounded to the
//! scale's dtype as torch does for bf16 tensors.

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
    /// What the quantised values are: float8 e4m3 (`fp8`) or packed fp4 e2m1 (`mxfp4`).
    pub format: QuantFormat,
}

/// The element format of block-quantised weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// float8 e4m3 values with `weight_scale_inv` grids (DeepSeek, Qwen `-FP8`, MiniMax).
    Fp8E4M3,
    /// fp4 e2m1 values two per byte with E8M0 scales per 32 (gpt-oss's `_blocks`/`_scales`).
    Mxfp4,
    /// compressed-tensors' pack-quantized symmetric int4 with a float scale per group of a row
    /// (`weight_packed` / `weight_scale` / `weight_shape`, Kimi-K2.5's experts).
    Int4,
}

/// MXFP4's block: one scale per 32 values of a row.
pub const MXFP4_BLOCK: [usize; 2] = [1, 32];

impl Fp8Block {
    /// `quantization_config` of a config, if any. Methods other than block-scaled FP8 are
    /// refused: their tensors (packed integers, zero points) are not weights moegrow can map.
    pub(crate) fn parse(raw: &serde_json::Map<String, Value>) -> Result<Option<Fp8Block>> {
        let Some(q) = raw.get("quantization_config").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
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
        if method == "compressed-tensors" {
            return parse_compressed_tensors(q).map(Some);
        }
        if method == "mxfp4" {
            return Ok(Some(Fp8Block {
                block: MXFP4_BLOCK,
                not_converted,
                pow2_scales: true,
                format: QuantFormat::Mxfp4,
            }));
        }
        if method != "fp8" {
            return Err(Error::config(format!(
                "`quantization_config.quant_method` `{method}` is not supported (moegrow reads block-scaled fp8, mxfp4 and compressed-tensors' pack-quantized int4)"
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
        Ok(Some(Fp8Block {
            block: [block[0] as usize, block[1] as usize],
            not_converted,
            pow2_scales: q.get("scale_fmt").and_then(Value::as_str) == Some("ue8m0"),
            format: QuantFormat::Fp8E4M3,
        }))
    }

    /// The `quantization_config` to write for these settings.
    pub fn to_json(&self) -> Value {
        if self.format == QuantFormat::Mxfp4 {
            let mut q = serde_json::json!({ "quant_method": "mxfp4" });
            if !self.not_converted.is_empty() {
                q["modules_to_not_convert"] = self.not_converted.clone().into();
            }
            return q;
        }
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

    /// Which modules the checkpoint keeps unquantised, as a matcher built once per pass.
    pub(crate) fn ignored(&self) -> Ignored<'_> {
        let patterns = if self.format == QuantFormat::Int4 {
            self.not_converted
                .iter()
                .filter_map(|p| p.strip_prefix("re:"))
                .filter_map(|p| regex::Regex::new(&format!("^(?:{p})")).ok())
                .collect()
        } else {
            Vec::new()
        };
        Ignored { names: &self.not_converted, patterns, suffixes: self.format == QuantFormat::Int4 }
    }
}

/// A config's list of unquantised modules: names, and for compressed-tensors `re:` patterns
/// (matched from the start of the module name, as Python's `re.match`).
pub(crate) struct Ignored<'a> {
    names: &'a [String],
    patterns: Vec<regex::Regex>,
    /// compressed-tensors names modules as its loader sees them (`lm_head`), which inside a
    /// multimodal wrapper are the tail of moegrow's full names (`language_model.lm_head`).
    suffixes: bool,
}

impl Ignored<'_> {
    /// Whether `module` (a weight's name without `.weight`) is kept unquantised.
    pub(crate) fn contains(&self, module: &str) -> bool {
        let named = |m: &str| {
            m == module || (self.suffixes && module.strip_suffix(m).is_some_and(|head| head.ends_with('.')))
        };
        self.names.iter().any(|m| named(m)) || self.patterns.iter().any(|p| p.is_match(module))
    }
}

/// compressed-tensors' `quantization_config`: only what moegrow reads exactly is accepted —
/// weights packed (`pack-quantized`, status `compressed`), one scheme for `Linear` layers of
/// symmetric 4-bit integers with a scale per group of a row and no activation quantisation.
/// Anything else names the key that differs.
fn parse_compressed_tensors(q: &Value) -> Result<Fp8Block> {
    let what = "moegrow reads compressed-tensors' pack-quantized symmetric int4 with group scales (Kimi-K2.5's format)";
    let bad = |k: &str, v: &Value| {
        Error::config(format!("`quantization_config.{k}` is {v}: {what}"))
    };
    let get = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let status = get(q, "quantization_status");
    if status != "compressed" {
        return Err(bad("quantization_status", &status));
    }
    let (gname, group) = q
        .get("config_groups")
        .and_then(Value::as_object)
        .filter(|g| g.len() == 1)
        .and_then(|g| g.iter().next())
        .ok_or_else(|| {
            Error::config(format!("`quantization_config.config_groups` must hold exactly one scheme: {what}"))
        })?;
    let format = group.get("format").filter(|f| !f.is_null()).cloned().unwrap_or_else(|| get(q, "format"));
    if format != "pack-quantized" {
        return Err(bad("format", &format));
    }
    for k in ["input_activations", "output_activations"] {
        let v = get(group, k);
        if !v.is_null() {
            return Err(bad(&format!("config_groups.{gname}.{k}"), &v));
        }
    }
    let kv = get(q, "kv_cache_scheme");
    if !kv.is_null() {
        return Err(bad("kv_cache_scheme", &kv));
    }
    let targets = get(group, "targets");
    if targets != serde_json::json!(["Linear"]) {
        return Err(bad(&format!("config_groups.{gname}.targets"), &targets));
    }
    let w = group.get("weights").filter(|w| w.is_object()).ok_or_else(|| {
        Error::config(format!("`quantization_config.config_groups.{gname}.weights` is missing: {what}"))
    })?;
    for (k, want) in [
        ("num_bits", serde_json::json!(4)),
        ("type", serde_json::json!("int")),
        ("symmetric", serde_json::json!(true)),
        ("strategy", serde_json::json!("group")),
    ] {
        let v = get(w, k);
        if v != want {
            return Err(bad(&format!("config_groups.{gname}.weights.{k}"), &v));
        }
    }
    for k in ["dynamic", "block_structure"] {
        let v = get(w, k);
        if !(v.is_null() || v == false) {
            return Err(bad(&format!("config_groups.{gname}.weights.{k}"), &v));
        }
    }
    // Activation ordering by groups stores a permutation (`weight_g_idx`) moegrow does not map.
    let order = get(w, "actorder");
    if !(order.is_null() || order == false || order == "static") {
        return Err(bad(&format!("config_groups.{gname}.weights.actorder"), &order));
    }
    let group_size = get(w, "group_size");
    let g = group_size.as_u64().filter(|&g| g > 0).ok_or_else(|| bad(&format!("config_groups.{gname}.weights.group_size"), &group_size))?;
    let mut ignore = Vec::new();
    for p in q.get("ignore").and_then(Value::as_array).into_iter().flatten() {
        let p = p.as_str().ok_or_else(|| bad("ignore", p))?;
        if let Some(re) = p.strip_prefix("re:") {
            regex::Regex::new(re).map_err(|e| {
                Error::config(format!("`quantization_config.ignore` pattern `{p}` is not a regular expression moegrow reads: {e}"))
            })?;
        }
        ignore.push(p.to_string());
    }
    Ok(Fp8Block {
        block: [1, g as usize],
        not_converted: ignore,
        pow2_scales: false,
        format: QuantFormat::Int4,
    })
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
    pub format: QuantFormat,
    /// The dtype of an int4 weight's `weight_shape` tensor (I32 on the hub, I64 as the
    /// compressor makes it); I32 for the other formats, which have none.
    pub shape_dtype: DType,
}

impl BlockQuant {
    /// Block-scaled float8 e4m3 in `block` with scales in `scale_dtype`.
    pub fn fp8(block: [usize; 2], scale_dtype: DType, pow2: bool) -> BlockQuant {
        BlockQuant { block, scale_dtype, pow2, format: QuantFormat::Fp8E4M3, shape_dtype: DType::I32 }
    }

    /// MXFP4: fp4 e2m1 values with an E8M0 scale per 32.
    pub fn mxfp4() -> BlockQuant {
        BlockQuant { block: MXFP4_BLOCK, scale_dtype: DType::F8E8M0, pow2: true, format: QuantFormat::Mxfp4, shape_dtype: DType::I32 }
    }

    /// compressed-tensors int4 in groups of `group` values of a row, scales in `scale_dtype`.
    pub fn int4(group: usize, scale_dtype: DType, shape_dtype: DType) -> BlockQuant {
        BlockQuant { block: [1, group], scale_dtype, pow2: false, format: QuantFormat::Int4, shape_dtype }
    }

    /// The dtype the quantised values are (packed fp4 for MXFP4).
    pub fn value_dtype(&self) -> DType {
        match self.format {
            QuantFormat::Fp8E4M3 => DType::F8E4M3,
            QuantFormat::Mxfp4 => DType::F4,
            QuantFormat::Int4 => DType::I4,
        }
    }
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
    let dtype = q.value_dtype();
    if dtype.bytes_for(e * r * c) != Some(bytes.len()) || scales.len() != e * gr * gc {
        return Err(Error::Invalid(format!(
            "{} bytes of {} values and {} scales do not make a {shape:?} tensor in {b0}x{b1} blocks",
            bytes.len(),
            dtype.name(),
            scales.len()
        )));
    }
    // Row by row, so that only the result is held (not a decoded copy beside it).
    let row_bytes = dtype.bytes_for(c).unwrap_or(c);
    let mut out = Vec::with_capacity(e * r * c);
    for x in 0..e {
        for i in 0..r {
            let srow = &scales[(x * gr + i / b0) * gc..][..gc];
            let at = (x * r + i) * row_bytes;
            let row = decode_f32(dtype, &bytes[at..at + row_bytes]);
            if q.format == QuantFormat::Int4 {
                // compressed-tensors multiplies in the scale's dtype.
                out.extend(row.iter().take(c).enumerate().map(|(j, v)| round_to(q.scale_dtype, v * srow[j / b1])));
            } else {
                out.extend(row.iter().take(c).enumerate().map(|(j, v)| v * srow[j / b1]));
            }
        }
    }
    Ok(out)
}

/// Quantise f32 `values` of `shape` into e4m3 bytes and their scale grid (in
/// `q.scale_dtype`, which must be F32, BF16, F16 or E8M0), or into MXFP4.
pub fn quantize(values: &[f32], shape: &[usize], q: BlockQuant) -> Result<(Vec<u8>, Vec<u8>)> {
    if q.format == QuantFormat::Mxfp4 {
        return quantize_mxfp4(values, shape);
    }
    if q.format == QuantFormat::Int4 {
        return quantize_int4(values, shape, q);
    }
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

/// `x` rounded to what `dtype` stores (bf16 and f16 round to nearest even; others as f32).
fn round_to(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::BF16 => half::bf16::from_f32(x).to_f32(),
        DType::F16 => half::f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// compressed-tensors int4 quantisation of rows of `shape` (see the module docs for the rule):
/// packed codes (eight per little-endian word, the low nibble first, each `q + 8`) and one
/// scale per group of `q.block[1]` values, in `q.scale_dtype`.
fn quantize_int4(values: &[f32], shape: &[usize], q: BlockQuant) -> Result<(Vec<u8>, Vec<u8>)> {
    let (e, r, c) = dims(shape);
    let g = q.block[1];
    if values.len() != e * r * c || g == 0 || !c.is_multiple_of(g) || !c.is_multiple_of(8) || !is_scale_dtype(q.scale_dtype) || q.scale_dtype == DType::F8E8M0 {
        return Err(Error::Invalid(format!(
            "{} values do not make a {shape:?} tensor of whole int4 groups of {g} in {} scales (rows a multiple of 8 and of the group)",
            values.len(),
            q.scale_dtype.name()
        )));
    }
    let round = |x: f32| round_to(q.scale_dtype, x);
    // torch.finfo(dtype).eps: what a zero group's scale becomes.
    let eps = match q.scale_dtype {
        DType::BF16 => 2f32.powi(-7),
        DType::F16 => 2f32.powi(-10),
        _ => f32::EPSILON,
    };
    let mut codes = Vec::with_capacity(values.len() / 2);
    let mut scales = Vec::with_capacity(values.len() / g);
    let mut w = vec![0f32; g];
    for group in values.chunks_exact(g) {
        for (d, v) in w.iter_mut().zip(group) {
            *d = round(*v);
        }
        let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mut s = round(amax / 7.5);
        if s == 0.0 {
            s = eps;
        }
        scales.push(s);
        let code = |x: f32| (round(x / s).round_ties_even().clamp(-8.0, 7.0) as i32 + 8) as u8;
        codes.extend(w.chunks_exact(2).map(|p| code(p[0]) | (code(p[1]) << 4)));
    }
    Ok((codes, encode_f32(q.scale_dtype, &scales)))
}

/// The e2m1 code nearest to `x` (already divided by its block's scale), ties to the even
/// code, clamped to ±6.
fn e2m1_code(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 8 } else { 0 };
    let a = if x.is_nan() { 0.0 } else { x.abs() };
    // The midpoints between 0, .5, 1, 1.5, 2, 3, 4, 6; on a midpoint the even code wins, so
    // the comparison is `>` below an even code and `>=` below an odd one's successor.
    let code = (a > 0.25) as u8
        + (a >= 0.75) as u8
        + (a > 1.25) as u8
        + (a >= 1.75) as u8
        + (a > 2.5) as u8
        + (a >= 3.5) as u8
        + (a > 5.0) as u8;
    sign | code
}

/// MXFP4 quantisation of rows of `shape` (the last dimension a multiple of 32): packed codes
/// (low nibble first) and one E8M0 byte per block (see the module docs for the rule).
fn quantize_mxfp4(values: &[f32], shape: &[usize]) -> Result<(Vec<u8>, Vec<u8>)> {
    let c = *shape.last().unwrap_or(&0);
    let n: usize = shape.iter().product();
    if values.len() != n || !c.is_multiple_of(32) {
        return Err(Error::Invalid(format!(
            "{} values do not make a {shape:?} tensor of whole 32-value MXFP4 blocks",
            values.len()
        )));
    }
    let mut codes = Vec::with_capacity(n / 2);
    let mut scales = Vec::with_capacity(n / 32);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let e = if amax > 0.0 && amax.is_finite() {
            (amax.log2().floor() as i32 - 2).clamp(-127, 127)
        } else {
            0
        };
        scales.push((e + 127) as u8);
        let inv = 2f32.powi(-e);
        for pair in block.chunks_exact(2) {
            codes.push(e2m1_code(pair[0] * inv) | (e2m1_code(pair[1] * inv) << 4));
        }
    }
    Ok((codes, scales))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::FP4_VALUES;

    /// Quantise then dequantise: every value within half an e4m3 step of its block's scale,
    /// ragged edge blocks included (a 5×7 matrix in 2×3 blocks, like DeepSeek-V3's
    /// `kv_a_proj_with_mqa` whose 576 rows leave a partial 128-row block).
    #[test]
    fn round_trip_is_within_e4m3_precision_on_ragged_blocks() {
        let shape = [2usize, 5, 7];
        let v: Vec<f32> = (0..70).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013).collect();
        for sd in [DType::F32, DType::BF16, DType::F8E8M0] {
            let q = BlockQuant::fp8([2, 3], sd, false);
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
        let q = BlockQuant::fp8([1, 2], DType::F32, true);
        let (bytes, scales) = quantize(&v, &[2, 2], q).unwrap();
        let s = decode_f32(DType::F32, &scales);
        assert_eq!(s, vec![2f32.powi(-10), 2f32.powi(-2)]);
        let back = dequantize(&bytes, &[2, 2], &s, q).unwrap();
        assert_eq!(back[2], 112.0);
        assert!((back[0] - 0.3).abs() < 0.3 / 16.0);
    }

    /// The threshold form of the e2m1 rounding equals the nearest-value search with the even
    /// code winning ties, on every midpoint, grid value and a sweep.
    #[test]
    fn e2m1_rounding_is_nearest_with_ties_to_even() {
        let nearest = |a: f32| -> u8 {
            let mut best = 0u8;
            for k in 1..8u8 {
                let (d, b) = ((FP4_VALUES[k as usize] - a).abs(), (FP4_VALUES[best as usize] - a).abs());
                if d < b || (d == b && k % 2 == 0) {
                    best = k;
                }
            }
            best
        };
        let mut xs: Vec<f32> = (0..=1400).map(|i| i as f32 * 0.005).collect();
        xs.extend([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, 7.99, 100.0]);
        for a in xs {
            assert_eq!(e2m1_code(a), nearest(a.min(6.0)), "{a}");
            assert_eq!(e2m1_code(-a), 8 | nearest(a.min(6.0)), "-{a}");
        }
    }

    /// MXFP4 known answers: the shared exponent `floor(log2 amax) − 2`, ties to the even code,
    /// clamping at ±6, the low nibble first, and a zero block at exponent 0.
    #[test]
    fn mxfp4_quantises_by_the_ocp_rule_and_round_trips_on_the_grid() {
        let mut v = vec![0f32; 64];
        v[0] = 6.0; // amax 6: e = 2 - 2 = 0
        v[1] = -0.25; // tie between 0 and 0.5: even code 0 (negative zero)
        v[2] = 0.75; // tie between 0.5 (code 1) and 1.0 (code 2): code 2
        v[3] = 2.5; // tie between 2 (code 4) and 3 (code 5): code 4
        v[4] = 5.0; // tie between 4 (code 6) and 6 (code 7): code 6
        v[5] = -3.0;
        let q = BlockQuant::mxfp4();
        let (codes, scales) = quantize(&v, &[2, 32], q).unwrap();
        assert_eq!(scales, vec![127, 127]);
        assert_eq!(codes[0], 0x7 | (0x8 << 4));
        assert_eq!(codes[1], 0x2 | (0x4 << 4));
        assert_eq!(codes[2], 0x6 | (0xD << 4));
        let back = dequantize(&codes, &[2, 32], &decode_f32(DType::F8E8M0, &scales), q).unwrap();
        assert_eq!(&back[..6], &[6.0, -0.0, 1.0, 2.0, 4.0, -3.0]);
        // amax 7.9 → e = floor(log2 7.9) - 2 = 0, 7.9 clamps to 6; amax 0.1 → e = -6
        let mut w = vec![0.1f32; 32];
        w[0] = 7.9;
        let (c, s) = quantize(&w, &[1, 32], q).unwrap();
        assert_eq!((s[0], c[0] & 0xF), (127, 7));
        let (_, s) = quantize(&[0.1f32; 32], &[1, 32], q).unwrap();
        assert_eq!(s[0] as i32 - 127, -6);
        // every grid value times a power of two survives exactly
        let grid: Vec<f32> = (0..32).map(|i| FP4_VALUES[i % 16] * 0.125).collect();
        let (c, s) = quantize(&grid, &[1, 32], q).unwrap();
        assert_eq!(dequantize(&c, &[1, 32], &decode_f32(DType::F8E8M0, &s), q).unwrap(), grid);
        assert!(quantize(&[0.0; 16], &[1, 16], q).is_err(), "rows of whole blocks only");
    }

    #[test]
    fn quantised_values_are_exact_at_the_block_maximum_and_zero_blocks_scale_one() {
        let v = [0.0f32, 0.0, 3.5, -7.0];
        let q = BlockQuant::fp8([1, 2], DType::F32, false);
        let (bytes, scales) = quantize(&v, &[2, 2], q).unwrap();
        let s = decode_f32(DType::F32, &scales);
        assert_eq!(s, vec![1.0, 7.0 / 448.0]);
        let back = dequantize(&bytes, &[2, 2], &s, q).unwrap();
        assert_eq!(back[3], -7.0);
        assert_eq!(&back[..2], &[0.0, 0.0]);
    }

    /// compressed-tensors' own int4 (its `calculate_qparams`, `quantize`, packing and
    /// `dequantize`, run by tests/fixtures/hub/generate_kimi_k25.py on bf16 rows with a zero
    /// group, x.5 ties, a lone outlier and negative extremes): moegrow's quantiser writes the
    /// same words and scales bit for bit, and its decoder gives the same values.
    #[test]
    fn int4_matches_compressed_tensors_bit_for_bit() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/hub/kimi-k2.5/compressed_tensors_int4.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let get = |n: &str| st.tensor(n).unwrap().data().to_vec();
        let input = decode_f32(DType::BF16, &get("input"));
        let shape = [6usize, 96];
        let q = BlockQuant::int4(32, DType::BF16, DType::I32);
        let (codes, scales) = quantize(&input, &shape, q).unwrap();
        let want_codes = get("weight_packed");
        let want_scales = get("weight_scale");
        for (i, (a, b)) in codes.iter().zip(&want_codes).enumerate() {
            assert_eq!(a, b, "packed byte {i} (row {}, values {}..{})", i / 48, 2 * (i % 48), 2 * (i % 48) + 2);
        }
        assert_eq!(codes.len(), want_codes.len());
        assert_eq!(scales, want_scales, "scales");
        let back = dequantize(&want_codes, &shape, &decode_f32(DType::BF16, &want_scales), q).unwrap();
        let want = decode_f32(DType::BF16, &get("decompressed"));
        for (i, (a, b)) in back.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i} (row {}, column {}): {a} vs {b}", i / 96, i % 96);
        }
        assert!(quantize(&input[..90], &[3, 30], q).is_err(), "rows of whole groups only");
    }

    /// compressed-tensors configs moegrow reads exactly, and each kind it does not, refused by
    /// the key that differs.
    #[test]
    fn compressed_tensors_configs_are_read_or_refused_by_key() {
        let base = serde_json::json!({
            "config_groups": {"group_0": {"input_activations": null, "output_activations": null, "targets": ["Linear"],
                "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 32, "num_bits": 4,
                    "observer": "minmax", "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"}}},
            "format": "pack-quantized",
            "ignore": ["lm_head", "re:.*self_attn.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
            "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed"
        });
        let parse = |q: &serde_json::Value| {
            let mut raw = serde_json::Map::new();
            raw.insert("quantization_config".into(), q.clone());
            Fp8Block::parse(&raw)
        };
        let q = parse(&base).unwrap().unwrap();
        assert_eq!((q.format, q.block), (QuantFormat::Int4, [1, 32]));
        let ig = q.ignored();
        for m in ["language_model.lm_head", "lm_head", "language_model.model.layers.3.self_attn.q_a_proj",
                  "language_model.model.layers.0.mlp.gate_proj", "model.layers.1.mlp.shared_experts.down_proj"] {
            assert!(ig.contains(m) == !m.contains("shared_experts"), "{m}");
        }
        for m in ["language_model.model.layers.1.mlp.experts.7.gate_proj", "xlm_head", "language_model.model.layers.1.mlp.gate"] {
            assert!(!ig.contains(m), "{m}");
        }
        let set = |path: &[&str], v: serde_json::Value| {
            let mut q = base.clone();
            let mut at = &mut q;
            for k in &path[..path.len() - 1] {
                at = at.get_mut(*k).unwrap();
            }
            at[path[path.len() - 1]] = v;
            q
        };
        let w = ["config_groups", "group_0", "weights"];
        for (q, key) in [
            (set(&["format"], "float-quantized".into()), "format"),
            (set(&["quantization_status"], "frozen".into()), "quantization_status"),
            (set(&[w[0], w[1], w[2], "num_bits"], 8.into()), "num_bits"),
            (set(&[w[0], w[1], w[2], "symmetric"], false.into()), "symmetric"),
            (set(&[w[0], w[1], w[2], "strategy"], "channel".into()), "strategy"),
            (set(&[w[0], w[1], w[2], "actorder"], "group".into()), "actorder"),
            (set(&[w[0], w[1], "input_activations"], serde_json::json!({"num_bits": 8})), "input_activations"),
            (set(&["ignore"], serde_json::json!(["re:(unclosed"])), "regular expression"),
        ] {
            let e = parse(&q).err().unwrap_or_else(|| panic!("{key} accepted")).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
