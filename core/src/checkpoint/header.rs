//! Parsing and validating safetensors headers.
//!
//! We parse the header ourselves rather than through the `safetensors` crate so that every
//! failure names the file and the tensor (the crate reports, say, "invalid shape, data type, or
//! offset for tensor" without saying which), and so that a header can be read from a prefix of
//! the file alone (the browser reads remote checkpoints by range requests).

use crate::dtype::DType;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Range;

/// The header must stay below this size; the safetensors format sets the same bound, and it
/// keeps a corrupt length field from making us allocate gigabytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor as declared in a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the file (not of the data section).
    pub range: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Tensors sorted by their offset in the file.
    pub tensors: Vec<HeaderTensor>,
    pub metadata: BTreeMap<String, String>,
    /// Where the data section starts (8 + header length).
    pub data_start: usize,
    /// What moegrow reads but the `safetensors` library (and so transformers) would refuse:
    /// gaps between tensors, bytes after the last one, a name given twice.
    pub warnings: Vec<String>,
}

/// The top-level header object with its keys in file order and repeats kept (a JSON map would
/// keep only the last of two equal names, hiding the first).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, Value>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// How many leading bytes must be fetched to parse the header: 8 plus the length the first
/// eight bytes announce.
pub fn header_len(file: &str, first8: &[u8], file_len: u64) -> Result<usize> {
    let bad = |reason: String| Error::Safetensors {
        file: file.to_string(),
        reason,
    };
    if first8.len() < 8 || file_len < 8 {
        return Err(bad(format!(
            "file is {file_len} bytes long; a safetensors file starts with an 8-byte header length"
        )));
    }
    let n = u64::from_le_bytes(first8[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length field says {n} bytes, above the format's limit of {MAX_HEADER_BYTES} (corrupt or not safetensors)"
        )));
    }
    if 8 + n > file_len {
        return Err(bad(format!(
            "header length field says {n} bytes, but the file has only {} bytes after it (truncated?)",
            file_len - 8
        )));
    }
    Ok(8 + n as usize)
}

/// Parse and validate the header. `prefix` holds at least the first `header_len` bytes;
/// `file_len` is the whole file's size, against which tensor ranges are checked.
pub fn parse_header(file: &str, prefix: &[u8], file_len: u64) -> Result<Header> {
    let bad = |reason: String| Error::Safetensors {
        file: file.to_string(),
        reason,
    };
    let data_start = header_len(file, prefix, file_len)?;
    let text = std::str::from_utf8(&prefix[8..data_start])
        .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
    let text = text.trim_end_matches([' ', '\0']);
    let json: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    if !json.is_object() {
        return Err(bad("header is not a JSON object".into()));
    }
    let Entries(map) = serde_json::from_str(text)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let data_len = (file_len as usize) - data_start;
    let mut header = Header {
        data_start,
        ..Header::default()
    };
    let mut names = std::collections::HashSet::new();
    for (name, entry) in map {
        if !names.insert(name.clone()) {
            header.warnings.push(format!(
                "tensor `{name}` is declared twice (the safetensors library keeps only one of them)"
            ));
        }
        if name == "__metadata__" {
            let Value::Object(m) = entry else {
                return Err(bad("`__metadata__` must be an object of strings".into()));
            };
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(bad(format!("`__metadata__.{k}` must be a string")));
                };
                header.metadata.insert(k, s);
            }
            continue;
        }
        let tensor_err = |reason: String| Error::Tensor {
            file: file.to_string(),
            tensor: name.clone(),
            reason,
        };
        let obj = entry
            .as_object()
            .ok_or_else(|| tensor_err("header entry is not an object".into()))?;
        let dtype_str = obj
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| tensor_err("header entry has no `dtype`".into()))?;
        let dtype = DType::from_safetensors(dtype_str).ok_or_else(|| {
            tensor_err(format!(
                "unknown dtype {dtype_str}; the safetensors format defines {}",
                DType::ALL.map(DType::name).join(", ")
            ))
        })?;
        let shape: Vec<usize> = obj
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| tensor_err("header entry has no `shape` list".into()))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| tensor_err("`shape` must list non-negative integers".into()))?;
        let offsets: Vec<u64> = obj
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| tensor_err("`data_offsets` must be two non-negative integers".into()))?;
        let (start, end) = (offsets[0], offsets[1]);
        if start > end {
            return Err(tensor_err(format!(
                "data_offsets [{start}, {end}] run backwards"
            )));
        }
        if end > data_len as u64 {
            return Err(tensor_err(format!(
                "data_offsets [{start}, {end}] run past the end of the data section ({data_len} bytes; file truncated?)"
            )));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| tensor_err(format!("shape {shape:?} overflows")))?;
        let bits = numel
            .checked_mul(dtype.bits())
            .ok_or_else(|| tensor_err(format!("shape {shape:?} overflows")))?;
        if !bits.is_multiple_of(8) {
            return Err(tensor_err(format!(
                "{numel} elements of {dtype_str} ({} bits each) do not fill whole bytes",
                dtype.bits()
            )));
        }
        let bytes = bits / 8;
        if (end - start) as usize != bytes {
            return Err(tensor_err(format!(
                "dtype {dtype_str} and shape {shape:?} need {bytes} bytes, but data_offsets [{start}, {end}] hold {}",
                end - start
            )));
        }
        header.tensors.push(HeaderTensor {
            name,
            dtype,
            shape,
            range: data_start + start as usize..data_start + end as usize,
        });
    }
    header.tensors.sort_by_key(|t| (t.range.start, t.range.end));
    for pair in header.tensors.windows(2) {
        if pair[1].range.start < pair[0].range.end {
            return Err(bad(format!(
                "tensors `{}` and `{}` overlap in the file",
                pair[0].name, pair[1].name
            )));
        }
    }
    // The reference library requires the data section to be exactly the tensors, back to back.
    let mut at = data_start;
    for t in &header.tensors {
        if t.range.start > at {
            header.warnings.push(format!(
                "{} unused bytes before tensor `{}` (the safetensors library refuses gaps)",
                t.range.start - at,
                t.name
            ));
        }
        at = at.max(t.range.end);
    }
    if (file_len as usize) > at {
        header.warnings.push(format!(
            "{} bytes after the last tensor's data (the safetensors library refuses such a file: not fully covered)",
            file_len as usize - at
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.resize(v.len() + data_len, 0);
        v
    }

    fn parse(v: &[u8]) -> Result<Header> {
        parse_header("t.safetensors", v, v.len() as u64)
    }

    #[test]
    fn reads_a_valid_header() {
        let v = file(
            r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            12,
        );
        let h = parse(&v).unwrap();
        assert_eq!(
            h.tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(h.tensors[1].range.len(), 4);
        assert_eq!(h.metadata["format"], "pt");
    }

    #[test]
    fn rejects_each_kind_of_corruption_with_its_own_message() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "8-byte header length"),
            (
                {
                    let mut v = file("{}", 0);
                    v[0] = 0xff;
                    v[5] = 0x7f;
                    v
                },
                "above the format's limit",
            ),
            (
                {
                    let mut v = file("{}", 0);
                    v[0] = 200;
                    v
                },
                "truncated",
            ),
            (file("[1,2]", 0), "not a JSON object"),
            (file("{not json", 0), "not valid JSON"),
            (
                file(
                    r#"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "unknown dtype F7",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
                    2,
                ),
                "do not fill whole bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "need 12 bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    4,
                ),
                "past the end",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                    8,
                ),
                "backwards",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    12,
                ),
                "overlap",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "non-negative integers",
            ),
        ];
        // Every dtype the format defines is read, sub-byte ones by their bit count.
        let ok = file(
            r#"{"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"f":{"dtype":"F4","shape":[4],"data_offsets":[8,10]},"s":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[10,13]},"e":{"dtype":"F8_E8M0","shape":[3],"data_offsets":[13,16]}}"#,
            16,
        );
        let h = parse(&ok).unwrap();
        assert_eq!(
            h.tensors.iter().map(|t| t.dtype.name()).collect::<Vec<_>>(),
            ["I64", "F4", "F6_E2M3", "F8_E8M0"]
        );
        for (bytes, want) in cases {
            let err = parse(&bytes).expect_err(want).to_string();
            assert!(err.contains(want), "expected `{want}` in `{err}`");
            assert!(
                err.contains("t.safetensors"),
                "error must name the file: {err}"
            );
        }
    }
}
