//! An opened checkpoint: its config, the parsed shard headers, and where each file's bytes
//! live. Tensors are made resident only for the duration of one computation ([`Session::load`]
//! then [`Session::evict`]), so memory is bounded by what that computation needs.

use crate::progress::Progress;
use crate::source::{fetch, ByteSource};
use moegrow_core::checkpoint::{
    header_len, parse_header, parse_index, COMPANION_FILES, INDEX_FILE, SINGLE_FILE,
};
use moegrow_core::{Checkpoint, Role};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Session {
    /// The folder name (local files) or the URL.
    pub name: String,
    pub config_text: String,
    pub ckpt: RefCell<Checkpoint>,
    /// One per shard, in the checkpoint's shard order.
    pub shards: Vec<ByteSource>,
    /// Tokenizer and generation files, copied into a grown checkpoint.
    pub companions: Vec<(String, ByteSource)>,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// Files that were given but are not part of a Hugging Face checkpoint.
    pub ignored: Vec<String>,
    /// How long reading the headers took, in milliseconds (the explorer shows it).
    pub open_ms: f64,
}

fn is_known(name: &str) -> bool {
    name == "config.json"
        || name == INDEX_FILE
        || name.ends_with(".safetensors")
        || COMPANION_FILES.contains(&name)
        || name == "growth.json"
}

/// Read and parse one shard's header: 8 bytes, then the length they announce.
async fn read_header(
    name: &str,
    src: &ByteSource,
) -> Result<moegrow_core::checkpoint::Header, String> {
    let len = src.len();
    let first = src.read(name, 0..8.min(len)).await?;
    let n = header_len(name, &first, len).map_err(|e| e.to_string())?;
    let prefix = src.read(name, 0..n as u64).await?;
    parse_header(name, &prefix, len).map_err(|e| e.to_string())
}

async fn read_text(name: &str, src: &ByteSource) -> Result<String, String> {
    let bytes = src.read(name, 0..src.len()).await?;
    String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))
}

impl Session {
    /// Open a checkpoint from named files (a folder's contents or a hand-picked set).
    pub async fn open(
        name: String,
        files: Vec<(String, ByteSource)>,
        now: impl Fn() -> f64,
    ) -> Result<Session, String> {
        let t0 = now();
        let by_name: BTreeMap<String, ByteSource> = files.into_iter().collect();
        let get = |f: &str| by_name.get(f);
        let given = || by_name.keys().cloned().collect::<Vec<_>>().join(", ");
        let config_src = get("config.json").ok_or_else(|| {
            format!(
                "no config.json among the files given ({}); open the checkpoint's folder or pick config.json with its .safetensors files",
                given()
            )
        })?;
        let config_text = read_text("config.json", config_src).await?;
        let (shard_names, weight_map) = match get(INDEX_FILE) {
            Some(src) => {
                let (files, map) =
                    parse_index(&read_text(INDEX_FILE, src).await?).map_err(|e| e.to_string())?;
                (files, Some(map))
            }
            None => {
                let st: Vec<&String> = by_name
                    .keys()
                    .filter(|n| n.ends_with(".safetensors"))
                    .collect();
                match st.as_slice() {
                    [] => {
                        return Err(format!(
                            "no .safetensors file among the files given ({}); moegrow reads safetensors checkpoints (convert .bin/.pt files with transformers first)",
                            given()
                        ))
                    }
                    [one] => (vec![(*one).clone()], None),
                    // Other safetensors beside model.safetensors (e.g. saved activations)
                    // are not weights; they are listed as ignored.
                    _ if by_name.contains_key(SINGLE_FILE) => (vec![SINGLE_FILE.to_string()], None),
                    _ => {
                        return Err(format!(
                            "{} safetensors files but no {INDEX_FILE} saying which tensor is where; add the index file",
                            st.len()
                        ))
                    }
                }
            }
        };
        let mut headers = Vec::new();
        let mut shards = Vec::new();
        for f in &shard_names {
            let src = get(f)
                .ok_or_else(|| format!("{INDEX_FILE} lists {f}, but that file was not given"))?;
            headers.push((f.clone(), read_header(f, src).await?));
            shards.push(src.clone());
        }
        let ckpt = Checkpoint::from_headers(&config_text, headers, weight_map)
            .map_err(|e| e.to_string())?;
        let companions: Vec<(String, ByteSource)> = COMPANION_FILES
            .iter()
            .filter_map(|f| get(f).map(|s| (f.to_string(), s.clone())))
            .collect();
        let tokenizer = match get("tokenizer.json") {
            Some(src) => {
                let text = read_text("tokenizer.json", src).await?;
                Some(
                    tokenizers::Tokenizer::from_bytes(text.as_bytes())
                        .map_err(|e| format!("tokenizer.json cannot be read: {e}"))?,
                )
            }
            None => None,
        };
        let ignored = by_name
            .keys()
            .filter(|n| !shard_names.contains(n) && (!is_known(n) || n.ends_with(".safetensors")))
            .cloned()
            .collect();
        Ok(Session {
            name,
            config_text,
            ckpt: RefCell::new(ckpt),
            shards,
            companions,
            tokenizer,
            ignored,
            open_ms: now() - t0,
        })
    }

    /// Open a checkpoint published over HTTP: `base` is the folder URL (for the Hub,
    /// `https://huggingface.co/ORG/NAME/resolve/main/`). Only `config.json`, the index, the
    /// tokenizer and each shard's header are downloaded.
    pub async fn open_url(base: &str, now: impl Fn() -> f64) -> Result<Session, String> {
        let t0 = now();
        let base = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        let url = |f: &str| format!("{base}{f}");
        let mut files: Vec<(String, ByteSource)> = Vec::new();
        let small = |bytes: Vec<u8>| ByteSource::Memory(Arc::from(bytes));
        let (config, _, _) = fetch(&url("config.json"), None).await?;
        files.push(("config.json".into(), small(config)));
        let shard_names = match fetch(&url(INDEX_FILE), None).await {
            Ok((index, _, _)) => {
                let text = String::from_utf8(index)
                    .map_err(|_| format!("{INDEX_FILE} is not UTF-8 text"))?;
                let (names, _) = parse_index(&text).map_err(|e| e.to_string())?;
                files.push((INDEX_FILE.into(), small(text.into_bytes())));
                names
            }
            Err(_) => vec![SINGLE_FILE.to_string()],
        };
        for f in shard_names {
            // One tiny range request tells the file's size (Content-Range).
            let (_, total, _) = fetch(&url(&f), Some(0..8)).await?;
            let len = total.ok_or_else(|| {
                format!(
                    "{}: the server does not say the file's size (no Content-Range header; for a cross-origin server it must expose it)",
                    url(&f)
                )
            })?;
            files.push((f.clone(), ByteSource::Url { url: url(&f), len }));
        }
        for f in COMPANION_FILES {
            if let Ok((bytes, _, _)) = fetch(&url(f), None).await {
                files.push((f.to_string(), small(bytes)));
            }
        }
        let mut s = Session::open(base.clone(), files, &now).await?;
        s.open_ms = now() - t0;
        Ok(s)
    }

    /// Make the tensors of `roles` resident (fetching merged byte ranges).
    pub async fn load(&self, roles: &[Role], progress: &Progress) -> Result<(), String> {
        let ranges = self
            .ckpt
            .borrow()
            .ranges_for(roles)
            .map_err(|e| e.to_string())?;
        for (shard, range) in ranges {
            progress.check()?;
            let name = self.ckpt.borrow().shards[shard].name.clone();
            let bytes = self.shards[shard]
                .read(&name, range.start as u64..range.end as u64)
                .await?;
            self.ckpt
                .borrow_mut()
                .provide(shard, range.start, Arc::from(bytes))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub fn evict(&self) {
        self.ckpt.borrow_mut().evict();
    }

    /// Total stored bytes of the given tensors.
    pub fn bytes_of(&self, roles: &[Role]) -> u64 {
        let c = self.ckpt.borrow();
        roles
            .iter()
            .filter_map(|r| c.entry(*r).ok())
            .map(|e| e.nbytes() as u64)
            .sum()
    }
}
