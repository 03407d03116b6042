//! Training data: corpora (text files, directories, JSONL, and the built-in Rust documentation
//! books) split deterministically into train and held-out parts, and a byte-level BPE tokenizer
//! trained on them and saved as `tokenizer.json`, so transformers loads model and tokenizer
//! together.

pub mod corpus;
pub mod tokenizer;
