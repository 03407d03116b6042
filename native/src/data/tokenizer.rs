//! A byte-level BPE tokenizer trained with Hugging Face's `tokenizers` crate and saved as
//! `tokenizer.json` (plus the token ids' unigram entropy: the loss a model must beat to have
//! learned more than token frequencies).

use super::corpus::Corpus;
use anyhow::Context;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// End of document, appended after every document when the corpus is flattened into tokens.
pub const EOS: &str = "<|endoftext|>";

pub fn train(corpus: &Corpus, vocab_size: usize) -> anyhow::Result<Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .build();
    let mut tk = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::default()))
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the tokenizer: {e}"))?;
    tk.train(&mut trainer, corpus.train.iter().map(|d| d.text.clone()))
        .map_err(|e| anyhow::anyhow!("tokenizer training failed: {e}"))?;
    Ok(Tokenizer::from(tk))
}

/// Token ids of documents, each followed by our tokenizers' EOS.
pub fn encode(tk: &Tokenizer, docs: &[super::corpus::Document]) -> anyhow::Result<Vec<u32>> {
    let eos = tk
        .token_to_id(EOS)
        .context("the tokenizer has no end-of-document token")?;
    encode_with(tk, eos, docs)
}

/// The end-of-document token of a tokenizer from the hub: `eos_token` of
/// `tokenizer_config.json`, else `eos_token_id` of `generation_config.json`, else of
/// `config.json` (the first of a list), looked up in `dirs` in order; our own tokenizers'
/// `<|endoftext|>` when none of them says.
pub fn end_of_document(tk: &Tokenizer, dirs: &[&std::path::Path]) -> anyhow::Result<(u32, String)> {
    let read = |dir: &std::path::Path, file: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).ok()?).ok()
    };
    let by_id = |v: &serde_json::Value| -> Option<u32> {
        v.as_u64()
            .or_else(|| v.as_array()?.first()?.as_u64())
            .map(|i| i as u32)
    };
    for dir in dirs {
        if let Some(c) = read(dir, "tokenizer_config.json") {
            let tok = c["eos_token"]
                .as_str()
                .or_else(|| c["eos_token"]["content"].as_str());
            if let Some(t) = tok {
                let id = tk.token_to_id(t).with_context(|| {
                    format!(
                        "{}: eos_token `{t}` is not in the tokenizer's vocabulary",
                        dir.join("tokenizer_config.json").display()
                    )
                })?;
                return Ok((id, t.to_string()));
            }
        }
        for file in ["generation_config.json", "config.json"] {
            if let Some(id) = read(dir, file).and_then(|c| by_id(&c["eos_token_id"])) {
                let t = tk.id_to_token(id).with_context(|| {
                    format!(
                        "{}: eos_token_id {id} is not in the tokenizer's vocabulary",
                        dir.join(file).display()
                    )
                })?;
                return Ok((id, t));
            }
        }
    }
    match tk.token_to_id(EOS) {
        Some(id) => Ok((id, EOS.to_string())),
        None => anyhow::bail!(
            "cannot tell this tokenizer's end-of-document token: give `eos_token` in tokenizer_config.json (or `eos_token_id` in generation_config.json)"
        ),
    }
}

/// Token ids of documents, each followed by `eos`.
pub fn encode_with(
    tk: &Tokenizer,
    eos: u32,
    docs: &[super::corpus::Document],
) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for d in docs {
        let enc = tk
            .encode(d.text.as_str(), false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {}: {e}", d.source))?;
        ids.extend_from_slice(enc.get_ids());
        ids.push(eos);
    }
    Ok(ids)
}

/// Entropy in nats of the token distribution of `ids` (the cross-entropy of the best model that
/// ignores context).
pub fn unigram_entropy(ids: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![0u64; vocab.max(1)];
    for &i in ids {
        if let Some(c) = counts.get_mut(i as usize) {
            *c += 1;
        }
    }
    let n = ids.len().max(1) as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Cross-entropy in nats of `eval` under the unigram distribution of `train` (add-one
/// smoothed so unseen tokens cost a finite amount): the held-out loss of a context-free model,
/// the baseline a trained model's eval loss is compared with.
pub fn unigram_cross_entropy(train: &[u32], eval: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![1u64; vocab.max(1)];
    for &i in train {
        if let Some(c) = counts.get_mut(i as usize) {
            *c += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    let nll: f64 = eval
        .iter()
        .map(|&i| -((counts.get(i as usize).copied().unwrap_or(1) as f64) / total as f64).ln())
        .sum();
    nll / eval.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::corpus::Document;

    fn corpus() -> Corpus {
        let docs = |n: usize, off: usize| {
            (0..n).map(|i| Document { source: format!("d{}", i + off), text: format!("fn main() {{ let x{} = vec![1, 2, 3]; println!(\"{{x}}\"); }} ownership borrowing lifetimes", i % 7) }).collect()
        };
        Corpus {
            train: docs(40, 0),
            heldout: docs(3, 100),
            report: Vec::new(),
        }
    }

    #[test]
    fn trained_tokenizer_round_trips_text_and_saves_for_transformers() {
        let c = corpus();
        let tk = train(&c, 300).unwrap();
        assert!(tk.get_vocab_size(true) <= 300 && tk.get_vocab_size(true) > 256);
        let text = "fn main() { let x3 = vec![1, 2, 3]; }";
        let enc = tk.encode(text, false).unwrap();
        assert!(enc.get_ids().len() < text.len(), "merges compress the text");
        assert_eq!(tk.decode(enc.get_ids(), false).unwrap(), text);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tk.save(&path, false).unwrap();
        let back = Tokenizer::from_file(&path).unwrap();
        assert_eq!(back.encode(text, false).unwrap().get_ids(), enc.get_ids());
        let ids = encode(&tk, &c.heldout).unwrap();
        assert_eq!(
            ids.iter()
                .filter(|&&i| i == tk.token_to_id(EOS).unwrap())
                .count(),
            3
        );
    }

    #[test]
    fn unigram_entropy_of_known_distributions() {
        assert!((unigram_entropy(&[0, 1, 0, 1], 4) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(unigram_entropy(&[3, 3, 3], 4), 0.0);
        // Add-one smoothing: counts (3 + 1, 0 + 1) → p(0) = 4/5, p(1) = 1/5.
        let ce = unigram_cross_entropy(&[0, 0, 0], &[0, 1], 2);
        assert!(
            (ce - (-(0.8f64).ln() - (0.2f64).ln()) / 2.0).abs() < 1e-12,
            "{ce}"
        );
    }
}
