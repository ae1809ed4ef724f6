//! `inspect FILE`: the plaintext header of any sealed file and its block layout, read from
//! the block prefixes (the only other bytes a sealed file holds in clear). With `--db`, the
//! database's data keys are loaded read-only (the database is not opened, so inspecting works
//! while another process uses it) and every block is also authenticated and decrypted; only
//! sizes and structure are printed, never key material and never user keys or values.
//!
//! The dumps (`--entries` for a table, `--manifest`, `--wal` for a WAL segment), like
//! RocksDB's `sst_dump` and `ldb`, do print user keys and values: they are asked for by name.
//! A file that does not start with the sealed-file magic is "not a sealdb file" (exit 4):
//! integrity failures (exit 2) are for sealdb files that fail authentication.

use crate::cli::InspectArgs;
use crate::commands::{Create, Ctx};
use crate::error::{CliError, Result};
use crate::output::{bytes, count};
use sealdb_crypto::sealed::{BLOCK_PREFIX_LEN, MAGIC, MAX_BLOCK_LEN, read_file_header};
use sealdb_crypto::{
    ArtifactKind, BlockHandle, CipherId, Expected, FileHeader, KeyDescriptor, KeyState, Keyring,
    KeysFile, LocalKms, OwnedKeyProvider, SealedReader, SharedProvider,
};
use sealdb_vfs::{FileSystem, RandomAccessFile, RealFs};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// Flag bit of a block prefix marking the file's final block.
const FLAG_FINAL: u8 = 0x01;
/// Plaintext length of a table footer and where its magic sits (`docs/format.md`, "SSTable").
const TABLE_FOOTER_LEN: usize = 48;
const TABLE_FOOTER_MAGIC_AT: usize = 40;

/// One block as its clear prefix describes it.
#[derive(Debug, Clone, Copy)]
struct BlockInfo {
    handle: BlockHandle,
    body_len: u32,
    is_final: bool,
}

/// How the walk over the prefixes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
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
    fn is_sound(&self, kind: ArtifactKind) -> bool {
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

    fn describe(&self) -> String {
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

    fn name(&self) -> &'static str {
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
fn walk(file: &dyn RandomAccessFile, start: u64, tag_len: usize) -> Result<(Vec<BlockInfo>, Tail)> {
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
fn check_magic(file: &dyn RandomAccessFile, path: &Path) -> Result<()> {
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

/// `inspect FILE`.
pub fn inspect(ctx: &mut Ctx, a: &InspectArgs) -> Result<()> {
    let fs = RealFs;
    let path = a.file.as_path();
    let file = fs
        .open_read(path)
        .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
    check_magic(file.as_ref(), path)?;
    let header = read_file_header(&fs, path)?;
    let dump = a.dump();
    if let Some((flag, kind)) = dump {
        let fits = header.kind == kind
            || (kind == ArtifactKind::Table && header.kind == ArtifactKind::Index);
        if !fits {
            return Err(CliError::other(format!(
                "{flag} dumps a {} file; {} is a {} file",
                kind.name(),
                path.display(),
                header.kind.name()
            )));
        }
        if ctx.global.db.is_none() {
            return Err(CliError::other(format!(
                "{flag} needs --db: the file is decrypted with that database's keys"
            )));
        }
    }
    let (blocks, tail) = walk(file.as_ref(), header.encoded_len(), header.cipher.tag_len())?;
    print_header(ctx, path, &header, file.len())?;

    // Keys only when a database was named: inspecting needs none, decrypting does.
    let db_keys = match &ctx.global.db {
        Some(_) => Some(load_keyring(ctx)?),
        None => None,
    };
    let data_cipher = db_keys.as_ref().map(|(_, c)| *c);
    let keyring = db_keys.map(|(k, _)| k);
    let mut failures: Vec<String> = Vec::new();
    let reader = match &keyring {
        Some(k) => {
            let expected = Expected {
                kind: header.kind,
                database_id: k.database_id(),
                cipher: data_cipher.map(|d| accepted_cipher(header.cipher, d)),
            };
            if header.database_id != k.database_id() {
                return Err(CliError::integrity(format!(
                    "{} belongs to database {}, not to the database at {} ({})",
                    path.display(),
                    header.database_id,
                    ctx.db_dir().display(),
                    k.database_id()
                )));
            }
            Some(SealedReader::from_file(
                file.clone(),
                path.display().to_string(),
                k,
                &expected,
            )?)
        }
        None => None,
    };

    let roles = reader
        .as_ref()
        .and_then(|r| table_roles(r, &header, &blocks));
    if !ctx.out.is_json() && dump.is_none() {
        ctx.out.text(format!(
            "{:>6} {:>12} {:>10} {:>10}  final{}",
            "block",
            "offset",
            "length",
            "body",
            if reader.is_some() { "  contents" } else { "" }
        ))?;
    }
    for (i, b) in blocks.iter().enumerate() {
        let opened = reader.as_ref().map(|r| {
            r.read_block(b.handle)
                .map(|blk| describe_plaintext(&header, roles.as_ref(), b, &blk.data))
        });
        if let Some(Err(e)) = &opened {
            failures.push(e.to_string());
        }
        if dump.is_some() {
            // The dump replaces the block list; the blocks are still authenticated above.
            continue;
        }
        let text_contents = match &opened {
            None => String::new(),
            Some(Ok(d)) => format!("  {}", d.text),
            Some(Err(e)) => format!("  FAILED: {e}"),
        };
        ctx.out.emit(
            || {
                format!(
                    "{i:>6} {:>12} {:>10} {:>10}  {:<5}{text_contents}",
                    b.handle.offset,
                    b.handle.len,
                    b.body_len,
                    if b.is_final { "yes" } else { "no" },
                )
                .trim_end()
                .to_string()
            },
            || {
                let mut v = json!({
                    "block": i,
                    "offset": b.handle.offset,
                    "length": b.handle.len,
                    "body_length": b.body_len,
                    "final": b.is_final,
                });
                if let (Some(opened), Some(obj)) = (&opened, v.as_object_mut()) {
                    match opened {
                        Ok(d) => {
                            obj.insert("ok".into(), Value::Bool(true));
                            obj.insert("role".into(), Value::String(d.role.into()));
                            obj.insert("plaintext_length".into(), json!(d.plaintext_len));
                            if let Some(raw) = d.raw_len {
                                obj.insert("raw_length".into(), json!(raw));
                            }
                        }
                        Err(e) => {
                            obj.insert("ok".into(), Value::Bool(false));
                            obj.insert("error".into(), Value::String(e.to_string()));
                        }
                    }
                }
                v
            },
        )?;
    }

    if let (Some(k), Some(r), true) = (&keyring, &reader, failures.is_empty()) {
        if a.entries {
            dump_entries(ctx, path, &header, k, data_cipher.unwrap_or(header.cipher))?;
        } else if a.manifest {
            dump_manifest(ctx, path, k, data_cipher.unwrap_or(header.cipher))?;
        } else if a.wal {
            dump_wal(ctx, r, &blocks)?;
        }
    }
    if let (Some(k), true) = (
        &keyring,
        matches!(header.kind, ArtifactKind::Table | ArtifactKind::Index),
    ) {
        print_table_properties(ctx, path, &header, k, data_cipher.unwrap_or(header.cipher))?;
    }
    let sound = tail.is_sound(header.kind);
    let body_total: u64 = blocks.iter().map(|b| u64::from(b.body_len)).sum();
    ctx.out.emit(
        || {
            format!(
                "{} blocks, {} of sealed bodies; layout {}{}",
                count(blocks.len() as u64),
                bytes(body_total),
                tail.describe(),
                match (&reader, failures.len()) {
                    (None, _) => "; blocks not authenticated (give --db to open them)".to_string(),
                    (Some(_), 0) => "; every block authenticated".to_string(),
                    (Some(_), n) => format!("; {n} blocks FAILED authentication"),
                }
            )
        },
        || {
            json!({
                "blocks": blocks.len(),
                "body_bytes": body_total,
                "layout": tail.name(),
                "layout_ok": sound,
                "authenticated": reader.is_some(),
                "failures": failures.len(),
            })
        },
    )?;
    if let Some(first) = failures.first() {
        return Err(CliError::integrity(format!(
            "{} blocks of {} failed authentication (first: {first})",
            failures.len(),
            path.display()
        )));
    }
    if !sound {
        return Err(CliError::integrity(format!(
            "{}: {}",
            path.display(),
            tail.describe()
        )));
    }
    Ok(())
}

fn print_header(ctx: &mut Ctx, path: &Path, h: &FileHeader, len: u64) -> Result<()> {
    // The KEYS file's extension is its key envelope: the master key's name (an identifier)
    // is shown; the wrapped data keys are not.
    let keys_summary = (h.kind == ArtifactKind::Keys)
        .then(|| path.parent())
        .flatten()
        .filter(|_| {
            path.file_name()
                .is_some_and(|n| n == sealdb_crypto::keysfile::KEYS_FILE_NAME)
        })
        .and_then(|dir| KeysFile::peek(&RealFs, dir).ok());
    ctx.out.emit(
        || {
            let mut lines = vec![
                format!("file           {} ({} bytes)", path.display(), count(len)),
                format!(
                    "format         sealed file v{}, kind {}, cipher {}",
                    h.version,
                    h.kind.name(),
                    h.cipher.name()
                ),
                format!("data key       version {}", h.data_key_version),
                format!("file id        {}", h.file_id),
                format!("database id    {}", h.database_id),
                format!(
                    "header         {} bytes (extension {} bytes); blocks from offset {}",
                    h.encoded_len(),
                    h.extension.len(),
                    h.encoded_len()
                ),
            ];
            if let Some(s) = &keys_summary {
                lines.push(format!(
                    "master key     {} (data-key versions {:?}, current {})",
                    s.master, s.versions, s.current_version
                ));
            }
            lines.join("\n")
        },
        || {
            json!({
                "file": path.display().to_string(),
                "size": len,
                "format_version": h.version,
                "kind": h.kind.name(),
                "cipher": h.cipher.name(),
                "data_key_version": h.data_key_version,
                "file_id": h.file_id.to_string(),
                "database_id": h.database_id.to_string(),
                "header_length": h.encoded_len(),
                "extension_length": h.extension.len(),
                "master_key": keys_summary.as_ref().map(|s| s.master.to_string()),
            })
        },
    )
}

/// Loads the data keys of the database named by `--db` without opening it (no lock, no
/// recovery, nothing written), asking the provider its KEYS file names.
/// The cipher a file of this database may be sealed with: the database's data cipher, or
/// ChaCha20-Poly1305 (KEYS, CURRENT, STATS and CONSUMERS always are). Never taken from the
/// header alone: a header claiming `none` (crc32 only) in an encrypted database is a forgery
/// anyone can write, and must not be shown as authentic.
fn accepted_cipher(claimed: CipherId, data: CipherId) -> CipherId {
    if claimed == CipherId::ChaCha20Poly1305 {
        claimed
    } else {
        data
    }
}

/// The database's keyring and data cipher, from its KEYS file.
fn load_keyring(ctx: &Ctx) -> Result<(Keyring, CipherId)> {
    let fs = RealFs;
    let dir = ctx.db_dir();
    if !fs.exists(&dir.join(sealdb_crypto::keysfile::KEYS_FILE_NAME)) {
        return Err(CliError::other(format!(
            "no database at {} (no KEYS file) to take keys from",
            dir.display()
        )));
    }
    let opts = ctx.options(Create::Never)?;
    let summary = KeysFile::peek(&fs, &dir)?;
    let (keys, _) = KeysFile::open(&fs, &dir, |desc| {
        resolve_provider(desc, summary.database_id, &opts)
    })?;
    Ok((keys.keyring().clone(), keys.data_cipher()))
}

/// The provider a KEYS file names, from the global options (never creating a key). Mirrors
/// the engine's own resolution, which it does not expose.
fn resolve_provider(
    desc: &KeyDescriptor,
    database_id: sealdb_crypto::DatabaseId,
    opts: &sealdb::Options,
) -> sealdb_crypto::Result<SharedProvider> {
    // An AWS KMS key: the provider built from the KEYS file (builds with `aws-kms`).
    if let Some(p) = opts.providers.iter().find(|p| p.descriptor() == *desc) {
        return Ok(p.clone());
    }
    match desc.provider.as_str() {
        "owned" => Ok(Arc::new(OwnedKeyProvider::open(
            &opts.resolved_keystore_dir(),
            database_id,
        )?)),
        "local-kms" => {
            let kms = LocalKms::open(&opts.resolved_kms_dir())?;
            Ok(Arc::new(kms.provider(&desc.key_id)))
        }
        _ => Err(sealdb_crypto::Error::KeyUnavailable {
            provider: desc.provider.clone(),
            key_id: desc.key_id.clone(),
            state: KeyState::Unreachable(
                "this program reaches owned and local-kms keys, and AWS KMS keys only when \
                 built with the aws-kms feature"
                    .into(),
            ),
        }),
    }
}

/// Offsets of a table's metadata blocks, from its authenticated footer.
#[derive(Debug, Clone, Copy)]
struct TableRoles {
    index: u64,
    filter: u64,
    properties: u64,
}

/// Decodes the footer of a table (or index table) to name each block's role.
fn table_roles(r: &SealedReader, h: &FileHeader, blocks: &[BlockInfo]) -> Option<TableRoles> {
    if !matches!(h.kind, ArtifactKind::Table | ArtifactKind::Index) {
        return None;
    }
    let last = blocks.last().filter(|b| b.is_final)?;
    let footer = r.read_block(last.handle).ok()?.data;
    if footer.len() != TABLE_FOOTER_LEN
        || footer.get(TABLE_FOOTER_MAGIC_AT..)? != sealdb_sstable::TABLE_MAGIC.to_le_bytes()
    {
        return None;
    }
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(footer.get(at..at + 8)?.try_into().ok()?))
    };
    Some(TableRoles {
        index: u64_at(0)?,
        filter: u64_at(12)?,
        properties: u64_at(24)?,
    })
}

/// What a decrypted block holds, in sizes only.
struct Plaintext {
    role: &'static str,
    plaintext_len: usize,
    /// A compressed data block's decompressed size.
    raw_len: Option<u32>,
    text: String,
}

fn describe_plaintext(
    h: &FileHeader,
    roles: Option<&TableRoles>,
    b: &BlockInfo,
    data: &[u8],
) -> Plaintext {
    let offset = b.handle.offset;
    let role = match (h.kind, roles) {
        (ArtifactKind::Table | ArtifactKind::Index, Some(r)) => {
            if b.is_final {
                "footer"
            } else if offset == r.index {
                "index"
            } else if offset == r.filter {
                "filter"
            } else if offset == r.properties {
                "properties"
            } else {
                "data"
            }
        }
        (ArtifactKind::Wal, _) => "commit-frame",
        (ArtifactKind::Manifest, _) => "manifest-edits",
        (ArtifactKind::Keys, _) => "keys-payload",
        _ => "block",
    };
    // Data blocks start with a compression tag; LZ4 ones then hold the raw length.
    let raw_len = if role == "data" && data.first() == Some(&1) {
        data.get(1..5)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    } else {
        None
    };
    let text = match raw_len {
        Some(raw) => format!("{role}, {} B plaintext (lz4, {} B raw)", data.len(), raw),
        None => format!("{role}, {} B plaintext", data.len()),
    };
    Plaintext {
        role,
        plaintext_len: data.len(),
        raw_len,
        text,
    }
}

fn print_table_properties(
    ctx: &mut Ctx,
    path: &Path,
    h: &FileHeader,
    k: &Keyring,
    data_cipher: CipherId,
) -> Result<()> {
    // Counts and sizes only: the smallest and largest keys are user data.
    let table = match open_table(path, h, k, data_cipher) {
        Ok(t) => t,
        Err(e) => {
            let e = CliError::from(e);
            return ctx.out.emit(
                || format!("table          could not be opened: {e}"),
                || json!({"table": {"ok": false, "error": e.to_string()}}),
            );
        }
    };
    let p = table.properties();
    ctx.out.emit(
        || {
            format!(
                "table          {} entries ({} tombstones), seq {}..{}, {} data blocks, \
                 keys {} + values {} raw, compression {}, bloom {} bits/key, created at unix \
                 time {}",
                count(p.entries),
                count(p.tombstones),
                p.min_seq,
                p.max_seq,
                count(p.data_blocks),
                bytes(p.raw_key_bytes),
                bytes(p.raw_value_bytes),
                compression_name(p.compression),
                p.bloom_bits_per_key,
                p.creation_time
            )
        },
        || {
            json!({"table": {
                "ok": true,
                "entries": p.entries,
                "tombstones": p.tombstones,
                "min_seq": p.min_seq,
                "max_seq": p.max_seq,
                "data_blocks": p.data_blocks,
                "raw_key_bytes": p.raw_key_bytes,
                "raw_value_bytes": p.raw_value_bytes,
                "compression": compression_name(p.compression),
                "bloom_bits_per_key": p.bloom_bits_per_key,
                "creation_time": p.creation_time,
            }})
        },
    )
}

/// A key or value as the dumps print it in text. The one call site of the CLI's escaping rule
/// in this module (switch it here when the shared rule changes).
fn shown(bytes: &[u8]) -> String {
    crate::output::display_key(bytes)
}

/// A key or value in a dump's JSON: the CLI's one JSON rule ([`crate::output::json_bytes`]).
fn shown_json(bytes: &[u8]) -> Value {
    crate::output::json_bytes(bytes)
}

/// Opens a table of this database for a dump, authenticated under its data cipher (never the
/// cipher its header claims).
fn open_table(
    path: &Path,
    h: &FileHeader,
    k: &Keyring,
    data_cipher: CipherId,
) -> sealdb_sstable::Result<Arc<sealdb_sstable::Table>> {
    let expected = Expected {
        kind: h.kind,
        database_id: k.database_id(),
        cipher: Some(data_cipher),
    };
    sealdb_sstable::Table::open(&RealFs, path, k, &expected, None)
}

/// `--entries`: every entry of a table in internal order (newest version of a key first).
fn dump_entries(
    ctx: &mut Ctx,
    path: &Path,
    h: &FileHeader,
    k: &Keyring,
    data_cipher: CipherId,
) -> Result<()> {
    let table = open_table(path, h, k, data_cipher)?;
    let unbounded = std::ops::Bound::Unbounded;
    for entry in table.iter(unbounded.clone(), unbounded) {
        let e = entry?;
        let put = e.kind == sealdb_sstable::ValueKind::Put;
        ctx.out.emit(
            || {
                if put {
                    format!(
                        "{:>10} put    {} = {}",
                        e.seq,
                        shown(&e.key),
                        shown(&e.value)
                    )
                } else {
                    format!("{:>10} delete {}", e.seq, shown(&e.key))
                }
            },
            || {
                json!({
                    "seq": e.seq,
                    "op": if put { "put" } else { "delete" },
                    "key": shown_json(&e.key),
                    "value": if put { shown_json(&e.value) } else { Value::Null },
                })
            },
        )?;
    }
    Ok(())
}

/// `--manifest`: every edit, group by group, as recorded (not applied).
fn dump_manifest(ctx: &mut Ctx, path: &Path, k: &Keyring, data_cipher: CipherId) -> Result<()> {
    for edit in sealdb::read_manifest_edits(&RealFs, path, k, data_cipher)? {
        ctx.out.emit(
            || {
                let fields: Vec<String> = edit
                    .fields
                    .iter()
                    .map(|(name, f)| match f {
                        sealdb::EditField::Number(n) => format!("{name}={n}"),
                        sealdb::EditField::Text(t) => format!("{name}={t:?}"),
                        sealdb::EditField::Bytes(b) => format!("{name}={}", shown(b)),
                        _ => format!("{name}=?"),
                    })
                    .collect();
                format!(
                    "group {:>4}  {:<17} {}",
                    edit.group,
                    edit.kind,
                    fields.join(" ")
                )
            },
            || {
                let mut obj = serde_json::Map::new();
                obj.insert("group".into(), json!(edit.group));
                obj.insert("edit".into(), json!(edit.kind));
                for (name, f) in &edit.fields {
                    let v = match f {
                        sealdb::EditField::Number(n) => json!(n),
                        sealdb::EditField::Text(t) => json!(t),
                        sealdb::EditField::Bytes(b) => shown_json(b),
                        _ => Value::Null,
                    };
                    obj.insert((*name).into(), v);
                }
                Value::Object(obj)
            },
        )?;
    }
    Ok(())
}

/// `--wal`: every frame of a segment and every record of its batches.
fn dump_wal(ctx: &mut Ctx, r: &SealedReader, blocks: &[BlockInfo]) -> Result<()> {
    use sealdb_wal::Frame;
    for (i, b) in blocks.iter().enumerate() {
        let block = r.read_block(b.handle)?;
        let frame = sealdb_wal::decode_frame(&block.data).map_err(|e| {
            CliError::integrity(format!("frame {i} at offset {}: {e}", b.handle.offset))
        })?;
        match frame {
            Frame::Start {
                number,
                prev_number,
                prev_end,
                prev_finished,
            } => ctx.out.emit(
                || {
                    format!(
                        "frame {i:>4}  start: segment {number}; previous segment {prev_number} ended at {prev_end}{}",
                        if prev_finished { " (finished)" } else { " (not finished)" }
                    )
                },
                || {
                    json!({"frame": i, "type": "start", "segment": number,
                           "prev_segment": prev_number, "prev_end": prev_end,
                           "prev_finished": prev_finished})
                },
            )?,
            Frame::End => ctx.out.emit(
                || format!("frame {i:>4}  end"),
                || json!({"frame": i, "type": "end"}),
            )?,
            Frame::Batches(batches) => {
                let time = batches.first().map_or(0, |b| b.commit_time_ms);
                ctx.out.emit(
                    || {
                        format!(
                            "frame {i:>4}  commit at {}: {} batches",
                            crate::time::utc_ms(time),
                            batches.len()
                        )
                    },
                    || json!({"frame": i, "type": "batches", "commit_time_ms": time, "batches": batches.len()}),
                )?;
                for batch in &batches {
                    for (seq, rec) in (batch.first_seq..).zip(sealdb_wal::RecordIter::new(batch.rep)) {
                        let rec = rec.map_err(|e| {
                            CliError::integrity(format!("frame {i} at offset {}: {e}", b.handle.offset))
                        })?;
                        let put = rec.op == sealdb_wal::Op::Put;
                        ctx.out.emit(
                            || {
                                if put {
                                    format!(
                                        "  {seq:>10} put    keyspace {} {} = {}",
                                        rec.keyspace,
                                        shown(rec.key),
                                        shown(rec.value)
                                    )
                                } else {
                                    format!(
                                        "  {seq:>10} delete keyspace {} {}",
                                        rec.keyspace,
                                        shown(rec.key)
                                    )
                                }
                            },
                            || {
                                json!({
                                    "frame": i,
                                    "seq": seq,
                                    "op": if put { "put" } else { "delete" },
                                    "keyspace": rec.keyspace,
                                    "key": shown_json(rec.key),
                                    "value": if put { shown_json(rec.value) } else { Value::Null },
                                })
                            },
                        )?;
                    }
                }
            }
            _ => ctx.out.emit(
                || format!("frame {i:>4}  (unknown frame type)"),
                || json!({"frame": i, "type": "unknown"}),
            )?,
        }
    }
    Ok(())
}

fn compression_name(c: sealdb_sstable::Compression) -> &'static str {
    match c {
        sealdb_sstable::Compression::None => "none",
        sealdb_sstable::Compression::Lz4 => "lz4",
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
