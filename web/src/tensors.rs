//! The tensor table and per-tensor statistics, read in slices so that even a multi-GB
//! embedding is summarised without holding it.

use crate::progress::Progress;
use crate::session::Session;
use moegrow_core::analysis::{Histogram, StatsAccumulator};
use moegrow_core::dtype::decode_f32;
use moegrow_core::DType;
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
    let (shard, range, dtype, shape, scale) = {
        let c = s.ckpt.borrow();
        let e = c
            .entries()
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| format!("no tensor named `{name}` in this checkpoint"))?;
        (e.shard, e.range.clone(), e.dtype, e.shape.clone(), e.scale.clone())
    };
    let file = s.ckpt.borrow().shards[shard].name.clone();
    let src = &s.shards[shard];
    if let Some(sc) = scale.as_ref().filter(|sc| sc.format == moegrow_core::quant::QuantFormat::Mxfp4) {
        // MXFP4 blocks: 16 bytes (32 fp4 values) per E8M0 scale byte, in the same order on
        // disk, so a run of whole blocks dequantises with its run of scales.
        let sfile = s.ckpt.borrow().shards[sc.shard].name.clone();
        let scales = decode_f32(
            DType::F8E8M0,
            &s.shards[sc.shard].read(&sfile, sc.range.start as u64..sc.range.end as u64).await?,
        );
        let step = (CHUNK as usize / 16).max(1) * 16;
        let mut values = Vec::new();
        let mut at = 0usize;
        while at < range.len() {
            let to = (at + step).min(range.len());
            let bytes = src.read(&file, (range.start + at) as u64..(range.start + to) as u64).await?;
            let codes = decode_f32(DType::F4, &bytes);
            let out: Vec<f32> = codes
                .chunks(32)
                .zip(&scales[at / 16..])
                .flat_map(|(c, s)| c.iter().map(move |v| v * s))
                .collect();
            values.extend(out);
            at = to;
            p.report(at as f64, range.len() as f64, name).await?;
        }
        return Ok(dequantised_summary(name, "MXFP4", &values, bins));
    }
    if let Some(sc) = scale.as_ref().filter(|sc| sc.format == moegrow_core::quant::QuantFormat::Int4) {
        // compressed-tensors int4: `[rows, cols/8]` I32 words (half a byte per value) and a
        // scale per group of a row, so a run of whole rows dequantises with its scales.
        let sfile = s.ckpt.borrow().shards[sc.shard].name.clone();
        let scales = decode_f32(sc.dtype, &s.shards[sc.shard].read(&sfile, sc.range.start as u64..sc.range.end as u64).await?);
        let q = moegrow_core::quant::BlockQuant::int4(sc.block[1], sc.dtype, sc.shape_dtype);
        let cols = shape.last().copied().unwrap_or(1) * 8;
        let (row_bytes, row_scales) = ((cols / 2).max(1), cols.div_ceil(sc.block[1].max(1)));
        let step = (CHUNK as usize / row_bytes).max(1) * row_bytes;
        let mut values = Vec::new();
        let mut at = 0usize;
        while at < range.len() {
            let to = (at + step).min(range.len());
            let bytes = src.read(&file, (range.start + at) as u64..(range.start + to) as u64).await?;
            let (r0, r1) = (at / row_bytes, to / row_bytes);
            let srows = scales.get(r0 * row_scales..r1 * row_scales).ok_or_else(|| format!("`{name}`: its scales are short"))?;
            values.extend(moegrow_core::quant::dequantize(&bytes, &[r1 - r0, cols], srows, q).map_err(|e| e.to_string())?);
            at = to;
            p.report(at as f64, range.len() as f64, name).await?;
        }
        return Ok(dequantised_summary(name, "int4", &values, bins));
    }
    if let Some(sc) = scale {
        // A float8 weight: the statistics of its values, dequantised block row by block row
        // with its (small) scale grid.
        let sfile = s.ckpt.borrow().shards[sc.shard].name.clone();
        let scales = decode_f32(sc.dtype, &s.shards[sc.shard].read(&sfile, sc.range.start as u64..sc.range.end as u64).await?);
        let q = moegrow_core::quant::BlockQuant::fp8(sc.block, sc.dtype, false); // only dequantises
        let cols = *shape.last().unwrap_or(&1);
        let band = sc.block[0] * cols; // bytes of one block row (e4m3: one byte per value)
        let grid_cols = cols.div_ceil(sc.block[1]);
        let mut values = Vec::new();
        let mut at = 0usize;
        while at < range.len() {
            let to = (at + band.max(1) * (CHUNK as usize / band.max(1)).max(1)).min(range.len());
            let bytes = src.read(&file, (range.start + at) as u64..(range.start + to) as u64).await?;
            let (r0, r1) = (at / cols, to / cols);
            // Rows r0..r1 of the stacked matrix: each row's grid row, per leading index.
            let per = shape.get(shape.len().saturating_sub(2)).copied().unwrap_or(1);
            let mut out = Vec::with_capacity(bytes.len());
            for (k, r) in (r0..r1).enumerate() {
                let (x, i) = (r / per, r % per);
                let grid_row = x * per.div_ceil(q.block[0]) + i / q.block[0];
                let srow = &scales[grid_row * grid_cols..(grid_row + 1) * grid_cols];
                let row = decode_f32(DType::F8E4M3, &bytes[k * cols..(k + 1) * cols]);
                out.extend(row.iter().enumerate().map(|(j, v)| v * srow[j / q.block[1]]));
            }
            values.extend(out);
            at = to;
            p.report(at as f64, range.len() as f64, name).await?;
        }
        return Ok(dequantised_summary(name, dtype.name(), &values, bins));
    }
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

/// The statistics and histogram of a block-quantised tensor's dequantised values.
fn dequantised_summary(name: &str, dtype: &str, values: &[f32], bins: usize) -> Value {
    let mut acc = StatsAccumulator::default();
    acc.push(values);
    let st = acc.finish();
    let mut h = Histogram::new(st.min, st.max, bins);
    h.push(values);
    json!({"name": name, "dtype": dtype, "dequantised": true, "stats": st, "histogram": h})
}
