//! Progress bars on standard error (never on standard output, which carries results).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar for `len` steps labelled `what`; hidden when standard error is not a terminal or
/// output is JSON (scripts and logs get no control sequences).
pub fn bar(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    // A bad template is a programming error, but still not worth a panic: keep the default.
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>6} [{bar:32}] {human_pos}/{human_len} {elapsed_precise} (eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// A spinner counting `unit` for work of unknown size (an index backfill); hidden like
/// [`bar`].
pub fn spinner(what: &str, unit: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{msg:>6}} {{spinner}} {{human_pos}} {unit} {{elapsed_precise}} ({{per_sec}})"
    )) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A `(done, total)` callback for the engine that drives `pb`, learning the total from the
/// engine's first call.
pub fn counter(pb: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        if pb.length() != Some(total) {
            pb.set_length(total);
        }
        pb.set_position(done);
    }
}

/// A bar for `len` bytes of input (an import from a file); hidden like [`bar`].
pub fn bytes_bar(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>6} [{bar:32}] {bytes}/{total_bytes} {elapsed_precise} (eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// A spinner with the elapsed time, for work the engine reports no steps of (`compact`,
/// `verify`, `backup verify`): it shows the command is alive. Hidden like [`bar`].
pub fn busy(what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>6} {spinner} {elapsed_precise}") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}
