use crate::data::corpus::Corpus;
use crate::data::tokenizer;
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Text file, directory or JSONL (`text` field); default: the Rust documentation books.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The JSONL field holding each document's text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Byte-level BPE vocabulary size.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Write `tokenizer.json` and `corpus.json` (statistics) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Load a corpus, train a tokenizer on its training part and report sizes and the unigram
/// baseline (the held-out loss a model that ignores context reaches).
pub fn run(a: Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (corpus, name) = Corpus::load_or_default(a.corpus.as_deref(), &a.text_field)?;
    let tk = tokenizer::train(&corpus, a.vocab_size)?;
    let vocab = tk.get_vocab_size(true);
    let train_ids = tokenizer::encode(&tk, &corpus.train)?;
    let eval_ids = tokenizer::encode(&tk, &corpus.heldout)?;
    let (train_bytes, eval_bytes) = corpus.bytes();
    let stats = json!({
        "corpus": name,
        "read": corpus.report,
        "documents": {"train": corpus.train.len(), "heldout": corpus.heldout.len()},
        "bytes": {"train": train_bytes, "heldout": eval_bytes},
        "tokens": {"train": train_ids.len(), "heldout": eval_ids.len()},
        "vocab_size": vocab,
        "bytes_per_token": train_bytes as f64 / train_ids.len().max(1) as f64,
        "unigram_entropy_train_nats": tokenizer::unigram_entropy(&train_ids, vocab),
        "unigram_cross_entropy_heldout_nats": tokenizer::unigram_cross_entropy(&train_ids, &eval_ids, vocab),
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        tk.save(out.join("tokenizer.json"), false)
            .map_err(|e| anyhow::anyhow!("cannot write tokenizer.json: {e}"))?;
        std::fs::write(
            out.join("corpus.json"),
            serde_json::to_string_pretty(&stats)? + "\n",
        )?;
    }
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}
