pub mod bench;
pub mod bench_gpu;
pub mod compare;
pub mod convert;
pub mod corpus;
pub mod forward;
pub mod grow;
pub mod init;
pub mod inspect;
pub mod train;

use anyhow::Context;
use moegrow_core::Checkpoint;
use std::path::Path;

/// Open a checkpoint with the path in every error message.
pub fn open(path: &Path) -> anyhow::Result<Checkpoint> {
    Checkpoint::open(path).with_context(|| format!("cannot read checkpoint {}", path.display()))
}
