//! Progress bars for long work (writing checkpoints): bytes, throughput and ETA on a terminal,
//! nothing when output is not a terminal (scripts and CI logs stay clean).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
