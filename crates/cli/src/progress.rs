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
