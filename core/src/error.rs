//! Typed errors of the core crate. Every variant names the file or tensor it is about, because
//! the user's next step is always "open that file" or "look at that tensor".

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: not a valid safetensors file: {reason}")]
    Safetensors { file: String, reason: String },
    #[error("{file}: tensor `{tensor}`: {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: String,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("unsupported model family `{model_type}`: moegrow supports {supported} (`grow --infer-schema` grows others from their tensor names and shapes)")]
    UnsupportedFamily {
        model_type: String,
        supported: &'static str,
    },
    #[error("{file}: tensor `{tensor}` is not part of a {family} checkpoint that moegrow can map; refusing to drop it silently")]
    UnmappedTensor {
        file: String,
        tensor: String,
        family: &'static str,
    },
    #[error("checkpoint is missing tensor `{tensor}` ({why})")]
    MissingTensor { tensor: String, why: String },
    #[error("tensor `{tensor}` has shape {found:?}, but config.json implies {expected:?}")]
    ShapeMismatch {
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
