//! Data commands: `put`, `get`, `delete`, `scan`, `import`, `export`.
//!
//! They work on the keyspace given with `--keyspace` (the default keyspace otherwise). Keys
//! and values are text by default and hexadecimal with `--hex`; the tab-separated line format
//! and its escapes are described in `--help` (`TEXT_FORMAT_HELP` in `cli.rs`) and
//! implemented by [`Encoding`].

use super::{Create, Ctx};
use crate::cli::{DeleteArgs, ExportArgs, GetArgs, ImportArgs, KeyspaceArg, PutArgs, ScanArgs};
use crate::error::{CliError, Result};
use crate::output::{Encoding, display_key};
use sealdb::{Db, Keyspace, WriteBatch, WriteOptions};
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

/// The keyspace `--keyspace` names (the default keyspace without it). `create`: made if
/// missing (the writers `put` and `import`); otherwise a missing keyspace is "not found"
/// (exit 1), like a missing key.
pub fn keyspace(db: &Db, arg: &KeyspaceArg, create: bool) -> Result<Keyspace> {
    let Some(name) = arg.keyspace.as_deref() else {
        return Ok(db.default_keyspace());
    };
    if create {
        return Ok(db.create_keyspace(name)?);
    }
    match db.keyspace(name) {
        Ok(ks) => Ok(ks),
        Err(sealdb::Error::KeyspaceNotFound(_)) => Err(CliError::not_found(format!(
            "no keyspace {name:?} (`sealdb keyspace list` shows them)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// After reading nothing from the default keyspace (no `--keyspace` given), names the other
/// keyspaces on standard error: data written with `db.create_keyspace(...)` lives there, and
/// an empty result alone does not say so.
fn hint_other_keyspaces(db: &Db, arg: &KeyspaceArg) {
    if arg.keyspace.is_some() {
        return;
    }
    let others: Vec<String> = db
        .keyspace_names()
        .into_iter()
        .filter(|n| n != "default")
        .collect();
    if !others.is_empty() {
        crate::error::warn(format!(
            "the default keyspace is empty; other keyspaces: {} (use --keyspace NAME)",
            others.join(", ")
        ));
    }
}

/// Where `put` takes its value from, by the rule documented on `PutArgs::value`.
#[derive(Debug, PartialEq, Eq)]
enum ValueSource<'a> {
    /// The argument itself (after dropping the first `@` of `@@...`).
    Inline(&'a str),
    /// Standard input (`-`).
    Stdin,
    /// A file (`@FILE`).
    File(&'a str),
}

fn value_source(value: &str, literal: bool) -> ValueSource<'_> {
    if literal {
        return ValueSource::Inline(value);
    }
    if value == "-" {
        return ValueSource::Stdin;
    }
    match value.strip_prefix('@') {
        Some(rest) if rest.starts_with('@') => ValueSource::Inline(rest),
        Some(path) => ValueSource::File(path),
        None => ValueSource::Inline(value),
    }
}

/// The value of `put`: inline, from standard input or from a file; read bytes are the value
/// as they are (with `--hex`, hexadecimal text, surrounding whitespace ignored).
fn put_value(a: &PutArgs, enc: Encoding) -> Result<Vec<u8>> {
    let (bytes, what) = match value_source(&a.value, a.literal) {
        ValueSource::Inline(s) => return enc.decode_arg(s, "value"),
        ValueSource::Stdin => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::io("reading the value from standard input", e))?;
            (buf, "standard input".to_string())
        }
        ValueSource::File("") => {
            return Err(CliError::other(
                "value \"@\" names no file: write @FILE to read FILE, @@... for a value \
                 starting with @, or use --literal",
            ));
        }
        ValueSource::File(path) => {
            let buf = std::fs::read(path)
                .map_err(|e| CliError::io(format!("reading the value from {path}"), e))?;
            (buf, path.to_string())
        }
    };
    match enc {
        Encoding::Text => Ok(bytes),
        Encoding::Hex => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| sealdb_crypto::hex::decode(s.trim()))
            .ok_or_else(|| {
                CliError::other(format!("the value read from {what} is not hexadecimal"))
            }),
    }
}

/// `put KEY VALUE|-|@FILE [--sync] [--hex] [--literal] [--keyspace NAME]`: silent on success
/// in text mode.
pub fn put(ctx: &mut Ctx, a: &PutArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let key = enc.decode_arg(&a.key, "key")?;
    let value = put_value(a, enc)?;
    let db = ctx.open(Create::IfMissing)?;
    keyspace(&db, &a.keyspace, true)?.put_opt(&key, &value, write_opts(a.sync))?;
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
    let ks = keyspace(&db, &a.keyspace, false)?;
    let Some(value) = ks.get(&key)? else {
        if ctx.out.is_json() {
            let k = enc.json_value(&key);
            ctx.out.json_line(&json!({"key": k, "found": false}))?;
        }
        return Err(CliError::not_found(format!(
            "key not found: {}",
            display_key(&key)
        )));
    };
    if ctx.out.is_json() {
        let v = json!({
            "key": enc.json_value(&key),
            "value": enc.json_value(&value),
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
    keyspace(&db, &a.keyspace, false)?.delete_opt(&key, write_opts(a.sync))?;
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
fn tsv_line(enc: Encoding, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
    line.clear();
    enc.push_tsv_field(line, key);
    line.push(b'\t');
    enc.push_tsv_field(line, value);
    line.push(b'\n');
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
    let ks = keyspace(&db, &a.keyspace, false)?;
    let Some((lo, hi)) = scan_bounds(prefix.as_deref(), from.as_deref(), to.as_deref()) else {
        return Ok(());
    };
    let iter = ks.range((lo, hi))?;
    let limit = a.limit.unwrap_or(u64::MAX);
    let iter: Pairs = if a.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    let mut line = Vec::new();
    let mut printed = 0u64;
    for item in iter.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        printed += 1;
        let (k, v) = item?;
        if ctx.out.is_json() {
            let obj = json!({
                "key": enc.json_value(&k),
                "value": enc.json_value(&v),
            });
            ctx.out.json_line(&obj)?;
        } else {
            tsv_line(enc, &k, &v, &mut line);
            ctx.out.raw(&line)?;
        }
    }
    let unbounded = prefix.is_none() && from.is_none() && to.is_none();
    if printed == 0 && unbounded && ks.approximate_len() == 0 {
        hint_other_keyspaces(&db, &a.keyspace);
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
            "more than one TAB (a TAB inside a value is written \\t)",
        ));
    }
    let syntax = match enc {
        Encoding::Text => "a valid escaped field (a backslash starts \\t \\n \\r \\\\ or \\xHH)",
        Encoding::Hex => "hexadecimal",
    };
    let key = enc
        .decode_field(k)
        .ok_or_else(|| bad(&format!("the key is not {syntax}")))?;
    let value = enc
        .decode_field(v)
        .ok_or_else(|| bad(&format!("the value is not {syntax}")))?;
    Ok((key, value))
}

/// `import FILE|- [--hex] [--batch N]`: writes in atomic batches, syncs once at the end.
pub fn import(ctx: &mut Ctx, a: &ImportArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let from_stdin = a.file.as_os_str() == "-";
    // A file's size gives the bar its length; standard input gets a spinner.
    let (source, pb): (Box<dyn Read>, _) = if from_stdin {
        let pb = crate::progress::spinner("import", "pairs", ctx.out.is_json());
        (Box::new(std::io::stdin().lock()), pb)
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| CliError::io(format!("opening {}", a.file.display()), e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let pb = crate::progress::bytes_bar(len, "import", ctx.out.is_json());
        (Box::new(f), pb)
    };
    let label = if from_stdin {
        "standard input".to_string()
    } else {
        a.file.display().to_string()
    };
    let mut reader = BufReader::with_capacity(1 << 16, source);
    let db = ctx.open(Create::IfMissing)?;
    let ks = keyspace(&db, &a.keyspace, true)?;
    let mut batch = WriteBatch::new();
    let mut line = Vec::new();
    let (mut n, mut imported, mut bytes_read) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::io(format!("reading {label}"), e))?;
        if read == 0 {
            break;
        }
        n += 1;
        bytes_read += read as u64;
        if from_stdin {
            pb.set_position(imported + batch.len() as u64);
        } else {
            pb.set_position(bytes_read);
        }
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
    pb.finish_and_clear();
    ctx.out.emit(
        || format!("imported {imported} pairs from {label}"),
        || json!({"op": "import", "imported": imported, "source": label}),
    )
}

/// Writes every pair of `db` as tab-separated lines to `w`; returns how many. `on_err` names
/// the destination in write errors.
fn write_pairs(
    ks: &Keyspace,
    enc: Encoding,
    w: &mut dyn Write,
    on_err: &dyn Fn(std::io::Error) -> CliError,
    json: bool,
) -> Result<u64> {
    // The estimate is the bar's length: close enough for an ETA, and it costs no table read.
    let pb = crate::progress::bar(ks.approximate_len(), "export", json);
    let mut line = Vec::new();
    let mut n = 0u64;
    for item in ks.iter()? {
        let (k, v) = item?;
        tsv_line(enc, &k, &v, &mut line);
        w.write_all(&line).map_err(on_err)?;
        n += 1;
        if n.is_multiple_of(1024) {
            pb.set_position(n);
        }
    }
    pb.finish_and_clear();
    Ok(n)
}

/// `export [FILE|-] [--hex]`: one consistent snapshot, in key order. A file is written under
/// a temporary name (mode 0600: it holds the data in clear) and renamed only on success, so a
/// refused or failed export leaves no partial file.
pub fn export(ctx: &mut Ctx, a: &ExportArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let db = ctx.open(Create::ReadOnly)?;
    let ks = keyspace(&db, &a.keyspace, false)?;
    let json = ctx.out.is_json();
    let target = a.file.as_deref().filter(|p| p.as_os_str() != "-");
    let Some(path) = target else {
        // Straight to standard output; the data is the output, so no summary line.
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        let n = write_pairs(&ks, enc, &mut w, &CliError::stdout, json)?;
        w.flush().map_err(CliError::stdout)?;
        if n == 0 {
            hint_other_keyspaces(&db, &a.keyspace);
        }
        return Ok(());
    };
    let n = export_to_file(&ks, enc, path, json)?;
    if n == 0 {
        hint_other_keyspaces(&db, &a.keyspace);
    }
    ctx.out.emit(
        || format!("exported {n} pairs to {}", path.display()),
        || json!({"op": "export", "exported": n, "file": path.display().to_string()}),
    )
}

fn export_to_file(ks: &Keyspace, enc: Encoding, path: &Path, json: bool) -> Result<u64> {
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
    let n = write_pairs(ks, enc, &mut w, &|e| CliError::io(what(), e), json)?;
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
        let ok = parse_line(Encoding::Text, b"k\tv a\\\\lue\\t\r", 1);
        assert!(matches!(ok, Ok((k, v)) if k == b"k" && v == b"v a\\lue\t\r"));
        assert!(parse_line(Encoding::Text, b"k\tv a\\lue", 1).is_err());
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
            for (key, value) in [(&b"key"[..], &b"va\\lue"[..]), (b"k\tey\n", b"a\tb\xff\r")] {
                tsv_line(enc, key, value, &mut line);
                line.pop();
                let parsed = parse_line(enc, &line, 1);
                assert!(matches!(parsed, Ok((k, v)) if k == key && v == value));
            }
        }
    }

    #[test]
    fn put_values_come_from_stdin_files_or_the_argument() {
        assert_eq!(value_source("-", false), ValueSource::Stdin);
        assert_eq!(value_source("@v.bin", false), ValueSource::File("v.bin"));
        assert_eq!(value_source("@@home", false), ValueSource::Inline("@home"));
        assert_eq!(value_source("plain", false), ValueSource::Inline("plain"));
        assert_eq!(value_source("-", true), ValueSource::Inline("-"));
        assert_eq!(value_source("@x", true), ValueSource::Inline("@x"));
    }
}
