//! Shared helpers for sealdb's fuzz targets: the fixed keyring, a total input cursor, header
//! checksum fix-up, a test key provider and a file-writing helper for `CrashFs`.
//!
//! Conventions used by the targets (first input byte):
//! - `0xA5`: *structure-aware* mode — the rest of the input drives a generator that writes a
//!   valid artifact through the real API, mutates it at an input-chosen point, reads it back
//!   and checks the integrity property (never different data, only a prefix or an error).
//! - `0x5A`: *fix-up* mode — the rest is raw file bytes whose sealed-header checksum is
//!   recomputed first, so random mutations get past the header into the block/envelope code.
//! - anything else: the whole input is raw untrusted bytes.

use sealdb_crypto::keys::{DatabaseId, SecretKey};
use sealdb_crypto::provider::{local_unwrap, local_wrap, EncryptionContext, KeyDescriptor, KeyProvider};
use sealdb_crypto::{CipherId, KeyState, Keyring};
use sealdb_vfs::{CrashFs, FileSystem};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// First byte selecting structure-aware mode.
pub const MODE_STRUCTURED: u8 = 0xA5;
/// First byte selecting header-checksum fix-up mode.
pub const MODE_FIXUP: u8 = 0x5A;

/// Both block ciphers.
pub const CIPHERS: [CipherId; 2] = [CipherId::None, CipherId::ChaCha20Poly1305];

/// The database id every target uses.
pub const DB_ID: DatabaseId = DatabaseId([0; 16]);

/// The fixed keyring: database id all zeros, data-key version 1 = `[7; 32]`.
pub fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let mut versions = BTreeMap::new();
        versions.insert(1, SecretKey::from_bytes([7; 32]));
        Keyring::new(DB_ID, versions, 1).expect("fixed keyring")
    })
}

/// Whether `SEALDB_FUZZ_STRICT_TAMPER=1` is set: then the structure-aware WAL and manifest
/// targets also require that a flipped byte in a synced, authenticated file is *reported*
/// (an error), not silently treated as a torn tail that drops the acknowledged data after it.
/// Off by default: today's readers cannot tell a corrupted block length from a torn write.
pub fn strict_tamper() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("SEALDB_FUZZ_STRICT_TAMPER").is_some_and(|v| v == "1"))
}

/// Picks a cipher from a byte.
pub fn cipher_from(b: u8) -> CipherId {
    CIPHERS[usize::from(b & 1)]
}

/// A total cursor over fuzz input: reads past the end yield zeros / empty slices.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data;
        self.data = &[];
        r
    }
    /// One byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    /// Little-endian u16 (zero-padded).
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let s = self.bytes(2);
        b[..s.len()].copy_from_slice(s);
        u16::from_le_bytes(b)
    }
    /// Little-endian u32 (zero-padded).
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let s = self.bytes(4);
        b[..s.len()].copy_from_slice(s);
        u32::from_le_bytes(b)
    }
    /// Little-endian u64 (zero-padded).
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let s = self.bytes(8);
        b[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(b)
    }
}

/// Recomputes the sealed-file header checksum (bytes 60..64: crc32 of bytes 0..60 and the
/// extension) in place, when the bytes are long enough to hold the header and its extension.
pub fn fix_header_crc(bytes: &mut [u8]) {
    if bytes.len() < 64 {
        return;
    }
    let ext_len = u32::from_le_bytes([bytes[48], bytes[49], bytes[50], bytes[51]]) as usize;
    let Some(ext_end) = 64usize.checked_add(ext_len) else { return };
    if ext_end > bytes.len() {
        return;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..60]);
    crc.update(&bytes[64..ext_end]);
    let c = crc.finalize().to_le_bytes();
    bytes[60..64].copy_from_slice(&c);
}

/// Creates `path` (and its parent directories) in `fs` holding `data`.
pub fn put_file(fs: &CrashFs, path: &Path, data: &[u8]) {
    if let Some(dir) = path.parent() {
        fs.create_dir_all(dir).expect("crashfs mkdir");
    }
    let mut f = fs.create_new(path).expect("crashfs create");
    f.append(data).expect("crashfs append");
    f.sync_data().expect("crashfs sync");
}

/// How a structure-aware target damages the artifact it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Leave it intact: reading must return exactly what was written.
    None,
    /// XOR the byte at `pos` with a non-zero mask.
    Flip {
        /// Byte position (already reduced modulo the file length).
        pos: usize,
        /// Non-zero XOR mask.
        mask: u8,
    },
    /// Cut the file to `len` bytes.
    Truncate {
        /// New length (at most the old one).
        len: usize,
    },
    /// Append these many garbage bytes (taken from `fill`).
    Append {
        /// The garbage.
        fill: u8,
        /// How many bytes.
        n: usize,
    },
}

impl Mutation {
    /// Draws a mutation for a file of `len` bytes from the input.
    pub fn draw(inp: &mut Input<'_>, len: usize) -> Self {
        let kind = inp.u8();
        let pos = inp.u32() as usize;
        let mask = inp.u8();
        match kind % 4 {
            0 => Self::None,
            1 if len > 0 => Self::Flip {
                pos: pos % len,
                mask: if mask == 0 { 1 } else { mask },
            },
            2 => Self::Truncate { len: pos % (len + 1) },
            3 => Self::Append {
                fill: mask,
                n: 1 + pos % 64,
            },
            _ => Self::None,
        }
    }

    /// Applies the mutation to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        match *self {
            Self::None => {}
            Self::Flip { pos, mask } => {
                if let Some(b) = bytes.get_mut(pos) {
                    *b ^= mask;
                }
            }
            Self::Truncate { len } => bytes.truncate(len),
            Self::Append { fill, n } => {
                bytes.extend(std::iter::repeat_n(fill, n));
            }
        }
    }
}

/// A key provider for the fuzz targets: a fixed in-memory master key used with the local
/// wrap format (`local_wrap` / `local_unwrap`), as the owned key and the local KMS use it.
#[derive(Debug)]
pub struct TestProvider {
    desc: KeyDescriptor,
    master: SecretKey,
}

impl TestProvider {
    /// A provider named `desc` holding `master`.
    pub fn new(desc: KeyDescriptor, master: [u8; 32]) -> Self {
        Self {
            desc,
            master: SecretKey::from_bytes(master),
        }
    }
}

impl KeyProvider for TestProvider {
    fn descriptor(&self) -> KeyDescriptor {
        self.desc.clone()
    }

    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> sealdb_crypto::Result<Vec<u8>> {
        local_wrap(&self.master, 1, &self.desc, data_key, context)
    }

    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> sealdb_crypto::Result<SecretKey> {
        local_unwrap(&self.master, &self.desc, wrapped, context)
    }

    fn check(&self) -> sealdb_crypto::Result<KeyState> {
        Ok(KeyState::Enabled)
    }
}
