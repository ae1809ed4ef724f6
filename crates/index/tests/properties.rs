//! Property tests of the index layer against brute-force models: key order against tuple order,
//! query ranges against a filter over every entry, maintenance plans against a rebuild from
//! scratch, and decoders against arbitrary bytes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use sealdb_index::{
    ContinuationToken, ExtractFn, Extractor, IndexDefinition, IndexKind, IndexValue, PartitionSpec,
    Projection, Query, decode_entry_key, entry_key, matches, query_bounds,
};

/// Bytes from a tiny alphabet, so that prefixes, collisions and the escape byte 0x00 are common.
fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0x00u8, 0x01, 0x02, b'a', 0xFE, 0xFF]),
        0..4,
    )
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.5,
            -2.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ]),
        any::<f64>().prop_filter("NaN is never indexed", |f| !f.is_nan()),
    ]
}

fn value() -> impl Strategy<Value = IndexValue> {
    prop_oneof![
        any::<bool>().prop_map(IndexValue::Bool),
        number().prop_map(IndexValue::Number),
        "[ab\u{0}\u{1}é]{0,3}".prop_map(IndexValue::String),
        small_bytes().prop_map(IndexValue::Bytes),
    ]
}

/// A query operand: mostly ordinary values, sometimes NaN (which must match nothing).
fn operand() -> impl Strategy<Value = IndexValue> {
    prop_oneof![10 => value(), 1 => Just(IndexValue::Number(f64::NAN))]
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        operand().prop_map(Query::Eq),
        operand().prop_map(Query::Lt),
        operand().prop_map(Query::Le),
        operand().prop_map(Query::Gt),
        operand().prop_map(Query::Ge),
        (operand(), operand()).prop_map(|(a, b)| Query::Between(a, b)),
        operand().prop_map(Query::BeginsWith),
    ]
}

/// The logical order of values, written without reference to the encoding: by type (bool <
/// number < string < bytes), then by value.
fn logical_cmp(a: &IndexValue, b: &IndexValue) -> Ordering {
    fn rank(v: &IndexValue) -> u8 {
        match v {
            IndexValue::Bool(_) => 0,
            IndexValue::Number(_) => 1,
            IndexValue::String(_) => 2,
            IndexValue::Bytes(_) => 3,
        }
    }
    let zero = |n: f64| if n == 0.0 { 0.0 } else { n };
    match (a, b) {
        (IndexValue::Bool(x), IndexValue::Bool(y)) => x.cmp(y),
        (IndexValue::Number(x), IndexValue::Number(y)) => zero(*x).total_cmp(&zero(*y)),
        (IndexValue::String(x), IndexValue::String(y)) => x.cmp(y),
        (IndexValue::Bytes(x), IndexValue::Bytes(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn same_type(a: &IndexValue, b: &IndexValue) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn is_nan(v: &IndexValue) -> bool {
    matches!(v, IndexValue::Number(n) if n.is_nan())
}

/// What a query means, from the values alone.
fn model_matches(q: &Query, x: &IndexValue) -> bool {
    let cmp_to = |v: &IndexValue| (same_type(x, v) && !is_nan(v)).then(|| logical_cmp(x, v));
    match q {
        Query::Eq(v) => cmp_to(v) == Some(Ordering::Equal),
        Query::Lt(v) => cmp_to(v) == Some(Ordering::Less),
        Query::Le(v) => cmp_to(v).is_some_and(|o| o != Ordering::Greater),
        Query::Gt(v) => cmp_to(v) == Some(Ordering::Greater),
        Query::Ge(v) => cmp_to(v).is_some_and(|o| o != Ordering::Less),
        Query::Between(a, b) => {
            cmp_to(a).is_some_and(|o| o != Ordering::Less)
                && cmp_to(b).is_some_and(|o| o != Ordering::Greater)
        }
        Query::BeginsWith(v) => match (x, v) {
            (IndexValue::String(x), IndexValue::String(p)) => x.starts_with(p.as_str()),
            (IndexValue::Bytes(x), IndexValue::Bytes(p)) => x.starts_with(p),
            _ => false,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Entry keys sort exactly like (partition, value, primary key), including values that are
    /// prefixes of each other and keys full of 0x00 and 0xFF.
    #[test]
    fn entry_key_order_is_tuple_order(
        a in (small_bytes(), value(), small_bytes()),
        b in (small_bytes(), value(), small_bytes()),
    ) {
        let ka = entry_key(&a.0, &a.1, &a.2);
        let kb = entry_key(&b.0, &b.1, &b.2);
        let expected = a.0.cmp(&b.0)
            .then_with(|| logical_cmp(&a.1, &b.1))
            .then_with(|| a.2.cmp(&b.2));
        prop_assert_eq!(ka.cmp(&kb), expected);
    }

    /// Values alone: the encoding's byte order is the logical order.
    #[test]
    fn value_encoding_order_is_logical_order(a in value(), b in value()) {
        prop_assert_eq!(a.encode().cmp(&b.encode()), logical_cmp(&a, &b));
    }

    #[test]
    fn entry_key_round_trips((p, v, k) in (small_bytes(), value(), small_bytes())) {
        let key = entry_key(&p, &v, &k);
        let d = decode_entry_key(&key).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&d.partition, &p);
        prop_assert_eq!(&d.primary_key, &k);
        prop_assert_eq!(&d.value, &v.encode());
        let back = d.index_value().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(logical_cmp(&back, &v), Ordering::Equal);
        let token = ContinuationToken(key.clone());
        let parsed = ContinuationToken::parse(&token.to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, token);
    }

    /// A range scan with `query_bounds` returns exactly the entries a brute-force filter keeps,
    /// and `matches` agrees with that filter on every entry.
    #[test]
    fn query_bounds_equal_brute_force(
        entries in prop::collection::vec((small_bytes(), value(), small_bytes()), 0..48),
        partition in small_bytes(),
        q in query(),
    ) {
        let all: BTreeMap<Vec<u8>, (Vec<u8>, IndexValue)> = entries
            .iter()
            .map(|(p, v, k)| (entry_key(p, v, k), (p.clone(), v.clone())))
            .collect();
        // BTreeMap::range panics on an inverted range: this also checks that the bounds are
        // always well-formed.
        let scanned: Vec<&Vec<u8>> = all.range(query_bounds(&partition, &q)).map(|(k, _)| k).collect();
        let expected: Vec<&Vec<u8>> = all
            .iter()
            .filter(|(_, (p, v))| *p == partition && model_matches(&q, v))
            .map(|(k, _)| k)
            .collect();
        prop_assert_eq!(&scanned, &expected);
        for (key, (_, v)) in &all {
            let d = decode_entry_key(key).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(matches(&q, &d), model_matches(&q, v), "{:?} on {:?}", q, v);
        }
    }

    /// Paging with continuation tokens, forwards and backwards, visits every match exactly once.
    #[test]
    fn paging_visits_each_match_once(
        entries in prop::collection::vec((value(), small_bytes()), 0..32),
        q in query(),
        page in 1usize..5,
        reverse in any::<bool>(),
    ) {
        let all: BTreeSet<Vec<u8>> = entries.iter().map(|(v, k)| entry_key(b"", v, k)).collect();
        let full = query_bounds(b"", &q);
        let expected: Vec<&Vec<u8>> = if reverse {
            all.range(full.clone()).rev().collect()
        } else {
            all.range(full.clone()).collect()
        };
        let mut seen = Vec::new();
        let mut token: Option<ContinuationToken> = None;
        loop {
            let bounds = match &token {
                Some(t) => t.resume_bounds(full.clone(), reverse),
                None => full.clone(),
            };
            let got: Vec<&Vec<u8>> = if reverse {
                all.range(bounds).rev().take(page).collect()
            } else {
                all.range(bounds).take(page).collect()
            };
            let Some(last) = got.last() else { break };
            token = Some(ContinuationToken((*last).clone()));
            seen.extend(got);
        }
        prop_assert_eq!(seen, expected);
    }

    /// Resuming from any token, inside the range or not, keeps exactly the part of the range
    /// beyond it, and the bounds stay well-formed.
    #[test]
    fn resume_bounds_intersect(
        entries in prop::collection::vec((value(), small_bytes()), 0..32),
        q in query(),
        (tv, tk) in (value(), small_bytes()),
        reverse in any::<bool>(),
    ) {
        let all: BTreeSet<Vec<u8>> = entries.iter().map(|(v, k)| entry_key(b"", v, k)).collect();
        let full = query_bounds(b"", &q);
        let token = ContinuationToken(entry_key(b"", &tv, &tk));
        let got: Vec<&Vec<u8>> = all.range(token.resume_bounds(full.clone(), reverse)).collect();
        let expected: Vec<&Vec<u8>> = all
            .range(full)
            .filter(|k| if reverse { **k < token.0 } else { **k > token.0 })
            .collect();
        prop_assert_eq!(got, expected);
    }
}

/// A JSON item for maintenance tests: the indexed field `t` in every shape an extractor meets,
/// projected fields, and values that are not JSON at all.
fn item() -> impl Strategy<Value = Vec<u8>> {
    let scalar = prop_oneof![
        "[ab]{0,2}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![0.0, -0.0, 1.0, 1.5]).prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let t = prop_oneof![
        scalar.clone(),
        prop::collection::vec(scalar.clone(), 0..4).prop_map(serde_json::Value::from),
        Just(serde_json::json!({"nested": 1})),
    ];
    let object = (
        prop::option::of(t),
        prop::option::of(scalar.clone()),
        prop::option::of(scalar),
    )
        .prop_map(|(t, p, q)| {
            let mut m = serde_json::Map::new();
            for (name, v) in [("t", t), ("p", p), ("q", q)] {
                if let Some(v) = v {
                    m.insert(name.to_owned(), v);
                }
            }
            serde_json::to_vec(&serde_json::Value::Object(m)).unwrap_or_default()
        });
    prop_oneof![
        8 => object,
        1 => Just(b"not json".to_vec()),
        1 => Just(b"[1,2]".to_vec()),
    ]
}

fn index_def() -> impl Strategy<Value = IndexDefinition> {
    let kind = prop_oneof![
        Just(IndexKind::Global),
        Just(IndexKind::Local(PartitionSpec::Delimiter(b'#'))),
        Just(IndexKind::Local(PartitionSpec::FixedPrefix(2))),
    ];
    let projection = prop_oneof![
        Just(Projection::KeysOnly),
        Just(Projection::All),
        Just(Projection::Include(vec!["p".into(), "t".into()])),
    ];
    let custom: ExtractFn = Arc::new(|key: &[u8], value: &[u8]| {
        // Deterministic and multi-valued, with duplicates: the first byte of the value, the key,
        // and the key again.
        let mut out: Vec<Vec<u8>> = value.first().map(|b| vec![vec![*b]]).unwrap_or_default();
        out.push(key.to_vec());
        out.push(key.to_vec());
        out
    });
    let extractor = prop_oneof![
        3 => Just(Extractor::JsonPointer("/t".into())),
        1 => Just(Extractor::Custom(custom)),
    ];
    (kind, extractor, projection).prop_map(|(kind, extractor, projection)| IndexDefinition {
        name: "idx".into(),
        keyspace: "base".into(),
        kind,
        extractor,
        projection,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Applying `plan` to an index holding the old item's entries (and other items' entries)
    /// leaves exactly what a rebuild from the new item gives, without touching other items.
    #[test]
    fn plan_matches_rebuild(
        def in index_def(),
        key in prop::sample::select(vec!["u1#a", "u1#b", "u2", "#x", "", "k\0#"]),
        other_items in prop::collection::vec(item(), 0..3),
        old in prop::option::of(item()),
        new in prop::option::of(item()),
    ) {
        let key = key.as_bytes();
        let mut index = BTreeMap::new();
        for (i, other) in other_items.iter().enumerate() {
            index.extend(def.entries(format!("other{i}#z").as_bytes(), other));
        }
        let untouched = index.clone();
        if let Some(old) = &old {
            index.extend(def.entries(key, old));
        }
        let plan = def.plan(key, old.as_deref(), new.as_deref());
        let deleted: BTreeSet<_> = plan.deletes.iter().collect();
        for (k, _) in &plan.puts {
            prop_assert!(!deleted.contains(k), "a key is both deleted and put");
        }
        for k in &plan.deletes {
            prop_assert!(index.remove(k).is_some(), "plan deletes an entry that does not exist");
        }
        for (k, v) in &plan.puts {
            let previous = index.insert(k.clone(), v.clone());
            prop_assert_ne!(previous.as_ref(), Some(v), "redundant put");
        }

        // The rebuild, written from extract / partition / entry_value rather than `entries`.
        let mut rebuilt = untouched;
        if let (Some(new), Some(partition)) = (&new, def.partition(key)) {
            let projected = def.entry_value(new);
            for v in def.extract(key, new) {
                rebuilt.insert(entry_key(partition, &v, key), projected.clone());
            }
        }
        prop_assert_eq!(index, rebuilt);
    }

    /// Every entry an item gets is for a value the extractor found, in the item's partition.
    #[test]
    fn entries_decode_to_their_item(def in index_def(), value in item()) {
        let key = b"u1#a";
        for k in def.entries(key, &value).keys() {
            let d = decode_entry_key(k).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Some(d.partition.as_slice()), def.partition(key));
            prop_assert_eq!(d.primary_key.as_slice(), key);
            let v = d.index_value().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(def.extract(key, &value).contains(&v));
        }
    }
}

fn valid_definition() -> impl Strategy<Value = IndexDefinition> {
    let kind = prop_oneof![
        Just(IndexKind::Global),
        any::<u8>().prop_map(|b| IndexKind::Local(PartitionSpec::Delimiter(b))),
        (1usize..=usize::MAX).prop_map(|n| IndexKind::Local(PartitionSpec::FixedPrefix(n))),
    ];
    let extractor = prop_oneof![
        "(/([a-z0-9 ]|~0|~1){0,3}){0,3}".prop_map(Extractor::JsonPointer),
        Just(Extractor::Custom(Arc::new(|_: &[u8], _: &[u8]| Vec::new()))),
    ];
    let projection = prop_oneof![
        Just(Projection::KeysOnly),
        Just(Projection::All),
        prop::collection::btree_set("[a-z\"\\\\ é]{1,4}", 1..4)
            .prop_map(|f| Projection::Include(f.into_iter().collect())),
    ];
    (
        "[A-Za-z0-9._-]{1,128}",
        "\\PC{1,20}",
        kind,
        extractor,
        projection,
    )
        .prop_map(
            |(name, keyspace, kind, extractor, projection)| IndexDefinition {
                name,
                keyspace,
                kind,
                extractor,
                projection,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn definition_round_trips(def in valid_definition()) {
        prop_assert!(def.validate().is_ok());
        let bytes = def.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = IndexDefinition::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &def.to_persisted());
        let custom = back.needs_custom_extractor()
            .then(|| Arc::new(|_: &[u8], _: &[u8]| Vec::new()) as ExtractFn);
        let live = back.into_definition(custom).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(live.to_persisted(), def.to_persisted());
    }

    /// Decoders of stored bytes never panic, on anything.
    #[test]
    fn decoders_are_total(bytes in prop::collection::vec(any::<u8>(), 0..64), text in "\\PC{0,64}") {
        let _ = decode_entry_key(&bytes);
        let _ = IndexValue::decode(&bytes);
        let _ = IndexDefinition::decode(&bytes);
        let _ = IndexDefinition::decode(text.as_bytes());
        let _ = ContinuationToken::parse(&text);
        let _ = IndexValue::parse_cli(&text);
    }

    /// Near-valid entry keys (a valid key with bytes flipped, inserted or cut) never panic the
    /// decoder, and whatever decodes is canonical: rebuilding the key from its parts gives the
    /// same bytes.
    #[test]
    fn mutated_entry_keys_decode_canonically_or_fail(
        (p, v, k) in (small_bytes(), value(), small_bytes()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let mut key = entry_key(&p, &v, &k);
        for (at, op, byte) in edits {
            let i = if key.is_empty() { 0 } else { at.index(key.len()) };
            match op {
                0 => if let Some(b) = key.get_mut(i) { *b = byte },
                1 => key.insert(i, byte),
                _ => key.truncate(i),
            }
        }
        if let Ok(d) = decode_entry_key(&key) {
            let value = d.index_value().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(entry_key(&d.partition, &value, &d.primary_key), key);
        }
    }

    /// Near-valid definitions (one byte of a valid encoding changed) never panic the decoder,
    /// and whatever decodes is valid and re-encodes.
    #[test]
    fn mutated_definitions_never_panic(def in valid_definition(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = def.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = at.index(bytes.len());
        if let Some(b) = bytes.get_mut(i) { *b = byte; }
        if let Ok(p) = IndexDefinition::decode(&bytes) {
            prop_assert!(p.encode().is_ok());
        }
    }
}
