//! The tensor table and per-tensor statistics, read in slices so that even a multi-GB
//! embedding is summarised without holding it.

use crate::progress::Progress;
use crate::session::Session;
use moegrow_core::analysis::{Histogram, StatsAccumulator};
use moegrow_core::dtype::decode_f32;
use serde_json::{json, Value};

/// Bytes per read when streaming a tensor.
const CHUNK: u64 = 16 << 20;

/// Every tensor: name, role, dtype, shape, elements, bytes, file.
pub fn table(s: &Session) -> Value {
    let c = s.ckpt.borrow();
    Value::Array(
        c.entries()
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "role": format!("{:?}", e.role),
                    "dtype": e.dtype.name(),
                    "shape": e.shape,
                    "numel": e.numel(),
                    "bytes": e.nbytes(),
                    "file": c.shards[e.shard].name,
                })
            })
            .collect(),
    )
}

/// Mean, std, RMS, min, max, zeros, non-finite count and a histogram of one tensor. Two
/// passes (the histogram's range is the first pass's min..max) unless the tensor fits in one
/// slice.
pub async fn stats(s: &Session, name: &str, bins: usize, p: &Progress) -> Result<Value, String> {
    let (shard, range, dtype) = {
        let c = s.ckpt.borrow();
        let e = c
            .entries()
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| format!("no tensor named `{name}` in this checkpoint"))?;
        (e.shard, e.range.clone(), e.dtype)
    };
    let file = s.ckpt.borrow().shards[shard].name.clone();
    let src = &s.shards[shard];
    if !dtype.decodes() {
        return Err(format!(
            "`{name}` is stored as {}, which moegrow carries but does not decode to numbers",
            dtype.name()
        ));
    }
    let block = dtype.block_bytes() as u64;
    let step = (CHUNK / block).max(1) * block;
    let (start, end) = (range.start as u64, range.end as u64);
    let total = (end - start) as f64;
    let mut acc = StatsAccumulator::default();
    let mut single: Option<Vec<f32>> = None;
    let mut at = start;
    while at < end {
        let to = (at + step).min(end);
        let v = decode_f32(dtype, &src.read(&file, at..to).await?);
        acc.push(&v);
        if at == start && to == end {
            single = Some(v);
        }
        at = to;
        p.report((at - start) as f64, 2.0 * total, name).await?;
    }
    let st = acc.finish();
    let mut h = Histogram::new(st.min, st.max, bins);
    match single {
        Some(v) => h.push(&v),
        None => {
            let mut at = start;
            while at < end {
                let to = (at + step).min(end);
                h.push(&decode_f32(dtype, &src.read(&file, at..to).await?));
                at = to;
                p.report(total + (at - start) as f64, 2.0 * total, name)
                    .await?;
            }
        }
    }
    Ok(json!({"name": name, "dtype": dtype.name(), "stats": st, "histogram": h}))
}
