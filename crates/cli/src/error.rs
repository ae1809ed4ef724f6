//! The program's error type and its mapping onto exit statuses.
//!
//! The exit statuses are an interface scripts rely on, so every failure is classified here,
//! in one place, rather than at each call site.

use std::fmt;
use std::io;
use std::process::ExitCode;

/// The exit statuses of `sealdb`, documented in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Success = 0,
    /// `get` found no value for the key.
    NotFound = 1,
    /// An integrity or authentication failure of on-disk data.
    Integrity = 2,
    /// The master key could not be used (missing, disabled, wrong, insecure).
    KeyUnavailable = 3,
    /// Anything else, bad arguments included.
    Other = 4,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }

    /// The class name JSON errors carry (`{"error": {"class": ...}}`), documented in `--help`.
    pub fn class(self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::NotFound => "not_found",
            Self::Integrity => "integrity",
            Self::KeyUnavailable => "key_unavailable",
            Self::Other => "other",
        }
    }
}

/// The JSON form of a failure: `{"error": {"class": ..., "exit": N, "message": ...}}`.
pub fn error_json(exit: Exit, message: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {"class": exit.class(), "exit": exit as u8, "message": message}
    })
}

/// [`error_json`] of `e`, plus `"file"` and `"offset"` when the error names them.
fn cli_error_json(e: &CliError) -> serde_json::Value {
    let mut v = error_json(e.exit, &e.message);
    if let Some(obj) = v.get_mut("error").and_then(|o| o.as_object_mut()) {
        if let Some(file) = &e.file {
            obj.insert("file".into(), file.clone().into());
        }
        if let Some(offset) = e.offset {
            obj.insert("offset".into(), offset.into());
        }
    }
    v
}

/// A failure of one command: the status to exit with and the message to print.
#[derive(Debug)]
pub struct CliError {
    exit: Exit,
    message: String,
    /// The file the failure names, if any (shown in the JSON form).
    file: Option<String>,
    /// The byte offset within that file, if any (shown in the JSON form).
    offset: Option<u64>,
    /// Set when there is nothing useful to say (stdout closed by the reader): the program
    /// then ends without a message.
    silent: bool,
}

/// The program's result type.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with an explicit exit status.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            file: None,
            offset: None,
            silent: false,
        }
    }

    /// Bad input or any failure without a more specific status (exit 4).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(Exit::Other, message)
    }

    /// `get` of a missing key (exit 1).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Exit::NotFound, message)
    }

    /// On-disk data failed verification (exit 2).
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(Exit::Integrity, message)
    }

    /// Whoever reads our standard output went away (`sealdb scan | head`): that is how such
    /// pipelines end normally, so it is neither reported nor treated as a failure.
    fn broken_pipe() -> Self {
        Self {
            exit: Exit::Success,
            message: String::new(),
            file: None,
            offset: None,
            silent: true,
        }
    }

    /// Adds what was being done to the message.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The exit status.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The message (without the `sealdb: error:` prefix).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error should end the program without a message.
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// An error writing our standard output.
    pub fn stdout(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::broken_pipe()
        } else {
            Self::other(format!("writing standard output: {e}"))
        }
    }

    /// An I/O error on a named file of ours (not the database's).
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        Self::other(format!("{what}: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sealdb::Error> for CliError {
    fn from(e: sealdb::Error) -> Self {
        // The engine classifies its own errors; these two predicates are the contract.
        let exit = if e.is_integrity() {
            Exit::Integrity
        } else if e.is_key_unavailable() {
            Exit::KeyUnavailable
        } else {
            Exit::Other
        };
        let (file, offset) = e.location();
        Self {
            file: file.map(|f| f.display().to_string()),
            offset,
            ..Self::new(exit, e.to_string())
        }
    }
}

impl From<sealdb_crypto::Error> for CliError {
    fn from(e: sealdb_crypto::Error) -> Self {
        // Classified the way the engine would classify it, so `inspect` (which reads files
        // through the crypto crate directly) exits with the same statuses as `verify`.
        sealdb::Error::from(e).into()
    }
}

impl From<sealdb_sstable::Error> for CliError {
    fn from(e: sealdb_sstable::Error) -> Self {
        // Classified (and located) the way the engine would report the same failure.
        sealdb::Error::from(e).into()
    }
}

/// Handles a command line clap refused. `--help` and `--version` are successes (exit 0);
/// every usage error exits 4, not clap's default 2, because 2 means an integrity failure here.
pub fn clap_failure(e: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    use std::io::Write;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help goes to stdout; a failure to write it (closed pipe) changes nothing.
            let _ = e.print();
            Exit::Success.code()
        }
        _ if json => {
            // The first line is the error itself; the usage lines after it are for people.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(io::stderr(), "{}", error_json(Exit::Other, message));
            Exit::Other.code()
        }
        _ => {
            // clap renders "error: ..." plus usage; prefixing the program name gives the same
            // `sealdb: error: ...` shape as every other failure.
            // (A bare `sealdb` renders the help instead, which gets no prefix.)
            let text = e.render().to_string();
            let prefix = if text.starts_with("error:") {
                "sealdb: "
            } else {
                ""
            };
            let _ = write!(io::stderr(), "{prefix}{text}");
            Exit::Other.code()
        }
    }
}

/// Prints `sealdb: error: <message>` on standard error (under `--json`, the object of
/// [`error_json`] with the file and offset the error names, so scripts need not parse text)
/// and returns the exit status.
pub fn report(e: &CliError, json: bool) -> ExitCode {
    use std::io::Write;
    if !e.is_silent() {
        // Nothing more can be done if standard error itself is gone.
        let _ = if json {
            writeln!(io::stderr(), "{}", cli_error_json(e))
        } else {
            writeln!(io::stderr(), "sealdb: error: {}", e.message())
        };
    }
    e.exit().code()
}

/// Prints `sealdb: warning: <message>` on standard error.
pub fn warn(message: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "sealdb: warning: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_documented_statuses() {
        let e: CliError = sealdb::Error::invalid_argument("x".into()).into();
        assert_eq!(e.exit(), Exit::Other);
        let e: CliError = sealdb::Error::corruption("x".into()).into();
        assert_eq!(e.exit(), Exit::Integrity);
        let e: CliError = sealdb::Error::WrongMasterKey {
            provider: "owned".into(),
            key_id: "k".into(),
        }
        .into();
        assert_eq!(e.exit(), Exit::KeyUnavailable);
    }

    #[test]
    fn rollback_detection_exits_2() {
        // A rolled-back data directory is stale on-disk data: an integrity failure (exit 2),
        // not "anything else" (exit 4).
        let e: CliError = sealdb::Error::RolledBack {
            found: (1, 1),
            expected: (2, 3),
        }
        .into();
        assert_eq!(e.exit(), Exit::Integrity);
    }

    #[test]
    fn full_disk_is_exit_4_with_a_message_naming_the_path() {
        let e: CliError = sealdb::Error::NoSpace {
            path: "/db/wal/0000000000000002.wal".into(),
        }
        .into();
        assert_eq!(e.exit(), Exit::Other);
        assert!(e.message().contains("no space left"), "{}", e.message());
        assert!(e.message().contains("/db/wal/0000000000000002.wal"));
    }

    #[test]
    fn json_errors_carry_class_and_exit() {
        let v = error_json(Exit::Integrity, "bad block");
        assert_eq!(v["error"]["class"], "integrity");
        assert_eq!(v["error"]["exit"], 2);
        assert_eq!(v["error"]["message"], "bad block");
        assert_eq!(Exit::NotFound.class(), "not_found");
        assert_eq!(Exit::KeyUnavailable.class(), "key_unavailable");
    }

    #[test]
    fn broken_pipe_is_silent_success() {
        let e = CliError::stdout(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(e.is_silent());
        assert_eq!(e.exit(), Exit::Success);
        let e = CliError::stdout(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.exit(), Exit::Other);
    }
}
