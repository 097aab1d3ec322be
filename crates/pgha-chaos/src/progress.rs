//! The progress bar on the terminal while a campaign runs (drawn on stderr, and only when
//! stderr is a terminal), and the one-line events printed above it.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How far the campaign is: faults done of the rounds asked, or seconds of the duration.
pub struct Progress {
    bar: ProgressBar,
    by_time: bool,
    quiet: bool,
}

impl Progress {
    /// A bar of `rounds` faults, or of `duration` when the campaign runs for a time.
    /// `quiet`: no event lines (only the bar, itself hidden off a terminal).
    pub fn new(rounds: Option<u64>, duration: Option<Duration>, quiet: bool) -> Progress {
        let (len, by_time, template) = match (rounds, duration) {
            (Some(n), _) => (
                n,
                false,
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} faults  {msg}",
            ),
            (None, Some(d)) => (
                d.as_secs().max(1),
                true,
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} s  {msg}",
            ),
            (None, None) => (
                0,
                false,
                "{spinner} [{elapsed_precise}] {pos} faults  {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            by_time,
            quiet,
        }
    }

    /// What the campaign does now.
    pub fn status(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// A line above the bar (on stderr).
    pub fn event(&self, line: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// One more fault done, `elapsed` into the campaign.
    pub fn fault_done(&self, elapsed: Duration) {
        if self.by_time {
            self.bar
                .set_position(elapsed.as_secs().min(self.bar.length().unwrap_or(0)));
        } else {
            self.bar.inc(1);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
