//! The element types of safetensors files. moegrow reads every dtype the format defines (sizes
//! and byte alignment checked per dtype), copies any of them byte for byte, and decodes to f32
//! the ones that are numbers it can compute with: the IEEE floats, bf16, the float8 formats
//! (e4m3fn, e5m2, their fnuz variants, e8m0 scales), fp4 e2m1 and the integers. Compute is
//! always f32; conversion happens once, at the edge.

use half::{bf16, f16};

/// Every dtype of the safetensors format (0.8), in its declaration order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DType {
    Bool,
    /// fp4 e2m1, two per byte (the low nibble first, as transformers packs MXFP4).
    F4,
    F6E2M3,
    F6E3M2,
    U8,
    I8,
    F8E5M2,
    /// float8 e4m3fn: no infinities, NaN = 0x7F/0xFF, max 448 (`torch.float8_e4m3fn`).
    F8E4M3,
    /// float8 e8m0: an unsigned power of two, 2^(b − 127), 0xFF = NaN (block scales).
    F8E8M0,
    F8E4M3Fnuz,
    F8E5M2Fnuz,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
    /// Not a safetensors dtype: 4-bit two's-complement-offset integers packed eight to an
    /// `I32` word, the low nibble first (compressed-tensors' `pack-quantized` int4, each code
    /// `q + 8`). moegrow's name for the values inside such `I32` tensors; never in a header.
    I4,
}

impl DType {
    pub const ALL: [DType; 22] = [
        DType::Bool,
        DType::F4,
        DType::F6E2M3,
        DType::F6E3M2,
        DType::U8,
        DType::I8,
        DType::F8E5M2,
        DType::F8E4M3,
        DType::F8E8M0,
        DType::F8E4M3Fnuz,
        DType::F8E5M2Fnuz,
        DType::I16,
        DType::U16,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::U32,
        DType::F32,
        DType::C64,
        DType::F64,
        DType::I64,
        DType::U64,
    ];

    /// Bits per element.
    pub fn bits(self) -> usize {
        match self {
            DType::F4 | DType::I4 => 4,
            DType::F6E2M3 | DType::F6E3M2 => 6,
            DType::Bool
            | DType::U8
            | DType::I8
            | DType::F8E5M2
            | DType::F8E4M3
            | DType::F8E8M0
            | DType::F8E4M3Fnuz
            | DType::F8E5M2Fnuz => 8,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 16,
            DType::I32 | DType::U32 | DType::F32 => 32,
            DType::C64 | DType::F64 | DType::I64 | DType::U64 => 64,
        }
    }

    /// Bytes per element, for the whole-byte dtypes (`None` for fp4 and fp6, which pack).
    pub fn size(self) -> Option<usize> {
        self.bits().is_multiple_of(8).then(|| self.bits() / 8)
    }

    /// Bytes `numel` elements take: `None` when the bits do not fill whole bytes (the format
    /// requires that) or the count overflows.
    pub fn bytes_for(self, numel: usize) -> Option<usize> {
        let bits = numel.checked_mul(self.bits())?;
        bits.is_multiple_of(8).then_some(bits / 8)
    }

    /// The fewest bytes that hold a whole number of elements (3 for fp6, 1 for fp4): slices of
    /// a tensor read piece by piece are cut at multiples of it.
    pub fn block_bytes(self) -> usize {
        let (mut a, mut b) = (self.bits(), 8);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        self.bits() / a
    }

    /// The byte whose every element is zero: 0 for every float, integer and fp4 format, and
    /// 0x88 for [`DType::I4`], whose codes are offset by 8.
    pub fn zero_byte(self) -> u8 {
        if self == DType::I4 {
            0x88
        } else {
            0
        }
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::F4 => "F4",
            DType::F6E2M3 => "F6_E2M3",
            DType::F6E3M2 => "F6_E3M2",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::F8E5M2 => "F8_E5M2",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E8M0 => "F8_E8M0",
            DType::F8E4M3Fnuz => "F8_E4M3FNUZ",
            DType::F8E5M2Fnuz => "F8_E5M2FNUZ",
            DType::I16 => "I16",
            DType::U16 => "U16",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::F32 => "F32",
            DType::C64 => "C64",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::U64 => "U64",
            DType::I4 => "I4",
        }
    }

    /// A safetensors header's `dtype` string.
    pub fn from_safetensors(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The spelling `config.json` uses (`torch_dtype` / `dtype`) for the dtypes a whole model
    /// is stored in.
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::F8E4M3 => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
            _ => self.name(),
        }
    }

    /// A dtype a user names on the command line (`--dtype`).
    pub fn parse(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" | "half" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// Whether moegrow decodes this dtype to numbers. fp6 (whose bit order within bytes the
    /// format leaves open) and complex values are carried byte for byte only.
    pub fn decodes(self) -> bool {
        !matches!(self, DType::F6E2M3 | DType::F6E3M2 | DType::C64)
    }

    /// Whether moegrow can write f32 values in this dtype.
    pub fn encodes(self) -> bool {
        matches!(
            self,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::F8E4M3
        )
    }
}

/// Largest finite e4m3fn value.
pub const E4M3_MAX: f32 = 448.0;

/// float8 e4m3fn → f32: bias 7, subnormals, no infinities, S.1111.111 is NaN.
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 3) & 0xF) as i32;
    let m = (b & 0x7) as f32;
    if e == 0xF && b & 0x7 == 0x7 {
        return f32::NAN;
    }
    sign * if e == 0 {
        m / 8.0 * 2f32.powi(-6)
    } else {
        (1.0 + m / 8.0) * 2f32.powi(e - 7)
    }
}

/// f32 → float8 e4m3fn, round to nearest even, saturating at ±448 (quantizers clamp first;
/// torch's own cast would turn values past 464 into NaN). NaN stays NaN.
pub fn f32_to_e4m3(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7F;
    }
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = x.abs().min(E4M3_MAX);
    // Candidates are exact in f32; pick the nearest code, ties to an even mantissa.
    let mut best = 0u8;
    let mut best_err = f32::INFINITY;
    // The magnitude codes 0x00..=0x7E are ordered by value: binary search for the first code
    // whose value is at least `a`, then compare it with its predecessor.
    let (mut lo, mut hi) = (0u8, 0x7Eu8);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if e4m3_to_f32(mid) < a {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for c in [lo.saturating_sub(1), lo] {
        let err = (e4m3_to_f32(c) - a).abs();
        if err < best_err || (err == best_err && c & 1 == 0) {
            best = c;
            best_err = err;
        }
    }
    sign | best
}

/// float8 e5m2 → f32: the top byte of an f16.
pub fn e5m2_to_f32(b: u8) -> f32 {
    f16::from_bits((b as u16) << 8).to_f32()
}

/// The fnuz float8 variants: no negative zero, 0x80 is the only NaN, exponent bias one more.
fn fnuz_to_f32(b: u8, exp_bits: u32, man_bits: u32) -> f32 {
    if b == 0x80 {
        return f32::NAN;
    }
    let bias = (1 << (exp_bits - 1)) as i32; // one more than the IEEE bias
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> man_bits) & ((1 << exp_bits) - 1) as u8) as i32;
    let m = (b & ((1 << man_bits) - 1) as u8) as f32 / (1 << man_bits) as f32;
    sign * if e == 0 {
        m * 2f32.powi(1 - bias)
    } else {
        (1.0 + m) * 2f32.powi(e - bias)
    }
}

/// float8 e8m0 → f32: 2^(b − 127); 0xFF is NaN.
pub fn e8m0_to_f32(b: u8) -> f32 {
    if b == 0xFF {
        f32::NAN
    } else {
        2f32.powi(b as i32 - 127)
    }
}

/// fp4 e2m1 values by nibble.
pub const FP4_VALUES: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Decode little-endian bytes of `dtype` into f32; `None` for a dtype moegrow does not decode
/// (see [`DType::decodes`]). The length must match the header (checked on open).
pub fn try_decode_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    macro_rules! le {
        ($n:literal, $t:ty) => {
            bytes
                .chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")) as f32)
                .collect()
        };
    }
    Some(match dtype {
        DType::F32 => le!(4, f32),
        DType::F64 => le!(8, f64),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F8E4M3 => bytes.iter().map(|&b| e4m3_to_f32(b)).collect(),
        DType::F8E5M2 => bytes.iter().map(|&b| e5m2_to_f32(b)).collect(),
        DType::F8E4M3Fnuz => bytes.iter().map(|&b| fnuz_to_f32(b, 4, 3)).collect(),
        DType::F8E5M2Fnuz => bytes.iter().map(|&b| fnuz_to_f32(b, 5, 2)).collect(),
        DType::F8E8M0 => bytes.iter().map(|&b| e8m0_to_f32(b)).collect(),
        DType::F4 => bytes
            .iter()
            .flat_map(|&b| [FP4_VALUES[(b & 0xF) as usize], FP4_VALUES[(b >> 4) as usize]])
            .collect(),
        DType::Bool | DType::U8 => bytes.iter().map(|&b| b as f32).collect(),
        DType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DType::I16 => le!(2, i16),
        DType::U16 => le!(2, u16),
        DType::I32 => le!(4, i32),
        DType::U32 => le!(4, u32),
        DType::I64 => le!(8, i64),
        DType::U64 => le!(8, u64),
        DType::I4 => bytes
            .iter()
            .flat_map(|&b| [(b & 0xF) as f32 - 8.0, (b >> 4) as f32 - 8.0])
            .collect(),
        DType::F6E2M3 | DType::F6E3M2 | DType::C64 => return None,
    })
}

/// [`try_decode_f32`] for a dtype known to decode; an undecodable one gives no values (the
/// checkpoint layer refuses such tensors with their name before it gets here).
pub fn decode_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    try_decode_f32(dtype, bytes).unwrap_or_default()
}

/// Encode f32 values as little-endian bytes of `dtype` (round to nearest even); `None` for a
/// dtype moegrow does not write (see [`DType::encodes`]).
pub fn try_encode_f32(dtype: DType, values: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(dtype.bytes_for(values.len()).unwrap_or(0));
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F64 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&(*v as f64).to_le_bytes())),
        DType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        DType::F8E4M3 => out.extend(values.iter().map(|&v| f32_to_e4m3(v))),
        _ => return None,
    }
    Some(out)
}

/// [`try_encode_f32`] for the dtypes moegrow writes (f32, f16, bf16, f64, e4m3fn).
pub fn encode_f32(dtype: DType, values: &[f32]) -> Vec<u8> {
    try_encode_f32(dtype, values).unwrap_or_default()
}

/// Re-encode bytes from one dtype to another; borrowed bytes pass through untouched when the
/// dtypes agree.
pub fn convert<'a>(
    from: DType,
    to: DType,
    bytes: std::borrow::Cow<'a, [u8]>,
) -> std::borrow::Cow<'a, [u8]> {
    if from == to {
        bytes
    } else {
        std::borrow::Cow::Owned(encode_f32(to, &decode_f32(from, &bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_trip_exactly_representable_values() {
        let v = [0.0f32, 1.0, -2.5, 0.15625, 65504.0];
        for dt in [DType::F32, DType::F16, DType::BF16] {
            let back = decode_f32(dt, &encode_f32(dt, &v));
            for (i, (a, b)) in v.iter().zip(&back).enumerate() {
                if dt == DType::BF16 && *a == 65504.0 {
                    continue; // not representable in bf16
                }
                assert_eq!(a, b, "{dt:?} index {i}");
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest() {
        // 1 + 2^-8 lies exactly between two bf16 values; ties go to even (1.0).
        let x = 1.0f32 + 2f32.powi(-8);
        assert_eq!(
            decode_f32(DType::BF16, &encode_f32(DType::BF16, &[x]))[0],
            1.0
        );
        assert_eq!(DType::parse("bfloat16"), Some(DType::BF16));
        assert_eq!(DType::parse("int8"), None);
    }

    /// Known values of e4m3fn (torch's float8_e4m3fn, OCP FP8): the extremes, a subnormal,
    /// NaN, and round-to-nearest-even with saturation.
    #[test]
    fn e4m3_known_values() {
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0xFE), -448.0);
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert!(e4m3_to_f32(0x7F).is_nan() && e4m3_to_f32(0xFF).is_nan());
        // Every finite code round-trips.
        for b in 0..=255u8 {
            let v = e4m3_to_f32(b);
            if !v.is_nan() && !(v == 0.0 && b == 0x80) {
                assert_eq!(f32_to_e4m3(v), b, "code {b:#04x} ({v})");
            }
        }
        assert_eq!(f32_to_e4m3(1000.0), 0x7E, "saturates");
        assert_eq!(f32_to_e4m3(-1000.0), 0xFE);
        // 1.0625 lies between 1.0 (0x38) and 1.125 (0x39): ties go to the even code.
        assert_eq!(f32_to_e4m3(1.0625), 0x38);
        assert_eq!(f32_to_e4m3(1.0626), 0x39);
        // The subnormal 0.0029296875 = 1.5 · 2^-9 ties between codes 1 and 2: even wins.
        assert_eq!(f32_to_e4m3(0.0029296875), 0x02);
    }

    #[test]
    fn other_float8_and_fp4_known_values() {
        assert_eq!(e5m2_to_f32(0x7B), 57344.0);
        assert!(e5m2_to_f32(0x7C).is_infinite());
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(130), 8.0);
        assert!(e8m0_to_f32(0xFF).is_nan());
        assert_eq!(fnuz_to_f32(0x7F, 4, 3), 240.0);
        assert!(fnuz_to_f32(0x80, 4, 3).is_nan());
        // Low nibble first: 0x72 holds 1.0 (2) then 6.0 (7).
        assert_eq!(
            try_decode_f32(DType::F4, &[0x72, 0xF9]).unwrap(),
            vec![1.0, 6.0, -0.5, -6.0]
        );
        assert_eq!(DType::F4.bytes_for(3), None, "4 bits × 3 is not whole bytes");
        assert_eq!(DType::F6E2M3.bytes_for(4), Some(3));
        assert!(try_decode_f32(DType::C64, &[0; 8]).is_none());
        for d in DType::ALL {
            assert_eq!(DType::from_safetensors(d.name()), Some(d));
        }
    }
}
