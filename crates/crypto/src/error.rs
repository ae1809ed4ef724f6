//! The crate's typed errors. Callers match on variants; nothing here is stringly typed where a
//! caller may need to react (which file, which block, which key, which state).

use std::fmt;
use std::path::{Path, PathBuf};

/// A lower layer's error kept as the `source()` of a sealdb error (boxed so that one error
/// type can carry the causes of several crates).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a structured error happened, for its `Display`: ` in FILE at offset N`, ` in FILE`,
/// ` at offset N`, or nothing when neither is known. Every crate's structured variants
/// (corruption, malformed contents, invalid argument, poisoned) show their place this way.
pub fn place<'a>(file: &'a Option<PathBuf>, at: &'a Option<u64>) -> impl fmt::Display + 'a {
    Place {
        file: file.as_deref(),
        at: *at,
    }
}

struct Place<'a> {
    file: Option<&'a Path>,
    at: Option<u64>,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = self.file {
            write!(f, " in {}", file.display())?;
        }
        if let Some(at) = self.at {
            write!(f, " at offset {at}")?;
        }
        Ok(())
    }
}

/// Writes the constructors and builder methods of an error enum's structured variants: each
/// listed variant has the fields `what: String`, `file: Option<PathBuf>`, `at: Option<u64>`
/// and `source: Option<BoxError>`. `ctor => Variant` makes `Error::ctor(what)`; the builders
/// [`in_file`](Error::in_file), [`at`](Error::at) and [`caused_by`](Error::caused_by) fill
/// in the rest and leave every other variant unchanged. One macro so that the five crates'
/// errors are built the same way (`Error::corruption(format!(..)).in_file(path).at(offset)`).
#[macro_export]
macro_rules! structured_error_builders {
    ($ty:ty { $($ctor:ident => $variant:ident),+ $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("A [`", stringify!($variant), "`](Self::", stringify!($variant),
                    ") error saying `what` is wrong; name the file, offset and cause with the ",
                    "builder methods.")]
                pub fn $ctor(what: String) -> Self {
                    Self::$variant {
                        what,
                        file: None,
                        at: None,
                        source: None,
                    }
                }
            )+

            /// Names the file at fault (structured variants only; others are returned as
            /// they are).
            pub fn in_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
                match &mut self {
                    $(Self::$variant { file, .. })|+ => *file = Some(path.into()),
                    _ => {}
                }
                self
            }

            /// Names the byte offset at fault within the file (or within the bytes being
            /// decoded), for structured variants.
            pub fn at(mut self, offset: u64) -> Self {
                match &mut self {
                    $(Self::$variant { at, .. })|+ => *at = Some(offset),
                    _ => {}
                }
                self
            }

            /// Keeps the lower-level error this one comes from as its `source()`, for
            /// structured variants.
            pub fn caused_by(mut self, cause: impl Into<$crate::error::BoxError>) -> Self {
                match &mut self {
                    $(Self::$variant { source, .. })|+ => *source = Some(cause.into()),
                    _ => {}
                }
                self
            }
        }
    };
}

/// Why a sealed file or block failed its integrity check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityReason {
    /// The authentication tag (or the crc32 in plaintext mode) did not verify: the block was
    /// altered, moved, taken from another file or database, or opened with the wrong key.
    AuthenticationFailed,
    /// The header's magic bytes are wrong: this is not a sealed file.
    BadMagic,
    /// The header's own checksum failed.
    HeaderChecksum,
    /// The header names a format version this build cannot read.
    UnsupportedVersion(u16),
    /// The header names an unknown artifact kind or cipher.
    UnknownHeaderField(&'static str),
    /// The header is valid but not what the caller expected (kind, database id, cipher).
    HeaderMismatch(&'static str),
    /// A length field is out of bounds (over the limit, or past the end of the file).
    BadLength,
    /// A block's clear prefix (length and flags) failed its checksum: damage, not a torn
    /// write.
    PrefixChecksum,
    /// The file ends before its final block: it was cut short.
    Truncated,
    /// Bytes follow the final block.
    TrailingData,
    /// The block decrypted but its contents do not parse.
    Malformed(String),
    /// A file the database's manifest lists as live is missing.
    MissingFile,
    /// A live file is not the one the manifest recorded (an older copy, or another file under
    /// its name): its id, size or footer digest differs.
    ReplacedFile,
}

impl fmt::Display for IntegrityReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthenticationFailed => f.write_str("authentication failed"),
            Self::BadMagic => f.write_str("not a sealdb sealed file (bad magic)"),
            Self::HeaderChecksum => f.write_str("header checksum mismatch"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::UnknownHeaderField(what) => write!(f, "unknown {what} in header"),
            Self::HeaderMismatch(what) => write!(f, "header {what} does not match"),
            Self::BadLength => f.write_str("length out of bounds"),
            Self::PrefixChecksum => f.write_str("block length/flags checksum mismatch"),
            Self::Truncated => f.write_str("file truncated before its final block"),
            Self::TrailingData => f.write_str("data after the final block"),
            Self::Malformed(why) => write!(f, "malformed contents: {why}"),
            Self::MissingFile => f.write_str("live file is missing"),
            Self::ReplacedFile => {
                f.write_str("file is not the one the manifest recorded (older or foreign copy)")
            }
        }
    }
}

/// The state of a master key as its provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Turned off by an administrator; can be enabled again.
    Disabled,
    /// Scheduled for destruction at the given Unix time (seconds); can be cancelled until then.
    PendingDeletion {
        /// When the key material will be destroyed (Unix seconds).
        deletion_at: u64,
    },
    /// The key material is gone: data wrapped under it is unrecoverable (crypto-shredding).
    Destroyed,
    /// The provider has no key with this id.
    NotFound,
    /// The provider could not be reached or refused for another reason.
    Unreachable(String),
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enabled => f.write_str("enabled"),
            Self::Disabled => f.write_str("disabled"),
            Self::PendingDeletion { deletion_at } => {
                write!(f, "pending deletion (at unix time {deletion_at})")
            }
            Self::Destroyed => f.write_str("destroyed"),
            Self::NotFound => f.write_str("not found"),
            Self::Unreachable(why) => write!(f, "unreachable ({why})"),
        }
    }
}

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sealed file or one of its blocks failed verification. `block` is the byte offset of
    /// the block within the file (`None` for the header or the file as a whole).
    #[error("integrity error in {file}{}: {reason}", block.map(|b| format!(" at block offset {b}")).unwrap_or_default())]
    Integrity {
        /// The file (its path, or a label when the bytes did not come from a file).
        file: String,
        /// Byte offset of the failing block, if one block is at fault.
        block: Option<u64>,
        /// What failed.
        reason: IntegrityReason,
    },
    /// The master key cannot be used in its current state.
    #[error("master key {key_id} of provider {provider} is unavailable: {state}")]
    KeyUnavailable {
        /// Provider kind (`owned`, `local-kms`, `aws-kms`).
        provider: String,
        /// The key's id within its provider.
        key_id: String,
        /// Why it cannot be used.
        state: KeyState,
    },
    /// Unwrapping failed authentication: the master key is not the one that wrapped the data
    /// keys (or the wrapped keys were altered, or belong to another database).
    #[error("wrong master key: {key_id} of provider {provider} did not wrap these data keys")]
    WrongMasterKey {
        /// Provider kind.
        provider: String,
        /// The key's id within its provider.
        key_id: String,
    },
    /// A keystore or KMS file is readable by other users; refused as ssh does.
    #[error("{path} is accessible by other users (mode {mode:o}); run `chmod 600` on it")]
    InsecurePermissions {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A data-key version the file needs is not in the KEYS file.
    #[error("data-key version {0} is not in the KEYS file")]
    UnknownDataKeyVersion(u32),
    /// An I/O error on a named path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A caller passed something unusable (or a file names something this build refuses).
    #[error("invalid argument{}: {what}", place(file, at))]
    InvalidArgument {
        /// What is wrong.
        what: String,
        /// The file concerned, if one is.
        file: Option<PathBuf>,
        /// The byte offset concerned within it, if one is.
        at: Option<u64>,
        /// The lower-level error this comes from, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The file or option names a cipher (or backend) this build was compiled without: the
    /// `ring` feature of sealdb-crypto provides AES-256-GCM and the fast ChaCha20-Poly1305.
    #[error("{what} is not available in this build (sealdb-crypto feature `ring` is off)")]
    CipherUnavailable {
        /// The cipher or backend asked for.
        what: &'static str,
    },
}

impl Error {
    /// An integrity error for `file` at `block`.
    pub fn integrity(file: impl Into<String>, block: Option<u64>, reason: IntegrityReason) -> Self {
        Self::Integrity {
            file: file.into(),
            block,
            reason,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

crate::structured_error_builders!(Error {
    invalid_argument => InvalidArgument,
});

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn structured_errors_show_their_place_and_keep_their_cause() {
        let cause = std::io::Error::other("disk said no");
        let e = Error::invalid_argument("bad length".into())
            .in_file("/db/KEYS")
            .at(72)
            .caused_by(cause);
        assert_eq!(
            e.to_string(),
            "invalid argument in /db/KEYS at offset 72: bad length"
        );
        let source = e.source().expect("the cause is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.to_string(), "disk said no");
        // Without a place the text is what it always was.
        assert_eq!(
            Error::invalid_argument("x".into()).to_string(),
            "invalid argument: x"
        );
        // The builders leave other variants alone.
        let other = Error::UnknownDataKeyVersion(3).in_file("/f").at(1);
        assert!(matches!(other, Error::UnknownDataKeyVersion(3)));
    }
}
