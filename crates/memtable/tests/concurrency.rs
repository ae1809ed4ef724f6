//! Concurrency: writers insert from several threads while readers scan and look up, and a
//! freeze racing with writers must leave exactly the inserts that reported success.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use sealdb_memtable::{Entry, Frozen, Memtable, SeqNo, ValueKind};

const WRITERS: u64 = 4;
const PER_WRITER: u64 = 4_000;
const KEYS: u64 = 300;

/// Writer `t` owns the seqs congruent to `t` modulo `WRITERS`, so seqs never collide while
/// every key receives versions from every writer.
fn entry_for(writer: u64, i: u64) -> Entry {
    let seq = i * WRITERS + writer;
    let tombstone = seq.is_multiple_of(5);
    Entry {
        key: format!("key{:05}", (i * 7 + writer) % KEYS).into_bytes(),
        seq,
        kind: if tombstone {
            ValueKind::Delete
        } else {
            ValueKind::Put
        },
        value: if tombstone {
            Vec::new()
        } else {
            seq.to_le_bytes().to_vec()
        },
    }
}

/// What a scan must always see, whatever it raced with: strictly increasing internal order
/// and each entry exactly as its writer made it.
fn check_scan(entries: &[Entry]) {
    for pair in entries.windows(2) {
        if let [a, b] = pair {
            assert!(
                (a.key.as_slice(), std::cmp::Reverse(a.seq))
                    < (b.key.as_slice(), std::cmp::Reverse(b.seq)),
                "out of order: {a:?} then {b:?}"
            );
        }
    }
    for e in entries {
        let want = entry_for(e.seq % WRITERS, e.seq / WRITERS);
        assert_eq!(*e, want);
    }
}

#[test]
fn concurrent_inserts_with_concurrent_scans_and_reads() {
    let table = Arc::new(Memtable::new(1));
    let writers_done = AtomicBool::new(false);

    thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let table = &table;
                s.spawn(move || {
                    for i in 0..PER_WRITER {
                        let e = entry_for(t, i);
                        table
                            .insert(&e.key, e.seq, e.kind, &e.value)
                            .expect("memtable is not frozen");
                    }
                })
            })
            .collect();

        let scanner = s.spawn(|| {
            let mut scans = 0_u32;
            // At least one scan even if the writers finish first.
            while scans == 0 || !writers_done.load(Ordering::Acquire) {
                let forward: Vec<Entry> = table.iter(Bound::Unbounded, Bound::Unbounded).collect();
                check_scan(&forward);
                let mut backward: Vec<Entry> = table
                    .iter(Bound::Included(b"key00100".to_vec()), Bound::Unbounded)
                    .rev()
                    .collect();
                backward.reverse();
                check_scan(&backward);
                let mut mixed = table.iter(Bound::Unbounded, Bound::Unbounded);
                let mut front = Vec::new();
                let mut back = Vec::new();
                loop {
                    match (mixed.next(), mixed.next_back()) {
                        (None, None) => break,
                        (f, b) => {
                            front.extend(f);
                            back.extend(b);
                        }
                    }
                }
                back.reverse();
                front.extend(back);
                check_scan(&front);
                scans += 1;
            }
            scans
        });

        let reader = s.spawn(|| {
            let mut probes = 0_u64;
            while probes == 0 || !writers_done.load(Ordering::Acquire) {
                let key = format!("key{:05}", probes % KEYS).into_bytes();
                let snapshot = probes * 13 % (WRITERS * PER_WRITER);
                if let Some((seq, value)) = table.get(&key, snapshot) {
                    assert!(seq <= snapshot);
                    let want = entry_for(seq % WRITERS, seq / WRITERS);
                    assert_eq!(want.key, key);
                    assert_eq!(value, (want.kind == ValueKind::Put).then_some(want.value));
                }
                probes += 1;
            }
        });

        for w in writers {
            w.join().expect("writer panicked");
        }
        writers_done.store(true, Ordering::Release);
        assert!(scanner.join().expect("scanner panicked") > 0);
        reader.join().expect("reader panicked");
    });

    let mut want: Vec<Entry> = (0..WRITERS)
        .flat_map(|t| (0..PER_WRITER).map(move |i| entry_for(t, i)))
        .collect();
    want.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
    let got: Vec<Entry> = table.iter(Bound::Unbounded, Bound::Unbounded).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(table.len(), want.len());
    assert_eq!(table.min_seq(), Some(0));
    assert_eq!(table.max_seq(), Some(WRITERS * PER_WRITER - 1));

    // After the dust settles, every key's newest version at every snapshot is the model's.
    for e in &want {
        let (seq, value) = table.get(&e.key, e.seq).expect("own version is visible");
        assert_eq!(seq, e.seq);
        assert_eq!(value, (e.kind == ValueKind::Put).then(|| e.value.clone()));
    }
}

#[test]
fn freeze_racing_with_writers_keeps_exactly_the_acknowledged_inserts() {
    let table = Arc::new(Memtable::new(2));
    let (len_at_freeze, acked) = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let table = &table;
                s.spawn(move || {
                    let mut acked: Vec<SeqNo> = Vec::new();
                    for i in 0.. {
                        let e = entry_for(t, i);
                        match table.insert(&e.key, e.seq, e.kind, &e.value) {
                            Ok(()) => acked.push(e.seq),
                            Err(Frozen) => break,
                        }
                    }
                    acked
                })
            })
            .collect();

        // Let the writers get going so the freeze lands in the middle of their inserts.
        while table.len() < 2_000 {
            thread::yield_now();
        }
        table.freeze();
        let len_at_freeze = table.len();
        let acked: Vec<SeqNo> = writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer panicked"))
            .collect();
        (len_at_freeze, acked)
    });

    assert!(table.is_frozen());
    // Nothing landed after freeze returned, and every acknowledged insert is there.
    assert_eq!(table.len(), len_at_freeze);
    assert_eq!(table.len(), acked.len());
    assert_eq!(table.min_seq(), acked.iter().copied().min());
    assert_eq!(table.max_seq(), acked.iter().copied().max());
    for seq in acked {
        let e = entry_for(seq % WRITERS, seq / WRITERS);
        assert_eq!(table.get(&e.key, seq).map(|(s, _)| s), Some(seq));
    }
    assert_eq!(
        table.insert(b"late", SeqNo::MAX, ValueKind::Put, b"x"),
        Err(Frozen)
    );
}
