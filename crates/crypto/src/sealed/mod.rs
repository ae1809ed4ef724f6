//! The sealed-file framing: one implementation for every durable artifact.
//!
//! A sealed file is a plaintext header followed by blocks, each sealed on its own:
//!
//! ```text
//! header   magic "SEALDBSF" | version u16 | kind u8 | cipher u8 | data-key version u32 |
//!          file id [16] | database id [16] | extension length u32 | reserved [8] | crc32 u32
//! ext      extension bytes (only the KEYS file uses it: its key envelope)
//! block*   body length u32 | flags u8 | prefix crc32 u32 | body (ciphertext) | tag [16] (crc32 [4] for `none`)
//! ```
//!
//! Every integer is little-endian. A block's nonce is its byte offset in the file; its
//! associated data binds the header (so the database id, file id, kind, cipher and data-key
//! version), a digest of the extension, the block's offset and its length-and-flags prefix
//! (so the final flag). This module never writes a byte of a block body in clear (except in
//! the explicit `none` cipher mode) and never returns a body that failed verification.
//!
//! The nonce argument (see `docs/crypto.md`): each file has a fresh random 128-bit file id and
//! so its own HKDF-derived key; within a file every block sits at a distinct offset; files are
//! created with `create_new` and only ever appended to by the one [`SealedWriter`] that
//! created them, which refuses to write after the final block. So no (key, nonce) pair repeats.

//!
//! # Modules
//!
//! - `header`: the fixed header (the artifact kinds and ciphers it names are in
//!   `crate::kinds`, which the keyring uses too);
//! - `block`: block handles and the [`BlockSealer`] that seals and opens one block;
//! - `writer`: [`SealedWriter`], appending blocks to a new file;
//! - `reader`: [`SealedReader`] and [`BlockIter`], reading them back;
//! - `small`: one-block files replaced atomically (CURRENT, the head record).

mod block;
mod header;
mod reader;
mod small;
mod writer;

pub use crate::kinds::{ArtifactKind, CipherId};
pub use block::{BLOCK_PREFIX_LEN, Block, BlockHandle, BlockSealer, MAX_BLOCK_LEN};
pub use header::{Expected, FORMAT_VERSION, FileHeader, HEADER_LEN, MAGIC, MAX_EXTENSION_LEN};
pub use reader::{BlockIter, SealedReader, read_file_header};
pub use small::{read_small_sealed_file, write_small_sealed_file};
pub use writer::SealedWriter;
