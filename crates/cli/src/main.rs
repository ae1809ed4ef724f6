//! `sealdb`: the command-line program of the sealdb engine.
//!
//! This file only parses, dispatches and maps failures to exit statuses; each command group
//! lives in its own module. The statuses (0 success, 1 not found, 2 integrity, 3 key
//! unavailable, 4 anything else) are documented in `--help` and classified in `error.rs`.

mod cli;
mod commands;
mod demo;
mod error;
mod inspect;
mod master;
mod operator;
mod output;
mod progress;
mod time;
mod workload;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `index create ... --json POINTER` (the documented spelling) next to the global --json.
    let args = cli::rewrite_json_pointer(std::env::args_os().collect());
    // Only for reporting a command line clap refused (so it can be JSON too); once parsed,
    // the parsed flag decides.
    let json_arg = args.iter().skip(1).any(|a| a == "--json");
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => return error::clap_failure(&e, json_arg),
    };
    operator::init_logging();
    let json = cli.global.json;
    // `run` closes the database before returning, so exiting here loses nothing.
    match commands::run(cli) {
        Ok(()) => error::Exit::Success.code(),
        Err(e) => error::report(&e, json),
    }
}
