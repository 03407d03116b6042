//! moegrow's safetensors header parser against the reference `safetensors` crate, over the
//! fixtures' shards and a seeded set of valid and broken headers: whatever the crate accepts,
//! moegrow accepts with the same tensors; whatever moegrow accepts that the crate refuses,
//! moegrow reports as a warning (which `inspect` and `grow` print).

use moegrow_core::checkpoint::parse_header;
use moegrow_core::DType;
use moegrow_integration_tests::*;
use serde_json::{json, Value};

/// What the crate makes of a file: `Some((name, dtype, shape, [start, end]))` per tensor when it
/// accepts it.
fn reference(bytes: &[u8]) -> Option<Vec<(String, String, Vec<usize>, (usize, usize))>> {
    let st = safetensors::SafeTensors::deserialize(bytes).ok()?;
    let (n, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let base = 8 + n;
    let data_start = bytes.as_ptr() as usize + base;
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let start = t.data().as_ptr() as usize - data_start;
            let _ = &meta;
            (name, format!("{}", t.dtype()), t.shape().to_vec(), (start, start + t.data().len()))
        })
        .collect();
    v.sort_by_key(|x| x.3);
    Some(v)
}

fn file(header: &Value, data: usize) -> Vec<u8> {
    let h = header.to_string();
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(h.as_bytes());
    v.resize(v.len() + data, 7);
    v
}

fn check(label: &str, bytes: &[u8], failures: &mut Vec<String>) {
    let ours = parse_header("t.safetensors", bytes, bytes.len() as u64);
    match (reference(bytes), ours) {
        (Some(want), Ok(h)) => {
            let got: Vec<_> = h
                .tensors
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.dtype.name().to_string(),
                        t.shape.clone(),
                        (t.range.start - h.data_start, t.range.end - h.data_start),
                    )
                })
                .collect();
            if got != want {
                failures.push(format!("{label}: tensors differ\n  crate  {want:?}\n  moegrow {got:?}"));
            }
            if !h.warnings.is_empty() {
                failures.push(format!("{label}: warnings on a file the crate accepts: {:?}", h.warnings));
            }
        }
        (Some(_), Err(e)) => failures.push(format!("{label}: the crate accepts it, moegrow refuses: {e}")),
        (None, Ok(h)) if h.warnings.is_empty() => failures.push(format!(
            "{label}: moegrow accepts without a warning what the crate refuses"
        )),
        _ => {}
    }
}

#[test]
fn moegrow_accepts_what_the_safetensors_crate_accepts_and_warns_about_the_rest() {
    let mut failures = Vec::new();
    let mut n = 0;
    // Every shard of every fixture.
    for dir in fixture_checkpoints().into_iter().chain(
        std::fs::read_dir(fixtures_dir().join("hub"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir()),
    ) {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                check(&p.display().to_string(), &std::fs::read(&p).unwrap(), &mut failures);
                n += 1;
            }
        }
    }
    // Seeded headers: contiguous tensors of every dtype (valid), then one corruption each.
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut rand = |m: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % m
    };
    for case in 0..400 {
        let k = 1 + rand(5) as usize;
        let mut map = serde_json::Map::new();
        let mut at = 0usize;
        for i in 0..k {
            let d = DType::ALL[rand(DType::ALL.len() as u64) as usize];
            let mut shape: Vec<usize> = (0..rand(3)).map(|_| 1 + rand(6) as usize).collect();
            // Sub-byte dtypes need whole bytes.
            while d.bytes_for(shape.iter().product()).is_none() {
                shape.push(2);
            }
            let len = d.bytes_for(shape.iter().product()).unwrap();
            map.insert(
                format!("t{i}"),
                json!({"dtype": d.name(), "shape": shape, "data_offsets": [at, at + len]}),
            );
            at += len;
        }
        let valid = Value::Object(map.clone());
        check(&format!("case {case} valid"), &file(&valid, at), &mut failures);
        let name = format!("t{}", rand(k as u64));
        let mut broken = map.clone();
        let corruption = rand(7);
        let (label, data) = match corruption {
            0 => ("trailing bytes", at + 1 + rand(9) as usize),
            1 => {
                broken[&name]["dtype"] = json!("F7");
                ("unknown dtype", at)
            }
            2 => {
                let o = broken[&name]["data_offsets"].clone();
                broken[&name]["data_offsets"] = json!([o[0], o[1].as_u64().unwrap() + 1]);
                ("size mismatch", at + 1)
            }
            3 => {
                // Shift every tensor by a gap at the start.
                for (_, t) in broken.iter_mut() {
                    let o = t["data_offsets"].clone();
                    t["data_offsets"] =
                        json!([o[0].as_u64().unwrap() + 4, o[1].as_u64().unwrap() + 4]);
                }
                ("gap before the data", at + 4)
            }
            4 => {
                broken[&name]["shape"] = json!([-1]);
                ("negative dimension", at)
            }
            5 => ("truncated data", at.saturating_sub(1)),
            _ => {
                broken.remove(&name);
                ("a tensor missing (gap)", at)
            }
        };
        check(
            &format!("case {case} {label}"),
            &file(&Value::Object(broken), data),
            &mut failures,
        );
    }
    // A name given twice: JSON keeps only one; moegrow says so.
    let dup = b"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    let mut bytes = (dup.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(dup);
    bytes.resize(bytes.len() + 8, 0);
    check("duplicate name", &bytes, &mut failures);
    let h = parse_header("t.safetensors", &bytes, bytes.len() as u64).unwrap();
    assert!(h.warnings.iter().any(|w| w.contains("declared twice")), "{:?}", h.warnings);
    assert!(n >= 40, "{n} fixture shards");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
