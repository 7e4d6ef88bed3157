//! Progress bars on stderr, only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use mycontainer_store::Progress;

use crate::builder;

/// A byte-count bar (bytes, rate, eta) that draws nothing when stderr is not a tty; as a
/// builder's reporter it also prints status lines, unless quiet.
pub struct ByteProgress {
    bar: Option<ProgressBar>,
    label: String,
    quiet: bool,
}

impl ByteProgress {
    pub fn new(label: &str, quiet: bool) -> ByteProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::hidden);
        ByteProgress {
            bar,
            label: label.to_string(),
            quiet,
        }
    }
}

impl builder::Reporter for ByteProgress {
    fn status(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

impl Progress for ByteProgress {
    fn start(&self, total: Option<u64>) {
        let Some(bar) = &self.bar else { return };
        let template = match total {
            Some(total) => {
                bar.set_length(total);
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            None => "{prefix} {bytes} {binary_bytes_per_sec}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(self.label.clone());
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
