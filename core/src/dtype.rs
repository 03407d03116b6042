//! The element types moegrow reads and writes. Compute is always f32; bf16 and f16 exist only
//! on disk, so conversion happens once, at the edge.

use half::{bf16, f16};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// The spelling `config.json` uses (`torch_dtype` / `dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" | "half" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }
}

/// Decode little-endian bytes of `dtype` into f32. The length must be a multiple of the
/// element size (checked by the caller against the header).
pub fn decode_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// Encode f32 values as little-endian bytes of `dtype` (round to nearest even for the halves).
pub fn encode_f32(dtype: DType, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
    }
    out
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
}
