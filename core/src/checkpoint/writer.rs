//! Writing checkpoints: `config.json` plus safetensors shards and their index, atomically.
//!
//! Tensors are produced one at a time by closures and streamed straight to disk, so peak
//! memory is one tensor whatever the model's size. Everything is written into a temporary
//! directory next to the destination and renamed into place at the end: an error (or a kill)
//! never leaves a half-written checkpoint under the destination's name.

use crate::dtype::DType;
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::collections::BTreeMap;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Files next to the weights that describe the tokenizer and generation; copied verbatim.
pub const COMPANION_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// Produces a tensor's bytes. `Send + Sync` so that the writer can compute the next few
/// tensors on all cores while it writes.
pub type TensorProducer<'a> = Box<dyn Fn() -> Result<Cow<'a, [u8]>> + Send + Sync + 'a>;

/// A tensor to write; `data` is called once, when its turn comes.
pub struct OutputTensor<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: TensorProducer<'a>,
    /// The same bytes in consecutive pieces (a stacked expert tensor, expert by expert): the
    /// writer produces and writes them one at a time, so a 20 GB stacked tensor costs one
    /// expert's bytes in memory, not twenty gigabytes. `data` still gives the whole.
    pub pieces: Option<Pieces<'a>>,
}

/// A tensor's bytes as `count` consecutive pieces; `piece(i)` produces the `i`-th.
pub struct Pieces<'a> {
    pub count: usize,
    pub piece: std::sync::Arc<dyn Fn(usize) -> Result<Cow<'a, [u8]>> + Send + Sync + 'a>,
}

/// Tensors are produced in groups of about this many bytes, in parallel, then written in
/// order: enough work to keep every core busy, little enough to keep memory bounded.
const CHUNK_BYTES: usize = 16 << 20;

/// Split the tensors into consecutive chunks of about [`CHUNK_BYTES`].
fn chunks(tensors: &[&OutputTensor]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < tensors.len() {
        let mut end = start;
        let mut bytes = 0;
        // A tensor written in pieces is a chunk of its own.
        while end < tensors.len()
            && (end == start
                || (tensors[end].pieces.is_none()
                    && tensors[end - 1].pieces.is_none()
                    && bytes + tensors[end].nbytes() <= CHUNK_BYTES))
        {
            bytes += tensors[end].nbytes();
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Produce the tensors' bytes and hand them to `sink` in order, `(tensor, bytes, last piece)`:
/// once per tensor, or once per piece of a tensor written in pieces. Natively a producer thread
/// computes each chunk on all cores (a pieced tensor piece by piece) while the caller writes the
/// previous one (at most two chunks or pieces in memory); in wasm it is a plain loop.
fn produce_in_order<'t, 'a: 't>(
    tensors: &[&'t OutputTensor<'a>],
    mut sink: impl FnMut(&'t OutputTensor<'a>, Cow<'t, [u8]>, bool) -> Result<()>,
) -> Result<()> {
    let ranges = chunks(tensors);
    #[cfg(target_arch = "wasm32")]
    {
        for r in ranges {
            for t in &tensors[r] {
                match &t.pieces {
                    Some(p) => {
                        for i in 0..p.count {
                            sink(t, (p.piece)(i)?, i + 1 == p.count)?;
                        }
                    }
                    None => sink(t, (t.data)()?, true)?,
                }
            }
        }
        Ok(())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        type Item<'t> = (usize, Result<Cow<'t, [u8]>>, bool);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item<'t>>>(1);
            scope.spawn(move || {
                for r in ranges {
                    if let Some(p) = tensors[r.start].pieces.as_ref().filter(|_| r.len() == 1) {
                        for i in 0..p.count {
                            if tx.send(vec![(r.start, (p.piece)(i), i + 1 == p.count)]).is_err() {
                                return; // the writer stopped on an error
                            }
                        }
                        continue;
                    }
                    let produced: Vec<Item<'t>> = r
                        .clone()
                        .into_par_iter()
                        .map(|i| (i, (tensors[i].data)(), true))
                        .collect();
                    if tx.send(produced).is_err() {
                        break;
                    }
                }
            });
            for items in rx {
                for (i, data, last) in items {
                    sink(tensors[i], data?, last)?;
                }
            }
            Ok(())
        })
    }
}

impl OutputTensor<'_> {
    pub fn nbytes(&self) -> usize {
        (self.shape.iter().product::<usize>() * self.dtype.bits()).div_ceil(8)
    }
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Start a new shard before one would grow past this many bytes (a single larger tensor
    /// gets a shard of its own).
    pub max_shard_bytes: u64,
    /// Extra `__metadata__` entries (provenance); `format: pt` is always added.
    pub metadata: BTreeMap<String, String>,
    /// Replace an existing destination.
    pub force: bool,
    /// More files to place in the checkpoint directory (name, contents), e.g. `growth.json`.
    pub extra_files: Vec<(String, Vec<u8>)>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            max_shard_bytes: 5 * 1024 * 1024 * 1024,
            metadata: BTreeMap::new(),
            force: false,
            extra_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteSummary {
    pub files: Vec<String>,
    pub tensors: usize,
    pub bytes: u64,
}

/// Parse sizes such as `5GB`, `500MB`, `20KB`, `1GiB` or a plain byte count, as
/// transformers' `max_shard_size` does (decimal units; `iB` units binary).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("cannot read size `{s}` (try 500MB or 5GB)")))?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024f64.powi(2),
        "GIB" => 1024f64.powi(3),
        "TIB" => 1024f64.powi(4),
        u => return Err(Error::Invalid(format!("unknown size unit `{u}` in `{s}`"))),
    };
    if n <= 0.0 || !n.is_finite() {
        return Err(Error::Invalid(format!("size `{s}` must be positive")));
    }
    Ok((n * mult) as u64)
}

/// Assign tensors to shards greedily, in order.
fn plan_shards(tensors: &[OutputTensor], max: u64) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let n = t.nbytes() as u64;
        if size > 0 && size + n > max {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("non-empty").push(i);
        size += n;
    }
    shards
}

/// The header bytes (length prefix included) for the given tensors, padded with spaces to a
/// multiple of 8 so that the data section is aligned, as the safetensors library does.
pub fn header_bytes(tensors: &[&OutputTensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).expect("strings"),
    );
    let mut offset = 0usize;
    for t in tensors {
        let n = t.nbytes();
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(map)).expect("JSON");
    while !(json.len() + 8).is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// One output file of a checkpoint: its name, its tensors (indices into the tensor list) and
/// its header bytes; the data section is the tensors' bytes in that order.
pub struct PlannedShard {
    pub name: String,
    pub tensors: Vec<usize>,
    pub header: Vec<u8>,
}

/// The files a checkpoint is written as: safetensors shards named as transformers names them
/// and, when there is more than one, the index's text. `metadata` gets `format: pt`. Shared by
/// the native writer and the browser (which streams the same bytes into downloads).
pub fn plan_files(
    tensors: &[OutputTensor],
    max_shard_bytes: u64,
    metadata: &BTreeMap<String, String>,
) -> (Vec<PlannedShard>, Option<String>) {
    let mut metadata = metadata.clone();
    metadata.insert("format".into(), "pt".into());
    let plan = plan_shards(tensors, max_shard_bytes);
    let n = plan.len();
    let mut weight_map = BTreeMap::new();
    let mut tensor_bytes = 0u64;
    let mut shards = Vec::new();
    for (si, idx) in plan.into_iter().enumerate() {
        let name = if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, n)
        };
        let group: Vec<&OutputTensor> = idx.iter().map(|&i| &tensors[i]).collect();
        for t in &group {
            weight_map.insert(t.name.clone(), name.clone());
            tensor_bytes += t.nbytes() as u64;
        }
        let header = header_bytes(&group, &metadata);
        shards.push(PlannedShard {
            name,
            tensors: idx,
            header,
        });
    }
    let index = (n > 1).then(|| {
        let index = serde_json::json!({
            "metadata": {"total_size": tensor_bytes},
            "weight_map": weight_map,
        });
        serde_json::to_string_pretty(&index).expect("JSON") + "\n"
    });
    (shards, index)
}

/// Write a safetensors file: header, then each tensor's bytes as produced.
/// `header` comes from [`plan_files`].
pub fn write_safetensors(
    path: &std::path::Path,
    tensors: &[&OutputTensor],
    header: &[u8],
    mut on_bytes: impl FnMut(u64),
) -> Result<u64> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    w.write_all(header).map_err(|e| Error::io(path, e))?;
    let mut total = header.len() as u64;
    // Bytes of the current tensor so far (several pieces for a tensor written in pieces).
    let mut so_far = 0usize;
    produce_in_order(tensors, |t, data, last| {
        so_far += data.len();
        if so_far > t.nbytes() || (last && so_far != t.nbytes()) {
            return Err(Error::Tensor {
                file: path.display().to_string(),
                tensor: t.name.clone(),
                reason: format!(
                    "produced {} bytes, but dtype {} and shape {:?} need {}",
                    so_far,
                    t.dtype.name(),
                    t.shape,
                    t.nbytes()
                ),
            });
        }
        if last {
            so_far = 0;
        }
        w.write_all(&data).map_err(|e| Error::io(path, e))?;
        total += data.len() as u64;
        on_bytes(data.len() as u64);
        Ok(())
    })?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(total)
}

/// A temporary directory that is removed unless [`TempDir::commit`] renames it into place.
struct TempDir {
    path: std::path::PathBuf,
    done: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A run killed mid-write (kill -9, power loss) leaves its temporary directory behind, never a
/// partial checkpoint under the destination's name. Remove such leftovers for this destination
/// when their process is gone (Linux: no `/proc/PID`).
fn remove_stale_temporaries(parent: &std::path::Path, base: &str) {
    let prefix = format!(".{base}.moegrow-tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid.to_string()).exists();
        if cfg!(target_os = "linux") && !alive && pid != std::process::id() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Write a complete checkpoint directory at `out`.
///
/// `companions_from`: a directory whose tokenizer and generation files are copied along.
/// `on_bytes` is called as tensor bytes are written (progress bars).
pub fn write_checkpoint(
    out: &std::path::Path,
    config_json: &str,
    tensors: &[OutputTensor],
    companions_from: Option<&std::path::Path>,
    opts: &WriteOptions,
    mut on_bytes: impl FnMut(u64),
) -> Result<WriteSummary> {
    use std::fs;
    if out.exists() && !opts.force {
        return Err(Error::Invalid(format!(
            "{} already exists; pass --force to replace it",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a directory name", out.display())))?
        .to_string_lossy()
        .to_string();
    remove_stale_temporaries(&parent, &base);
    let mut tmp = TempDir {
        path: parent.join(format!(".{base}.moegrow-tmp-{}", std::process::id())),
        done: false,
    };
    if tmp.path.exists() {
        fs::remove_dir_all(&tmp.path).map_err(|e| Error::io(&tmp.path, e))?;
    }
    fs::create_dir(&tmp.path).map_err(|e| Error::io(&tmp.path, e))?;

    let (plan, index) = plan_files(tensors, opts.max_shard_bytes, &opts.metadata);
    let mut files = Vec::new();
    let mut total_bytes = 0u64;
    for shard in &plan {
        let path = tmp.path.join(&shard.name);
        let group: Vec<&OutputTensor> = shard.tensors.iter().map(|&i| &tensors[i]).collect();
        total_bytes += write_safetensors(&path, &group, &shard.header, &mut on_bytes)?;
        files.push(shard.name.clone());
    }
    if let Some(index) = index {
        let p = tmp.path.join(INDEX_FILE);
        fs::write(&p, index).map_err(|e| Error::io(&p, e))?;
        files.push(INDEX_FILE.to_string());
    }
    let p = tmp.path.join("config.json");
    fs::write(&p, config_json).map_err(|e| Error::io(&p, e))?;
    files.push("config.json".into());
    if let Some(src) = companions_from {
        for f in COMPANION_FILES {
            let from = src.join(f);
            if from.is_file() {
                let to = tmp.path.join(f);
                fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
                files.push(f.to_string());
            }
        }
    }
    for (name, contents) in &opts.extra_files {
        let p = tmp.path.join(name);
        fs::write(&p, contents).map_err(|e| Error::io(&p, e))?;
        files.push(name.clone());
    }
    if out.exists() {
        // --force: only now, with the new checkpoint complete, does the old one go.
        fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    fs::rename(&tmp.path, out).map_err(|e| Error::io(out, e))?;
    tmp.done = true;
    Ok(WriteSummary {
        files,
        tensors: tensors.len(),
        bytes: total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, n: usize) -> OutputTensor<'static> {
        let v: Vec<u8> = (0..n * 4).map(|i| i as u8).collect();
        OutputTensor {
            pieces: None,
            name: name.into(),
            dtype: DType::F32,
            shape: vec![n],
            data: Box::new(move || Ok(Cow::Owned(v.clone()))),
        }
    }

    #[test]
    fn shards_split_at_the_limit_and_index_lists_every_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ckpt");
        let tensors = vec![t("a", 10), t("b", 10), t("c", 30), t("d", 1)];
        let opts = WriteOptions {
            max_shard_bytes: 80,
            ..Default::default()
        };
        let s = write_checkpoint(&out, "{}", &tensors, None, &opts, |_| {}).unwrap();
        assert_eq!(
            s.files[..3],
            [
                "model-00001-of-00003.safetensors",
                "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors"
            ]
        );
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["weight_map"]["c"], "model-00002-of-00003.safetensors");
        assert_eq!(index["metadata"]["total_size"], 51 * 4);
        // The files are valid safetensors that the reference library reads back.
        let bytes = std::fs::read(out.join("model-00001-of-00003.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("b").unwrap().data()[..4], [0, 1, 2, 3]);
    }

    /// A tensor of `n` f32s in `count` pieces, each produced on its own (and counted).
    fn pieced(name: &str, n: usize, count: usize, calls: &'static std::sync::atomic::AtomicUsize) -> OutputTensor<'static> {
        let whole: Vec<u8> = (0..n * 4).map(|i| (i * 7) as u8).collect();
        let per = n * 4 / count;
        let w = whole.clone();
        OutputTensor {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![n],
            data: Box::new(move || Ok(Cow::Owned(whole.clone()))),
            pieces: Some(Pieces {
                count,
                piece: std::sync::Arc::new(move |i| {
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(Cow::Owned(w[i * per..(i + 1) * per].to_vec()))
                }),
            }),
        }
    }

    #[test]
    fn a_tensor_in_pieces_is_written_piece_by_piece_as_the_whole() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![t("a", 3), pieced("b", 24, 4, &CALLS), t("c", 5), pieced("d", 8, 2, &CALLS)];
        write_checkpoint(&dir.path().join("p"), "{}", &tensors, None, &WriteOptions::default(), |_| {}).unwrap();
        assert_eq!(CALLS.load(Ordering::Relaxed), 6, "each piece produced once, `data` never");
        let bytes = std::fs::read(dir.path().join("p").join(SINGLE_FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for t in &tensors {
            assert_eq!(st.tensor(&t.name).unwrap().data(), &(t.data)().unwrap()[..], "{}", t.name);
        }
        // Pieces that do not add up to the tensor are refused by name, and nothing is left.
        static NONE: AtomicUsize = AtomicUsize::new(0);
        let mut short = pieced("short", 24, 4, &NONE);
        if let Some(p) = &mut short.pieces {
            p.count = 3;
        }
        let err = write_checkpoint(&dir.path().join("q"), "{}", &[short], None, &WriteOptions::default(), |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("`short`") && err.contains("produced 72 bytes"), "{err}");
        assert!(!dir.path().join("q").exists());
    }

    #[test]
    fn a_failing_tensor_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ckpt");
        let mut tensors = vec![t("a", 4)];
        tensors.push(OutputTensor {
            pieces: None,
            name: "bad".into(),
            dtype: DType::F32,
            shape: vec![2],
            data: Box::new(|| Ok(Cow::Owned(vec![0u8; 3]))),
        });
        let err = write_checkpoint(&out, "{}", &tensors, None, &WriteOptions::default(), |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bad`") && err.contains("produced 3 bytes"),
            "{err}"
        );
        assert!(!out.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temporary directory left behind"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn leftovers_of_a_killed_run_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        // PID 0 never names a live process in /proc.
        let stale = dir.path().join(".ckpt.moegrow-tmp-0");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("model.safetensors"), b"partial").unwrap();
        let other = dir.path().join(".other.moegrow-tmp-0");
        std::fs::create_dir(&other).unwrap();
        write_checkpoint(
            &dir.path().join("ckpt"),
            "{}",
            &[t("a", 1)],
            None,
            &WriteOptions::default(),
            |_| {},
        )
        .unwrap();
        assert!(
            !stale.exists(),
            "stale temporary directory of the same destination removed"
        );
        assert!(
            other.exists(),
            "another destination's temporary directory is left alone"
        );
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ckpt");
        std::fs::create_dir(&out).unwrap();
        let err = write_checkpoint(
            &out,
            "{}",
            &[t("a", 1)],
            None,
            &WriteOptions::default(),
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("--force"));
        let opts = WriteOptions {
            force: true,
            ..Default::default()
        };
        write_checkpoint(&out, "{}", &[t("a", 1)], None, &opts, |_| {}).unwrap();
        assert!(out.join(SINGLE_FILE).exists());
    }

    #[test]
    fn sizes_parse_like_transformers() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("20KB").unwrap(), 20_000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("-1MB").is_err());
    }
}
