//! `index`: secondary indexes over a JSON pointer of a keyspace's values — create (with an
//! online backfill), list, drop and query (exact, range, prefix and comparisons, paged with
//! continuation tokens).

use super::{Create, Ctx};
use crate::cli::{IndexCommand, IndexCondition, IndexCreateArgs, IndexDropArgs, IndexQueryArgs};
use crate::error::{CliError, Result};
use crate::output::{Encoding, count, duration};
use sealdb::{
    ContinuationToken, Extractor, IndexDefinition, IndexInfo, IndexKind, IndexQuery, IndexValue,
    PartitionSpec, Projection, Query,
};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Instant;

/// Runs one `index` subcommand.
pub fn run(ctx: &mut Ctx, c: &IndexCommand) -> Result<()> {
    match c {
        IndexCommand::Create(a) => create(ctx, a),
        IndexCommand::List => list(ctx),
        IndexCommand::Drop(a) => drop_index(ctx, a),
        IndexCommand::Query(a) => query(ctx, a),
    }
}

/// Reads a partition delimiter: one ASCII character, or `0xNN` for any byte.
fn parse_delimiter(s: &str) -> Result<u8> {
    if let [b] = s.as_bytes()
        && b.is_ascii()
    {
        return Ok(*b);
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
        && hex.len() == 2
        && let Ok(b) = u8::from_str_radix(hex, 16)
    {
        return Ok(b);
    }
    Err(CliError::other(format!(
        "--partition-delimiter {s:?}: expected one ASCII character or 0xNN"
    )))
}

/// Global or local, from `--global`, `--local` and the partition options.
fn kind(a: &IndexCreateArgs) -> Result<IndexKind> {
    let spec = match (a.partition_prefix, &a.partition_delimiter) {
        (Some(n), None) => Some(PartitionSpec::FixedPrefix(n)),
        (None, Some(d)) => Some(PartitionSpec::Delimiter(parse_delimiter(d)?)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(CliError::other(
                "give one of --partition-prefix and --partition-delimiter",
            ));
        }
    };
    match (a.local, spec) {
        (_, Some(spec)) => Ok(IndexKind::Local(spec)),
        (true, None) => Err(CliError::other(
            "a local index needs --partition-prefix N or --partition-delimiter C",
        )),
        (false, None) => Ok(IndexKind::Global),
    }
}

/// `global`, or `local` with its partition rule.
fn kind_text(k: &IndexKind) -> String {
    match k {
        IndexKind::Global => "global".to_string(),
        IndexKind::Local(PartitionSpec::FixedPrefix(n)) => format!("local:prefix={n}"),
        IndexKind::Local(PartitionSpec::Delimiter(d)) if d.is_ascii_graphic() => {
            format!("local:delimiter={}", char::from(*d))
        }
        IndexKind::Local(PartitionSpec::Delimiter(d)) => format!("local:delimiter=0x{d:02x}"),
    }
}

/// `keys`, `all` or `include:F1,F2` (as `--projection` reads it).
fn projection_text(p: &Projection) -> String {
    match p {
        Projection::KeysOnly => "keys".to_string(),
        Projection::All => "all".to_string(),
        Projection::Include(f) => format!("include:{}", f.join(",")),
    }
}

/// `index create NAME --keyspace KS --json-pointer P [--global | --local ...] [--projection]`.
fn create(ctx: &mut Ctx, a: &IndexCreateArgs) -> Result<()> {
    let def = IndexDefinition {
        name: a.name.clone(),
        keyspace: a.keyspace.clone(),
        kind: kind(a)?,
        extractor: Extractor::JsonPointer(a.pointer.clone()),
        projection: a.projection.clone(),
    };
    def.validate().map_err(|e| CliError::other(e.to_string()))?;
    let db = ctx.open(Create::IfMissing)?;
    let pb = crate::progress::spinner("index", "items", ctx.out.is_json());
    let t = Instant::now();
    let mut items = 0u64;
    let result = db.create_index(def.clone(), &mut |done| {
        items = done;
        pb.set_position(done);
    });
    pb.finish_and_clear();
    result?;
    let elapsed = t.elapsed();
    ctx.out.emit(
        || {
            format!(
                "created {} index {} on keyspace {} (pointer {:?}, projection {}): {} items \
                 scanned in {}",
                kind_text(&def.kind),
                def.name,
                def.keyspace,
                a.pointer,
                projection_text(&def.projection),
                count(items),
                duration(elapsed)
            )
        },
        || {
            json!({
                "op": "index-create",
                "name": def.name,
                "keyspace": def.keyspace,
                "kind": kind_text(&def.kind),
                "json_pointer": a.pointer,
                "projection": projection_text(&def.projection),
                "items_scanned": items,
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )
}

fn info_json(i: &IndexInfo) -> Value {
    json!({
        "name": i.name,
        "keyspace": i.keyspace,
        "kind": kind_text(&i.kind),
        "json_pointer": i.json_pointer,
        "projection": projection_text(&i.projection),
        "ready": i.ready,
    })
}

fn info_line(i: &IndexInfo) -> String {
    format!(
        "{:<24} keyspace {:<12} {:<20} pointer {:<20} projection {:<16} {}",
        i.name,
        i.keyspace,
        kind_text(&i.kind),
        i.json_pointer
            .as_deref()
            .map_or_else(|| "(custom extractor)".to_string(), |p| format!("{p:?}")),
        projection_text(&i.projection),
        if i.ready { "ready" } else { "building" }
    )
}

/// `index list`.
fn list(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    let indexes = db.list_indexes();
    if indexes.is_empty() && !ctx.out.is_json() {
        return ctx.out.text("no indexes");
    }
    for i in &indexes {
        ctx.out.emit(|| info_line(i), || info_json(i))?;
    }
    Ok(())
}

/// `index drop NAME`.
fn drop_index(ctx: &mut Ctx, a: &IndexDropArgs) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    db.drop_index(&a.name)?;
    ctx.out.emit(
        || format!("dropped index {}", a.name),
        || json!({"op": "index-drop", "name": a.name}),
    )
}

/// The query the condition options describe.
fn condition(c: &IndexCondition) -> Result<Query> {
    let v = |s: &String| IndexValue::parse_cli(s);
    if let Some(s) = &c.eq {
        return Ok(Query::Eq(v(s)));
    }
    if let Some(r) = &c.range {
        return match r.as_slice() {
            [a, b] => Ok(Query::Between(v(a), v(b))),
            _ => Err(CliError::other("--range takes two values: A B")),
        };
    }
    if let Some(s) = &c.begins_with {
        // A prefix is always text: `--begins-with 12` means strings starting with "12".
        return Ok(Query::BeginsWith(match v(s) {
            IndexValue::String(t) => IndexValue::String(t),
            _ => IndexValue::String(s.clone()),
        }));
    }
    type Make = fn(IndexValue) -> Query;
    let cmp: [(&Option<String>, Make); 4] = [
        (&c.lt, Query::Lt),
        (&c.le, Query::Le),
        (&c.gt, Query::Gt),
        (&c.ge, Query::Ge),
    ];
    for (opt, make) in cmp {
        if let Some(s) = opt {
            return Ok(make(v(s)));
        }
    }
    Err(CliError::other(
        "give one condition: --eq, --range, --begins-with, --lt, --le, --gt or --ge",
    ))
}

/// An index value as JSON: booleans, numbers and strings as themselves, bytes as {"hex"}.
pub fn index_value_json(v: &IndexValue) -> Value {
    match v {
        IndexValue::Bool(b) => json!(b),
        // Integers print as integers (`26`, not `26.0`) while exactly representable.
        IndexValue::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            json!(*n as i64)
        }
        IndexValue::Number(n) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        IndexValue::String(s) => json!(s),
        IndexValue::Bytes(b) => json!({"hex": sealdb_crypto::hex::encode(b)}),
    }
}

/// `index query NAME <condition> [--partition PK] [--limit N] [--reverse] [--after TOKEN]
/// [--fetch] [--hex]`.
fn query(ctx: &mut Ctx, a: &IndexQueryArgs) -> Result<()> {
    let enc = Encoding::from_flag(a.encoding.hex);
    let q = condition(&a.condition)?;
    let partition = a
        .partition
        .as_deref()
        .map(|p| enc.decode_arg(p, "--partition"))
        .transpose()?;
    let after = a
        .after
        .as_deref()
        .map(|t| {
            ContinuationToken::parse(t.trim()).map_err(|e| CliError::other(format!("--after: {e}")))
        })
        .transpose()?;
    let limit = match a.limit {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => 0,
    };
    let db = ctx.open(Create::ReadOnly)?;
    let page = db.query_index(
        &a.name,
        &IndexQuery {
            query: q,
            partition,
            limit,
            reverse: a.reverse,
            after,
            fetch_items: a.fetch,
        },
    )?;
    let mut line = Vec::new();
    for hit in &page.hits {
        let pk = &hit.primary_key;
        if ctx.out.is_json() {
            ctx.out.json_line(&json!({
                "primary_key": enc.json_value(pk),
                "value": index_value_json(&hit.value),
                "item": enc.json_value(&hit.item),
            }))?;
        } else {
            line.clear();
            enc.push_tsv_field(&mut line, pk);
            line.push(b'\t');
            enc.push_tsv_field(&mut line, &hit.item);
            line.push(b'\n');
            ctx.out.raw(&line)?;
        }
    }
    if let Some(next) = &page.next {
        if ctx.out.is_json() {
            ctx.out.json_line(&json!({"next": next.to_string()}))?;
        } else {
            // After the results, so a reader of both streams sees it last.
            ctx.out.flush()?;
            let _ = writeln!(std::io::stderr(), "next: {next}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(f: impl FnOnce(&mut IndexCondition)) -> IndexCondition {
        let mut c = IndexCondition {
            eq: None,
            range: None,
            begins_with: None,
            lt: None,
            le: None,
            gt: None,
            ge: None,
        };
        f(&mut c);
        c
    }

    #[test]
    fn conditions_parse_values_as_json_literals_or_text() {
        let q = condition(&cond(|c| c.eq = Some("42".into())));
        assert!(matches!(q, Ok(Query::Eq(IndexValue::Number(n))) if n == 42.0));
        let q = condition(&cond(|c| c.range = Some(vec!["a".into(), "m".into()])));
        assert!(matches!(
            q,
            Ok(Query::Between(IndexValue::String(_), IndexValue::String(_)))
        ));
        let q = condition(&cond(|c| c.begins_with = Some("12".into())));
        assert!(matches!(q, Ok(Query::BeginsWith(IndexValue::String(s))) if s == "12"));
        let q = condition(&cond(|c| c.ge = Some("true".into())));
        assert!(matches!(q, Ok(Query::Ge(IndexValue::Bool(true)))));
    }

    #[test]
    fn delimiters() {
        assert!(matches!(parse_delimiter("#"), Ok(b'#')));
        assert!(matches!(parse_delimiter("0x00"), Ok(0)));
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("é").is_err());
    }
}
