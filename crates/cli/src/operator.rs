//! Operator comforts that need no database: shell completions, the manual page, and the
//! `RUST_LOG`-filtered diagnostics on standard error.

use crate::cli::{Cli, CompletionArgs, ManArgs};
use crate::commands::Ctx;
use crate::error::{CliError, Result};
use clap::CommandFactory;
use std::io::IsTerminal;

/// Sends the engine's `tracing` events to standard error, filtered by `RUST_LOG` (errors
/// only when it is unset, so default output is unchanged). An unparsable `RUST_LOG` is
/// reported once and otherwise ignored: diagnostics must never stop a command.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(e) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                crate::error::warn(format!("RUST_LOG ignored: {e}"));
            }
            EnvFilter::new("error")
        }
    };
    // Another subscriber already installed (never in this program) is not worth failing for.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `completion SHELL`: the completion script on standard output.
pub fn completion(ctx: &mut Ctx, a: &CompletionArgs) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "sealdb", &mut script);
    ctx.out.raw(&script)
}

/// `man [--dir DIR]`: the main page on standard output, or every page into DIR.
pub fn man(ctx: &mut Ctx, a: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match &a.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| CliError::io("rendering the manual page", e))?;
            ctx.out.raw(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                CliError::io(format!("writing manual pages to {}", dir.display()), e)
            })?;
            ctx.out.emit(
                || format!("manual pages written to {}", dir.display()),
                || serde_json::json!({"man_dir": dir.display().to_string()}),
            )
        }
    }
}
