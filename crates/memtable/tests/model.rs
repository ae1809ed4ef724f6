//! Model check: a memtable against a `BTreeMap` keyed the same way, over random inserts,
//! point reads at random snapshots, and random mixes of forward, backward and seeking
//! iteration within random bounds.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use proptest::prelude::*;
use sealdb_memtable::{ENTRY_OVERHEAD, Entry, Memtable, SeqNo, ValueKind};

type Model = BTreeMap<(Vec<u8>, Reverse<SeqNo>), (ValueKind, Vec<u8>)>;

#[derive(Debug, Clone)]
struct Insert {
    key: Vec<u8>,
    seq: SeqNo,
    kind: ValueKind,
    value: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Step {
    Next,
    NextBack,
    Seek(Vec<u8>),
    SeekBack(Vec<u8>),
}

/// A tiny alphabet and short keys, so keys collide, share prefixes and include the empty key.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..3, 0..3)
}

/// Mostly small seqs, so that the same `(key, seq)` recurs (a replace), plus the extremes.
fn seq() -> impl Strategy<Value = SeqNo> {
    prop_oneof![8 => 0..40u64, 1 => Just(0), 1 => Just(SeqNo::MAX)]
}

fn insert() -> impl Strategy<Value = Insert> {
    (
        key(),
        seq(),
        prop_oneof![Just(ValueKind::Put), Just(ValueKind::Delete)],
        prop::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(key, seq, kind, value)| Insert {
            key,
            seq,
            kind,
            value,
        })
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        2 => key().prop_map(Bound::Included),
        2 => key().prop_map(Bound::Excluded),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Next),
        4 => Just(Step::NextBack),
        1 => key().prop_map(Step::Seek),
        1 => key().prop_map(Step::SeekBack),
    ]
}

/// Fills a memtable and the model with the same inserts, checking the counters as it goes.
fn build(inserts: &[Insert]) -> Result<(Arc<Memtable>, Model), TestCaseError> {
    let table = Arc::new(Memtable::new(9));
    let mut model = Model::new();
    let mut bytes = 0;
    for op in inserts {
        table
            .insert(&op.key, op.seq, op.kind, &op.value)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let value = match op.kind {
            ValueKind::Put => op.value.clone(),
            ValueKind::Delete => Vec::new(),
        };
        bytes += op.key.len() + value.len() + ENTRY_OVERHEAD;
        model.insert((op.key.clone(), Reverse(op.seq)), (op.kind, value));
    }
    prop_assert_eq!(table.len(), model.len());
    prop_assert_eq!(table.is_empty(), model.is_empty());
    prop_assert_eq!(table.approximate_bytes(), bytes);
    prop_assert_eq!(table.min_seq(), inserts.iter().map(|op| op.seq).min());
    prop_assert_eq!(table.max_seq(), inserts.iter().map(|op| op.seq).max());
    Ok((table, model))
}

fn model_entries(model: &Model, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> Vec<Entry> {
    model
        .iter()
        .filter(|((key, _), _)| (lower.as_ref(), upper.as_ref()).contains(key))
        .map(|((key, Reverse(seq)), (kind, value))| Entry {
            key: key.clone(),
            seq: *seq,
            kind: *kind,
            value: value.clone(),
        })
        .collect()
}

/// What `Memtable::get` must answer, read straight off the model.
fn model_get(model: &Model, key: &[u8], snapshot: SeqNo) -> Option<(SeqNo, Option<Vec<u8>>)> {
    let from = (key.to_vec(), Reverse(snapshot));
    let to = (key.to_vec(), Reverse(0));
    model
        .range(from..=to)
        .next()
        .map(|((_, Reverse(seq)), (kind, value))| {
            (*seq, (*kind == ValueKind::Put).then(|| value.clone()))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn get_matches_model_at_every_snapshot(
        inserts in prop::collection::vec(insert(), 0..60),
        probes in prop::collection::vec((key(), seq()), 1..40),
    ) {
        let (table, model) = build(&inserts)?;
        for (key, snapshot) in probes {
            prop_assert_eq!(table.get(&key, snapshot), model_get(&model, &key, snapshot));
        }
        // Every version is reachable at exactly its own snapshot and just above it.
        for (key, Reverse(seq)) in model.keys() {
            prop_assert_eq!(table.get(key, *seq), model_get(&model, key, *seq));
            prop_assert_eq!(
                table.get(key, seq.saturating_add(1)),
                model_get(&model, key, seq.saturating_add(1))
            );
        }
    }

    #[test]
    fn full_scans_match_model_in_both_directions(
        inserts in prop::collection::vec(insert(), 0..150),
        lower in bound(),
        upper in bound(),
    ) {
        let (table, model) = build(&inserts)?;
        let want = model_entries(&model, &lower, &upper);
        let forward: Vec<Entry> = table.iter(lower.clone(), upper.clone()).collect();
        prop_assert_eq!(&forward, &want);
        let mut backward: Vec<Entry> = table.iter(lower, upper).rev().collect();
        backward.reverse();
        prop_assert_eq!(&backward, &want);
    }

    #[test]
    fn mixed_iteration_and_seeks_match_model(
        inserts in prop::collection::vec(insert(), 0..150),
        lower in bound(),
        upper in bound(),
        steps in prop::collection::vec(step(), 0..120),
    ) {
        let (table, model) = build(&inserts)?;
        let entries = model_entries(&model, &lower, &upper);
        let mut iter = table.iter(lower, upper);
        // The model cursor: `front..back` is what is left to yield.
        let (mut front, mut back) = (0, entries.len());
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Next => {
                    let want = (front < back).then(|| {
                        front += 1;
                        entries[front - 1].clone()
                    });
                    prop_assert_eq!(iter.next(), want, "step {} {:?}", i, step);
                }
                Step::NextBack => {
                    let want = (front < back).then(|| {
                        back -= 1;
                        entries[back].clone()
                    });
                    prop_assert_eq!(iter.next_back(), want, "step {} {:?}", i, step);
                }
                Step::Seek(key) => {
                    iter.seek(key);
                    front = entries.partition_point(|e| e.key < *key);
                }
                Step::SeekBack(key) => {
                    iter.seek_back(key);
                    back = entries.partition_point(|e| e.key <= *key);
                }
            }
        }
        // Draining both ways from wherever the steps left off must give the model's remainder.
        let rest: Vec<Entry> = iter.collect();
        let want = if front < back { entries[front..back].to_vec() } else { Vec::new() };
        prop_assert_eq!(rest, want);
    }
}
