//! What a sealed file's header names and the keyring derives its keys for: the artifact kind
//! and the cipher (with the AEADs' nonce and tag lengths). A leaf, so that the file framing
//! (`sealed`) and the key hierarchy (`keyring`) can both use it without importing each other.

/// The nonce length of both AEADs (96 bits).
pub const NONCE_LEN: usize = 12;
/// The tag length of both AEADs.
pub const TAG_LEN: usize = 16;

/// What a sealed file holds. The kind is bound into every block and into the file key, so a
/// block of one kind never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ArtifactKind {
    /// A write-ahead-log segment.
    Wal = 1,
    /// An SSTable of a primary keyspace.
    Table = 2,
    /// An SSTable of a secondary index.
    Index = 3,
    /// A change-stream segment.
    Stream = 4,
    /// The manifest.
    Manifest = 5,
    /// The KEYS file.
    Keys = 6,
    /// A backup catalogue.
    BackupCatalog = 7,
    /// Small engine metadata (consumer positions, options).
    Meta = 8,
}

impl ArtifactKind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Wal,
            2 => Self::Table,
            3 => Self::Index,
            4 => Self::Stream,
            5 => Self::Manifest,
            6 => Self::Keys,
            7 => Self::BackupCatalog,
            8 => Self::Meta,
            _ => return None,
        })
    }

    /// A short lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wal => "wal",
            Self::Table => "table",
            Self::Index => "index",
            Self::Stream => "stream",
            Self::Manifest => "manifest",
            Self::Keys => "keys",
            Self::BackupCatalog => "backup-catalog",
            Self::Meta => "meta",
        }
    }
}

/// The block cipher a file is sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CipherId {
    /// No encryption, crc32 in place of the tag: a baseline for measuring what sealing costs.
    /// Detects accidental corruption only.
    None = 0,
    /// ChaCha20-Poly1305 (RFC 8439) under the per-file key.
    ChaCha20Poly1305 = 1,
    /// AES-256-GCM (NIST SP 800-38D, 96-bit nonce, 128-bit tag) under the per-file key: for
    /// CPUs with AES-NI and carry-less multiply, where it is cheaper per small block. Needs
    /// the `ring` feature.
    Aes256Gcm = 2,
}

impl CipherId {
    /// Decodes a cipher byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::None),
            1 => Some(Self::ChaCha20Poly1305),
            2 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// Bytes appended to each block body: the tag, or the crc32.
    pub fn tag_len(self) -> usize {
        match self {
            Self::None => 4,
            Self::ChaCha20Poly1305 | Self::Aes256Gcm => TAG_LEN,
        }
    }

    /// The name used in options and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ChaCha20Poly1305 => "chacha20poly1305",
            Self::Aes256Gcm => "aes256gcm",
        }
    }

    /// Parses `none`, `chacha20poly1305` or `aes256gcm`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "chacha20poly1305" | "chacha20-poly1305" => Some(Self::ChaCha20Poly1305),
            "aes256gcm" | "aes-256-gcm" => Some(Self::Aes256Gcm),
            _ => None,
        }
    }
}
