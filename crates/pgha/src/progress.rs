//! Progress of long steps (base backups): bars on a terminal, log lines elsewhere.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pgha_pg::basebackup::Progress;

/// Creates one reporter per long step; shows bars only when stderr is a terminal.
#[derive(Clone)]
pub struct ProgressBoard {
    bars: Option<MultiProgress>,
}

impl ProgressBoard {
    pub fn new() -> Self {
        ProgressBoard {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
        }
    }

    pub fn reporter(&self, label: &str) -> Reporter {
        let bar = self.bars.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Reporter {
            label: label.to_string(),
            bar,
            last_logged_quarter: 0,
        }
    }
}

/// Reports one step's progress.
pub struct Reporter {
    label: String,
    bar: Option<ProgressBar>,
    last_logged_quarter: u64,
}

impl Reporter {
    pub fn update(&mut self, p: Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total_kb * 1024);
                bar.set_position(p.done_kb * 1024);
            }
            None => {
                let quarter = if p.total_kb == 0 {
                    0
                } else {
                    p.done_kb * 4 / p.total_kb
                };
                if quarter > self.last_logged_quarter {
                    self.last_logged_quarter = quarter;
                    tracing::info!(
                        "{}: {}% ({} of {} kB)",
                        self.label,
                        quarter * 25,
                        p.done_kb,
                        p.total_kb
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message("done");
        }
    }
}
