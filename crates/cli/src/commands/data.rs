//! Data commands: `put`, `get`, `delete`, `scan`, `import`, `export`.
//!
//! They work on the default keyspace. Keys and values are text by default and hexadecimal
//! with `--hex`; the tab-separated line format and its refusals are described in `--help`
//! (`TEXT_FORMAT_HELP` in `cli.rs`) and implemented by [`Encoding`].

use super::{Create, Ctx};
use crate::cli::{DeleteArgs, ExportArgs, GetArgs, ImportArgs, PutArgs, ScanArgs};
use crate::error::{CliError, Result};
use crate::output::{Encoding, display_key};
use sealdb::{Db, WriteBatch, WriteOptions};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Bound;
use std::path::Path;

fn write_opts(sync: bool) -> WriteOptions {
    if sync {
        WriteOptions::SYNC
    } else {
        WriteOptions::NO_SYNC
    }
}

/// `put KEY VALUE [--sync] [--hex]`: silent on success in text mode.
pub fn put(ctx: &mut Ctx, a: &PutArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let key = enc.decode_arg(&a.key, "key")?;
    let value = enc.decode_arg(&a.value, "value")?;
    let db = ctx.open(Create::IfMissing)?;
    db.default_keyspace()
        .put_opt(&key, &value, write_opts(a.sync))?;
    if ctx.out.is_json() {
        ctx.out
            .json_line(&json!({"op": "put", "ok": true, "sync": a.sync}))?;
    }
    Ok(())
}

/// `get KEY [--hex]`: prints the value and a newline; exit 1 if the key has none.
pub fn get(ctx: &mut Ctx, a: &GetArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let key = enc.decode_arg(&a.key, "key")?;
    let db = ctx.open(Create::ReadOnly)?;
    let Some(value) = db.get(&key)? else {
        if ctx.out.is_json() {
            let k = enc.json_string(&key, "key", &key)?;
            ctx.out.json_line(&json!({"key": k, "found": false}))?;
        }
        return Err(CliError::not_found(format!(
            "key not found: {}",
            display_key(&key)
        )));
    };
    if ctx.out.is_json() {
        let v = json!({
            "key": enc.json_string(&key, "key", &key)?,
            "value": enc.json_string(&value, "value", &key)?,
        });
        ctx.out.json_line(&v)
    } else {
        match enc {
            // The value's bytes exactly as stored, whatever they are.
            Encoding::Text => ctx.out.raw(&value)?,
            Encoding::Hex => ctx.out.raw(sealdb_crypto::hex::encode(&value).as_bytes())?,
        }
        ctx.out.raw(b"\n")
    }
}

/// `delete KEY [--sync] [--hex]`: deleting a missing key succeeds (deletes are blind).
pub fn delete(ctx: &mut Ctx, a: &DeleteArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let key = enc.decode_arg(&a.key, "key")?;
    let db = ctx.open(Create::Never)?;
    db.default_keyspace().delete_opt(&key, write_opts(a.sync))?;
    if ctx.out.is_json() {
        ctx.out
            .json_line(&json!({"op": "delete", "ok": true, "sync": a.sync}))?;
    }
    Ok(())
}

/// A key range as the engine takes it.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A stream of key/value pairs from the engine.
type Pairs = Box<dyn Iterator<Item = sealdb::Result<(Vec<u8>, Vec<u8>)>>>;

/// The smallest key greater than every key starting with `prefix` (`None`: no such key,
/// the prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The scan range: the intersection of the prefix's range, `[from, ...)` and `[..., to)`.
/// `None` when it is empty (so the engine is never asked for an inverted range).
pub fn scan_bounds(
    prefix: Option<&[u8]>,
    from: Option<&[u8]>,
    to: Option<&[u8]>,
) -> Option<KeyRange> {
    // Both lower bounds are inclusive: the larger one wins.
    let lower = [prefix, from]
        .into_iter()
        .flatten()
        .max()
        .map(<[u8]>::to_vec);
    // Both upper bounds are exclusive: the smaller one wins.
    let prefix_upper = prefix.and_then(prefix_end);
    let upper = [prefix_upper.as_deref(), to]
        .into_iter()
        .flatten()
        .min()
        .map(<[u8]>::to_vec);
    if let (Some(lo), Some(hi)) = (&lower, &upper)
        && lo >= hi
    {
        return None;
    }
    Some((
        lower.map_or(Bound::Unbounded, Bound::Included),
        upper.map_or(Bound::Unbounded, Bound::Excluded),
    ))
}

/// Appends `key<TAB>value<NL>` in the encoding.
fn tsv_line(enc: Encoding, key: &[u8], value: &[u8], line: &mut Vec<u8>) -> Result<()> {
    line.clear();
    enc.push_tsv_field(line, key, "key", key)?;
    line.push(b'\t');
    enc.push_tsv_field(line, value, "value", key)?;
    line.push(b'\n');
    Ok(())
}

/// `scan [--prefix P] [--from K] [--to K] [--limit N] [--reverse] [--hex]`.
pub fn scan(ctx: &mut Ctx, a: &ScanArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let decode =
        |s: &Option<String>, what| s.as_deref().map(|s| enc.decode_arg(s, what)).transpose();
    let prefix = decode(&a.prefix, "prefix")?;
    let from = decode(&a.from, "--from key")?;
    let to = decode(&a.to, "--to key")?;
    let db = ctx.open(Create::ReadOnly)?;
    let Some((lo, hi)) = scan_bounds(prefix.as_deref(), from.as_deref(), to.as_deref()) else {
        return Ok(());
    };
    let iter = db.range((lo, hi))?;
    let limit = a.limit.unwrap_or(u64::MAX);
    let iter: Pairs = if a.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    let mut line = Vec::new();
    for item in iter.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let (k, v) = item?;
        if ctx.out.is_json() {
            let obj = json!({
                "key": enc.json_string(&k, "key", &k)?,
                "value": enc.json_string(&v, "value", &k)?,
            });
            ctx.out.json_line(&obj)?;
        } else {
            tsv_line(enc, &k, &v, &mut line)?;
            ctx.out.raw(&line)?;
        }
    }
    Ok(())
}

/// Splits an imported line (without its newline) into key and value.
fn parse_line(enc: Encoding, line: &[u8], n: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let bad = |why: &str| CliError::other(format!("line {n}: {why}"));
    let Some(tab) = line.iter().position(|b| *b == b'\t') else {
        return Err(bad("no TAB between key and value"));
    };
    let (k, rest) = line.split_at(tab);
    let v = rest.get(1..).unwrap_or_default();
    if enc == Encoding::Text && v.contains(&b'\t') {
        return Err(bad(
            "more than one TAB (the tab-separated format cannot carry a TAB in a value; \
             export with --hex and import with --hex)",
        ));
    }
    let key = enc
        .decode_field(k)
        .ok_or_else(|| bad("the key is not hexadecimal"))?;
    let value = enc
        .decode_field(v)
        .ok_or_else(|| bad("the value is not hexadecimal"))?;
    Ok((key, value))
}

/// `import FILE|- [--hex] [--batch N]`: writes in atomic batches, syncs once at the end.
pub fn import(ctx: &mut Ctx, a: &ImportArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let from_stdin = a.file.as_os_str() == "-";
    let source: Box<dyn Read> = if from_stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&a.file)
                .map_err(|e| CliError::io(format!("opening {}", a.file.display()), e))?,
        )
    };
    let label = if from_stdin {
        "standard input".to_string()
    } else {
        a.file.display().to_string()
    };
    let mut reader = BufReader::with_capacity(1 << 16, source);
    let db = ctx.open(Create::IfMissing)?;
    let ks = db.default_keyspace();
    let mut batch = WriteBatch::new();
    let mut line = Vec::new();
    let (mut n, mut imported) = (0u64, 0u64);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::io(format!("reading {label}"), e))?;
        if read == 0 {
            break;
        }
        n += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let (k, v) = parse_line(enc, &line, n).map_err(|e| e.context(&label))?;
        batch
            .put(&ks, &k, &v)
            .map_err(|e| CliError::from(e).context(format!("{label}: line {n}")))?;
        if batch.len() as u64 >= a.batch {
            imported += batch.len() as u64;
            db.write(std::mem::take(&mut batch), WriteOptions::NO_SYNC)?;
        }
    }
    imported += batch.len() as u64;
    db.write(batch, WriteOptions::NO_SYNC)?;
    // One sync for the whole import: a reported import is a durable import.
    db.sync_wal()?;
    ctx.out.emit(
        || format!("imported {imported} pairs from {label}"),
        || json!({"op": "import", "imported": imported, "source": label}),
    )
}

/// Writes every pair of `db` as tab-separated lines to `w`; returns how many. `on_err` names
/// the destination in write errors.
fn write_pairs(
    db: &Db,
    enc: Encoding,
    w: &mut dyn Write,
    on_err: &dyn Fn(std::io::Error) -> CliError,
) -> Result<u64> {
    let mut line = Vec::new();
    let mut n = 0u64;
    for item in db.range::<&[u8], _>(..)? {
        let (k, v) = item?;
        tsv_line(enc, &k, &v, &mut line)?;
        w.write_all(&line).map_err(on_err)?;
        n += 1;
    }
    Ok(n)
}

/// `export [FILE|-] [--hex]`: one consistent snapshot, in key order. A file is written under
/// a temporary name (mode 0600: it holds the data in clear) and renamed only on success, so a
/// refused or failed export leaves no partial file.
pub fn export(ctx: &mut Ctx, a: &ExportArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let db = ctx.open(Create::ReadOnly)?;
    let target = a.file.as_deref().filter(|p| p.as_os_str() != "-");
    let Some(path) = target else {
        // Straight to standard output; the data is the output, so no summary line.
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        write_pairs(&db, enc, &mut w, &CliError::stdout)?;
        return w.flush().map_err(CliError::stdout);
    };
    let n = export_to_file(&db, enc, path)?;
    ctx.out.emit(
        || format!("exported {n} pairs to {}", path.display()),
        || json!({"op": "export", "exported": n, "file": path.display().to_string()}),
    )
}

fn export_to_file(db: &Db, enc: Encoding, path: &Path) -> Result<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let what = || format!("writing {}", path.display());
    let tmp = tempfile::Builder::new()
        .prefix(".sealdb-export-")
        .tempfile_in(dir)
        .map_err(|e| CliError::io(what(), e))?;
    let mut w = std::io::BufWriter::new(tmp);
    let n = write_pairs(db, enc, &mut w, &|e| CliError::io(what(), e))?;
    let tmp = w
        .into_inner()
        .map_err(|e| CliError::io(what(), e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CliError::io(what(), e))?;
    tmp.persist(path)
        .map_err(|e| CliError::io(what(), e.error))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn bounds_intersect_prefix_from_and_to() {
        let r = scan_bounds(Some(b"ab"), None, None);
        assert_eq!(
            r,
            Some((Bound::Included(b("ab")), Bound::Excluded(b("ac"))))
        );
        let r = scan_bounds(Some(b"ab"), Some(b"abc"), Some(b"b"));
        assert_eq!(
            r,
            Some((Bound::Included(b("abc")), Bound::Excluded(b("ac"))))
        );
        let r = scan_bounds(None, Some(b"a"), Some(b"c"));
        assert_eq!(r, Some((Bound::Included(b("a")), Bound::Excluded(b("c")))));
        assert_eq!(
            scan_bounds(None, None, None),
            Some((Bound::Unbounded, Bound::Unbounded))
        );
    }

    #[test]
    fn empty_or_inverted_ranges_are_none() {
        assert_eq!(scan_bounds(None, Some(b"c"), Some(b"a")), None);
        assert_eq!(scan_bounds(None, Some(b"c"), Some(b"c")), None);
        assert_eq!(scan_bounds(Some(b"x"), None, Some(b"a")), None);
    }

    #[test]
    fn all_ff_prefix_has_no_upper_bound() {
        let r = scan_bounds(Some(&[0xff, 0xff]), None, None);
        assert_eq!(
            r,
            Some((Bound::Included(vec![0xff, 0xff]), Bound::Unbounded))
        );
        assert_eq!(prefix_end(&[0x61, 0xff]), Some(vec![0x62]));
    }

    #[test]
    fn import_lines_parse_strictly() {
        let ok = parse_line(Encoding::Text, b"k\tv a\\lue\r", 1);
        assert!(matches!(ok, Ok((k, v)) if k == b"k" && v == b"v a\\lue\r"));
        let empty_value = parse_line(Encoding::Text, b"k\t", 1);
        assert!(matches!(empty_value, Ok((_, v)) if v.is_empty()));
        assert!(parse_line(Encoding::Text, b"no tab", 3).is_err());
        assert!(parse_line(Encoding::Text, b"k\tv\tw", 3).is_err());
        let hex = parse_line(Encoding::Hex, b"6b\t00ff\r", 1);
        assert!(matches!(hex, Ok((k, v)) if k == b"k" && v == [0, 255]));
        assert!(parse_line(Encoding::Hex, b"6b\tzz", 1).is_err());
    }

    #[test]
    fn tsv_lines_round_trip_through_the_parser() {
        let mut line = Vec::new();
        for enc in [Encoding::Text, Encoding::Hex] {
            assert!(tsv_line(enc, b"key", b"va\\lue", &mut line).is_ok());
            line.pop();
            let parsed = parse_line(enc, &line, 1);
            assert!(matches!(parsed, Ok((k, v)) if k == b"key" && v == b"va\\lue"));
        }
        assert!(tsv_line(Encoding::Text, b"k", b"a\tb", &mut line).is_err());
        assert!(tsv_line(Encoding::Hex, b"k", b"a\tb", &mut line).is_ok());
    }
}
