//! Shared helpers for sealdb's fuzz targets: the fixed keyring, a total input cursor, header
//! checksum fix-up, re-sealing of raw bytes, a test key provider and a file-writing helper for
//! `CrashFs`.
//!
//! Conventions used by the targets (first input byte):
//! - `0xA5`: *structure-aware* mode — the rest of the input drives a generator that writes a
//!   valid artifact through the real API, mutates it at an input-chosen point, reads it back
//!   and checks the integrity property (intact data reads back exactly; damaged data is an
//!   error or an exact prefix of what was written, never different data).
//! - `0x5A`: *fix-up* mode — the rest is raw file bytes whose sealed-header checksum is
//!   recomputed first, so random mutations get past the header into the block framing.
//! - `0x3C`: *re-seal* mode — the rest is raw file bytes laid out like a sealed file whose
//!   block bodies are *plaintext*; [`reseal`] seals every block with the real sealer under the
//!   target's keyring, so random plaintext reaches the artifact's own decoders through the
//!   real reader (every block prefix carries a crc32 and every body a tag: without this no
//!   random mutation gets past the framing).
//! - anything else: the whole input is raw untrusted bytes.
//!
//! A flipped byte anywhere in a sealed file is damage, never a torn tail: the header, every
//! block prefix (length and flags) and every body are covered by a crc32 or a tag. So the WAL
//! and manifest targets require, unconditionally, that such a flip is reported rather than
//! silently cutting acknowledged data (this was an opt-in check, `SEALDB_FUZZ_STRICT_TAMPER`,
//! before block prefixes carried their crc32).

use sealdb_crypto::keys::{DatabaseId, SecretKey};
use sealdb_crypto::provider::{
    local_unwrap, local_wrap, EncryptionContext, KeyDescriptor, KeyProvider,
};
use sealdb_crypto::sealed::{BLOCK_PREFIX_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC};
use sealdb_crypto::{ArtifactKind, BlockSealer, CipherId, FileHeader, KeyState, Keyring};
use sealdb_vfs::{CrashFs, FileSystem};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// First byte selecting structure-aware mode.
pub const MODE_STRUCTURED: u8 = 0xA5;
/// First byte selecting header-checksum fix-up mode.
pub const MODE_FIXUP: u8 = 0x5A;
/// First byte selecting re-seal mode (see [`reseal`]).
pub const MODE_RESEAL: u8 = 0x3C;

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
    let Some(ext_end) = 64usize.checked_add(ext_len) else {
        return;
    };
    if ext_end > bytes.len() {
        return;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..60]);
    crc.update(&bytes[64..ext_end]);
    let c = crc.finalize().to_le_bytes();
    bytes[60..64].copy_from_slice(&c);
}

/// Recomputes a block prefix's crc32 (bytes 5..9: crc32 of the block's file offset, u64
/// little-endian, and prefix bytes 0..5), mirroring `crates/crypto/src/sealed/block.rs`, so
/// that a random block gets past the prefix check into the length and tag checks.
pub fn fix_prefix_crc(offset: u64, block: &mut [u8]) {
    if block.len() < BLOCK_PREFIX_LEN {
        return;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&offset.to_le_bytes());
    crc.update(&block[..5]);
    let c = crc.finalize().to_le_bytes();
    block[5..9].copy_from_slice(&c);
}

/// Turns raw bytes into a sealed file that authenticates under `keyring` (re-seal mode).
///
/// The fixed header gets the real magic, version, `kind`, a valid cipher (from the low bit of
/// its cipher byte), the keyring's database id and current data-key version, zero reserved
/// bytes and a recomputed checksum; an extension is kept only for the KEYS kind. Then, block
/// by block, each prefix's body length and final flag are taken from the input and the body
/// bytes are sealed *as plaintext* at the same offset with the real [`BlockSealer`] (the tag
/// bytes in the input are overwritten). A block whose declared length overruns the input,
/// and anything shorter than a prefix, is left as it is: a torn or garbage tail. Sizes and
/// offsets never change, so the input's layout is the file's layout.
pub fn reseal(bytes: &[u8], keyring: &Keyring, kind: ArtifactKind) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.len() < HEADER_LEN {
        return out;
    }
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[10] = kind as u8;
    out[11] = cipher_from(out[11]) as u8;
    out[12..16].copy_from_slice(&keyring.current_version().to_le_bytes());
    out[32..48].copy_from_slice(&keyring.database_id().0);
    if kind != ArtifactKind::Keys {
        out[48..52].copy_from_slice(&[0; 4]);
    }
    out[52..60].copy_from_slice(&[0; 8]);
    fix_header_crc(&mut out);
    let Ok(header) = FileHeader::decode(&out, "reseal") else {
        return out;
    };
    let tag_len = header.cipher.tag_len();
    let Ok(sealer) = BlockSealer::for_header(keyring, header, "reseal") else {
        return out;
    };
    let mut pos = sealer.header().encoded_len() as usize;
    let mut sealed = out[..pos].to_vec();
    while out.len() - pos >= BLOCK_PREFIX_LEN {
        let declared = u32::from_le_bytes([out[pos], out[pos + 1], out[pos + 2], out[pos + 3]]);
        let body_len = declared as usize;
        let end = pos + BLOCK_PREFIX_LEN + body_len + tag_len;
        if end > out.len() {
            break;
        }
        let is_final = out[pos + 4] & 1 == 1;
        let body = &out[pos + BLOCK_PREFIX_LEN..pos + BLOCK_PREFIX_LEN + body_len];
        if sealer
            .seal_into(pos as u64, is_final, body, &mut sealed)
            .is_err()
        {
            break;
        }
        pos = end;
    }
    sealed.extend_from_slice(&out[pos..]);
    sealed
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
            2 => Self::Truncate {
                len: pos % (len + 1),
            },
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

    fn wrap(
        &self,
        data_key: &SecretKey,
        context: &EncryptionContext,
    ) -> sealdb_crypto::Result<Vec<u8>> {
        local_wrap(&self.master, 1, &self.desc, data_key, context)
    }

    fn unwrap(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> sealdb_crypto::Result<SecretKey> {
        local_unwrap(&self.master, &self.desc, wrapped, context)
    }

    fn check(&self) -> sealdb_crypto::Result<KeyState> {
        Ok(KeyState::Enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealdb_crypto::{Expected, SealedReader, SealedWriter};

    const BLOCKS: [&[u8]; 3] = [b"first block", b"", b"the final block"];

    /// A sealed file of [`BLOCKS`] (the last one final) under `cipher`.
    fn sealed_file(cipher: CipherId) -> Vec<u8> {
        let fs = CrashFs::new();
        let path = Path::new("/f");
        let mut w =
            SealedWriter::create(&fs, path, keyring(), ArtifactKind::Wal, cipher).expect("create");
        for (i, b) in BLOCKS.iter().enumerate() {
            if i + 1 == BLOCKS.len() {
                w.finish(b).expect("finish");
            } else {
                w.append_block(b).expect("append");
            }
        }
        drop(w);
        fs.contents(path).expect("contents")
    }

    fn read_back(bytes: &[u8], cipher: CipherId) -> Vec<Vec<u8>> {
        let fs = CrashFs::new();
        let path = Path::new("/g");
        put_file(&fs, path, bytes);
        let expected = Expected {
            kind: ArtifactKind::Wal,
            database_id: DB_ID,
            cipher: Some(cipher),
        };
        let reader = SealedReader::open(&fs, path, keyring(), &expected).expect("open");
        reader.blocks().map(|b| b.expect("block").1.data).collect()
    }

    #[test]
    fn reseal_reproduces_a_none_cipher_file_exactly() {
        let file = sealed_file(CipherId::None);
        assert_eq!(reseal(&file, keyring(), ArtifactKind::Wal), file);
    }

    #[test]
    fn reseal_seals_plaintext_bodies_under_chacha() {
        // The header of a real file, then each block as prefix (crc left zero), plaintext
        // and room for the tag.
        let mut input = sealed_file(CipherId::ChaCha20Poly1305)[..HEADER_LEN].to_vec();
        for (i, b) in BLOCKS.iter().enumerate() {
            input.extend_from_slice(&(b.len() as u32).to_le_bytes());
            input.push(u8::from(i + 1 == BLOCKS.len()));
            input.extend_from_slice(&[0; 4]);
            input.extend_from_slice(b);
            input.extend_from_slice(&[0; 16]);
        }
        let sealed = reseal(&input, keyring(), ArtifactKind::Wal);
        assert_eq!(sealed.len(), input.len());
        assert_eq!(
            read_back(&sealed, CipherId::ChaCha20Poly1305),
            BLOCKS.map(<[u8]>::to_vec)
        );
        // Sealed, not copied.
        assert!(!sealed.windows(BLOCKS[2].len()).any(|w| w == BLOCKS[2]));
    }

    #[test]
    fn reseal_keeps_a_torn_tail() {
        let mut file = sealed_file(CipherId::None);
        file.truncate(file.len() - 3);
        let sealed = reseal(&file, keyring(), ArtifactKind::Wal);
        assert_eq!(sealed, file);
    }
}
