//! The clear layout of a sealed file: walking its block prefixes (no key needed, nothing
//! authenticated) and telling a sealdb file from any other.

use crate::error::{CliError, Result};
use sealdb_crypto::ArtifactKind;
use sealdb_crypto::BlockHandle;
use sealdb_crypto::sealed::{BLOCK_PREFIX_LEN, MAGIC, MAX_BLOCK_LEN};
use sealdb_vfs::RandomAccessFile;
use std::path::Path;

/// Flag bit of a block prefix marking the file's final block.
const FLAG_FINAL: u8 = 0x01;

/// One block as its clear prefix describes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockInfo {
    pub(super) handle: BlockHandle,
    pub(super) body_len: u32,
    pub(super) is_final: bool,
}

/// How the walk over the prefixes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tail {
    /// The final block ends the file exactly.
    Complete,
    /// The file ends on a block boundary without a final block (an active WAL segment).
    Unfinished,
    /// A block runs past the end of the file.
    Truncated { offset: u64 },
    /// A prefix declares a body over the framing's limit.
    BadLength { offset: u64 },
    /// Bytes follow the final block.
    TrailingData { offset: u64, bytes: u64 },
}

impl Tail {
    /// Whether the layout is sound for a file of `kind`.
    pub(super) fn is_sound(&self, kind: ArtifactKind) -> bool {
        match self {
            Self::Complete => true,
            // Only append-only logs are legitimately open-ended; the live manifest is one (its
            // edit groups are appended until it is replaced).
            Self::Unfinished => matches!(
                kind,
                ArtifactKind::Wal | ArtifactKind::Stream | ArtifactKind::Manifest
            ),
            _ => false,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Complete => "complete: the final block ends the file".into(),
            Self::Unfinished => {
                "no final block: the file ends on a block boundary (normal only for an active \
                 WAL or stream segment, or the live manifest)"
                    .into()
            }
            Self::Truncated { offset } => {
                format!("truncated: the block at offset {offset} runs past the end of the file")
            }
            Self::BadLength { offset } => {
                format!("bad length: the block at offset {offset} declares an oversized body")
            }
            Self::TrailingData { offset, bytes } => {
                format!("{bytes} bytes of trailing data after the final block (at offset {offset})")
            }
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Unfinished => "unfinished",
            Self::Truncated { .. } => "truncated",
            Self::BadLength { .. } => "bad-length",
            Self::TrailingData { .. } => "trailing-data",
        }
    }
}

/// Walks the block prefixes from `start`: no key needed, nothing authenticated yet.
pub(super) fn walk(
    file: &dyn RandomAccessFile,
    start: u64,
    tag_len: usize,
) -> Result<(Vec<BlockInfo>, Tail)> {
    let len = file.len();
    let mut blocks = Vec::new();
    let mut offset = start;
    loop {
        if offset == len {
            return Ok((blocks, Tail::Unfinished));
        }
        if offset + BLOCK_PREFIX_LEN as u64 > len {
            return Ok((blocks, Tail::Truncated { offset }));
        }
        let mut prefix = [0u8; BLOCK_PREFIX_LEN];
        file.read_exact_at(&mut prefix, offset)
            .map_err(|e| CliError::io("reading a block prefix", e))?;
        // The prefix starts with the body length and the flags byte (whatever follows them,
        // such as the prefix checksum, is checked when the block is opened with its key).
        let (Some(len_bytes), Some(&flags)) = (prefix.first_chunk::<4>(), prefix.get(4)) else {
            return Ok((blocks, Tail::BadLength { offset }));
        };
        let body_len = u32::from_le_bytes(*len_bytes);
        if body_len > MAX_BLOCK_LEN {
            return Ok((blocks, Tail::BadLength { offset }));
        }
        let block_len = BLOCK_PREFIX_LEN as u32 + body_len + tag_len as u32;
        let handle = BlockHandle {
            offset,
            len: block_len,
        };
        if handle.end() > len {
            return Ok((blocks, Tail::Truncated { offset }));
        }
        let is_final = flags & FLAG_FINAL != 0;
        blocks.push(BlockInfo {
            handle,
            body_len,
            is_final,
        });
        offset = handle.end();
        if is_final {
            if offset == len {
                return Ok((blocks, Tail::Complete));
            }
            return Ok((
                blocks,
                Tail::TrailingData {
                    offset,
                    bytes: len - offset,
                },
            ));
        }
    }
}

/// Refuses a file that is not a sealed file at all (exit 4): only sealdb files can fail
/// authentication.
pub(super) fn check_magic(file: &dyn RandomAccessFile, path: &Path) -> Result<()> {
    let mut magic = [0u8; MAGIC.len()];
    let sealed = file.len() >= MAGIC.len() as u64
        && file.read_exact_at(&mut magic, 0).is_ok()
        && magic == MAGIC;
    if sealed {
        Ok(())
    } else {
        Err(CliError::other(format!(
            "{}: not a sealdb file (it does not start with the sealed-file magic {:?})",
            path.display(),
            String::from_utf8_lossy(&MAGIC)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// An in-memory file for walking layouts.
    #[derive(Debug)]
    struct Mem(Vec<u8>);

    impl RandomAccessFile for Mem {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    fn block(body: usize, flags: u8, tag: usize) -> Vec<u8> {
        let mut v = (body as u32).to_le_bytes().to_vec();
        v.push(flags);
        v.resize(BLOCK_PREFIX_LEN, 0);
        v.extend(std::iter::repeat_n(0xAB, body + tag));
        v
    }

    fn walked(bytes: Vec<u8>) -> (usize, Tail) {
        match walk(&Mem(bytes), 8, 16) {
            Ok((b, t)) => (b.len(), t),
            Err(e) => panic!("walk failed: {e}"),
        }
    }

    #[test]
    fn complete_unfinished_and_damaged_layouts() {
        let mut f = vec![0u8; 8];
        f.extend(block(10, 0, 16));
        f.extend(block(3, FLAG_FINAL, 16));
        assert_eq!(walked(f.clone()), (2, Tail::Complete));

        let mut trailing = f.clone();
        trailing.push(0);
        assert!(matches!(
            walked(trailing),
            (2, Tail::TrailingData { bytes: 1, .. })
        ));

        let second = 8 + (BLOCK_PREFIX_LEN + 10 + 16) as u64;
        let mut cut = f.clone();
        cut.truncate(cut.len() - 1);
        assert_eq!(walked(cut), (1, Tail::Truncated { offset: second }));

        let mut open = vec![0u8; 8];
        open.extend(block(10, 0, 16));
        assert_eq!(walked(open), (1, Tail::Unfinished));

        let mut huge = vec![0u8; 8];
        huge.extend(u32::MAX.to_le_bytes());
        huge.resize(8 + BLOCK_PREFIX_LEN, 0);
        assert_eq!(walked(huge), (0, Tail::BadLength { offset: 8 }));
    }

    #[test]
    fn only_logs_may_be_unfinished() {
        assert!(Tail::Unfinished.is_sound(ArtifactKind::Wal));
        assert!(!Tail::Unfinished.is_sound(ArtifactKind::Table));
        assert!(Tail::Unfinished.is_sound(ArtifactKind::Manifest));
        assert!(Tail::Complete.is_sound(ArtifactKind::Table));
    }
}
