//! Truncating recovery: `RecoveryPlan::truncating(max_seq)` drops every record above the
//! WAL's last sequence number ("phantoms" whose commit groups the WAL lost) at block
//! granularity, wherever the cut falls, never rewrites a recovered file or reuses a file id,
//! leaves a chain the next recovery accepts, and is finished by the next truncating open after
//! a crash at any of its mutations.

mod common;

use common::{dir, open, open_truncating, opts, read_all, rec, segment_files, setup};
use sealdb_crypto::Keyring;
use sealdb_stream::{ChangeRecord, Error, StartAt, StreamLog};
use sealdb_vfs::{CrashFs, FaultKind, FileSystem};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// 700 bytes of groups after the start frame (which grew by 16 bytes when it began to name
// its stream), so that the last three groups fit in one segment.
const SEGMENT: u64 = 716;
const GROUPS: u64 = 24;

/// The stream `build` wrote: its commit groups in order and the segment each went to.
struct Built {
    groups: Vec<Vec<ChangeRecord>>,
    segment_of: Vec<PathBuf>,
    /// Every segment file afterwards, oldest first (the last one was the active segment).
    paths: Vec<PathBuf>,
}

impl Built {
    fn records(&self) -> impl Iterator<Item = &ChangeRecord> {
        self.groups.iter().flatten()
    }

    fn count(&self) -> u64 {
        self.records().count() as u64
    }

    fn upto(&self, max_seq: u64) -> Vec<ChangeRecord> {
        self.records()
            .filter(|r| r.seq <= max_seq)
            .cloned()
            .collect()
    }

    fn last_seq(&self) -> u64 {
        self.records().last().map_or(0, |r| r.seq)
    }

    /// The segments a truncating open keeps: those holding a record at or below `max_seq`.
    fn kept_segments(&self, max_seq: u64) -> BTreeSet<PathBuf> {
        self.groups
            .iter()
            .zip(&self.segment_of)
            .filter(|(g, _)| g.first().is_some_and(|r| r.seq <= max_seq))
            .map(|(_, p)| p.clone())
            .collect()
    }
}

fn build(fs: &CrashFs, keyring: &Keyring) -> Built {
    build_with(fs, keyring, false)
}

/// Commit groups of 1 to 3 records, some synced, with gaps in the sequence numbers between
/// some groups, across several segments; everything synced at the end. With `finished_tail`,
/// a crash then hits a rollover between the old segment's synced end frame and the new
/// segment's creation, so the last segment on disk is a finished one.
fn build_with(fs: &CrashFs, keyring: &Keyring, finished_tail: bool) -> Built {
    let (log, _) = open(fs, keyring, opts(SEGMENT)).expect("open");
    let (mut groups, mut segment_of) = (Vec::new(), Vec::new());
    let mut seq = 1;
    // At least GROUPS groups, and at least three in the active segment.
    let mut g = 0;
    while g < GROUPS
        || segment_of
            .iter()
            .rev()
            .take(3)
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    {
        let n = g % 3 + 1;
        let group: Vec<ChangeRecord> = (0..n).map(|k| rec(seq + k, 1000 + g)).collect();
        seq += n + g % 2;
        log.append(&group, g % 5 == 0).expect("append");
        segment_of.push(log.segment_paths().last().cloned().expect("active"));
        groups.push(group);
        g += 1;
    }
    log.sync().expect("sync");
    let paths = log.segment_paths();
    assert!(paths.len() >= 5, "only {} segments", paths.len());
    if finished_tail {
        let last = paths.last().expect("active");
        let len = fs.contents(last).expect("contents").len();
        // Rollover: finish + sync (allowed), then the new segment's sync (fails).
        fs.fail_after(1, FaultKind::SyncOnly);
        let big: Vec<ChangeRecord> = (0..8).map(|k| rec(seq + k, 9999)).collect();
        assert!(log.append(&big, true).is_err());
        drop(log);
        fs.crash();
        assert_eq!(segment_files(fs).len(), paths.len(), "no new segment");
        assert!(
            fs.contents(last).expect("contents").len() > len,
            "the end frame is durable"
        );
    }
    Built {
        groups,
        segment_of,
        paths,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cut {
    /// Below every record (`max_seq = 0`).
    Below,
    /// Between two groups of a closed segment.
    InEarlier,
    /// Between the last group of one segment and the first of the next.
    AtBoundary,
    /// Between two groups of the active segment.
    InActive,
    /// At or above the last record.
    Above,
}

/// Every cut point of a built stream: after each group (and inside the gap after it, which
/// cuts at the same place), plus below and above everything.
fn cut_points(b: &Built) -> Vec<(u64, Cut)> {
    let mut out = vec![(0, Cut::Below)];
    let active = b.paths.last();
    for (g, pair) in b.groups.windows(2).enumerate() {
        let (Some(this), Some(next)) = (pair[0].last(), pair[1].first()) else {
            panic!("empty group");
        };
        let kind = if b.segment_of[g] != b.segment_of[g + 1] {
            Cut::AtBoundary
        } else if Some(&b.segment_of[g]) == active {
            Cut::InActive
        } else {
            Cut::InEarlier
        };
        out.push((this.seq, kind));
        if next.seq > this.seq + 1 {
            out.push((this.seq + 1, kind));
        }
    }
    for max in [b.last_seq(), b.last_seq() + 1, u64::MAX] {
        out.push((max, Cut::Above));
    }
    out
}

fn file_id(fs: &CrashFs, p: &Path) -> [u8; 16] {
    sealdb_crypto::sealed::read_file_header(fs, p)
        .expect("header")
        .file_id
        .0
}

fn snapshot(fs: &CrashFs) -> BTreeMap<PathBuf, Vec<u8>> {
    segment_files(fs).into_iter().collect()
}

/// Every segment file seen so far keeps its id; every new file has an id never seen before.
struct Ids {
    seen: BTreeSet<[u8; 16]>,
    live: BTreeMap<PathBuf, [u8; 16]>,
}

impl Ids {
    fn new(fs: &CrashFs) -> Self {
        let mut ids = Self {
            seen: BTreeSet::new(),
            live: BTreeMap::new(),
        };
        ids.observe(fs, "initial");
        ids
    }

    fn observe(&mut self, fs: &CrashFs, ctx: &str) {
        let mut now = BTreeMap::new();
        for (p, _) in segment_files(fs) {
            let id = file_id(fs, &p);
            if self.live.get(&p) != Some(&id) {
                assert!(
                    self.seen.insert(id),
                    "{ctx}: file id reused by {}",
                    p.display()
                );
            }
            now.insert(p, id);
        }
        self.live = now;
    }
}

/// Recovered files are never written again: each one still there is byte for byte the same.
fn assert_untouched(fs: &CrashFs, before: &BTreeMap<PathBuf, Vec<u8>>, ctx: &str) {
    for (p, bytes) in before {
        if fs.exists(p) {
            assert_eq!(
                &fs.contents(p).expect("contents"),
                bytes,
                "{ctx}: {} rewritten",
                p.display()
            );
        }
    }
}

/// Which of the files present before a truncating open are still there.
fn assert_kept(
    fs: &CrashFs,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    want: &BTreeSet<PathBuf>,
    ctx: &str,
) {
    let still: BTreeSet<PathBuf> = before.keys().filter(|p| fs.exists(p)).cloned().collect();
    assert_eq!(&still, want, "{ctx}: segments kept");
}

/// What the engine appends after recovery: six groups of two from `next` on, with commit
/// times no built record has (so a phantom with a reused sequence number cannot pass for
/// one of them), the last one synced.
fn append_more(log: &StreamLog, next: u64) -> Vec<ChangeRecord> {
    let mut out = Vec::new();
    for i in 0..6u64 {
        let s = next + i * 2;
        let group = vec![rec(s, 5000 + i), rec(s + 1, 5000 + i)];
        log.append(&group, i == 5).expect("append after truncation");
        out.extend(group);
    }
    out
}

/// The engine's next sequence number after a truncating open at `max_seq`.
fn next_seq(max_seq: u64, kept_last: u64) -> u64 {
    max_seq.checked_add(1).unwrap_or(kept_last + 1)
}

#[test]
fn a_truncating_open_keeps_exactly_the_records_up_to_max_seq_wherever_the_cut_falls() {
    let (_, keyring) = setup();
    let o = opts(SEGMENT);
    let points = {
        let (fs, _) = setup();
        cut_points(&build(&fs, &keyring))
    };
    let kinds: BTreeSet<Cut> = points.iter().map(|(_, k)| *k).collect();
    assert_eq!(kinds.len(), 5, "not every kind of cut point: {kinds:?}");
    for ((max_seq, kind), finished_tail) in points.iter().flat_map(|p| [(*p, false), (*p, true)]) {
        let ctx = format!("max_seq {max_seq} ({kind:?}, finished tail {finished_tail})");
        let (fs, _) = setup();
        let b = build_with(&fs, &keyring, finished_tail);
        let before = snapshot(&fs);
        let mut ids = Ids::new(&fs);
        let want = b.upto(max_seq);
        let kept_last = want.last().map_or(0, |r| r.seq);

        let (log, st) = open_truncating(&fs, &keyring, o, max_seq)
            .unwrap_or_else(|e| panic!("{ctx}: open_truncating: {e}"));
        assert_eq!(read_all(&log, 7), want, "{ctx}");
        assert_eq!(st.records, want.len() as u64, "{ctx}");
        assert_eq!(st.truncated_records, b.count() - want.len() as u64, "{ctx}");
        assert_eq!(
            (st.last_seq, log.last_seq()),
            (kept_last, kept_last),
            "{ctx}"
        );
        assert!(st.torn_tail.is_none(), "{ctx}");
        let tail = log
            .read(StartAt::After(kept_last), 100, usize::MAX)
            .expect("read");
        assert!(tail.records.is_empty(), "{ctx}: a phantom is readable");
        assert_untouched(&fs, &before, &ctx);
        assert_kept(&fs, &before, &b.kept_segments(max_seq), &ctx);
        assert_eq!(
            segment_files(&fs).len(),
            b.kept_segments(max_seq).len() + 1,
            "{ctx}: one new segment"
        );
        ids.observe(&fs, &ctx);

        // The engine goes on from max_seq + 1, reusing the phantoms' sequence numbers.
        let mut all = want.clone();
        all.extend(append_more(&log, next_seq(max_seq, kept_last)));
        assert_eq!(read_all(&log, 5), all, "{ctx}");
        drop(log);
        fs.crash();
        let (log, st) = open(&fs, &keyring, o).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        assert_eq!(
            read_all(&log, 5),
            all,
            "{ctx}: after a crash and a plain open"
        );
        assert_eq!(st.truncated_records, 0, "{ctx}");
        assert!(st.torn_tail.is_none(), "{ctx}");
        assert_untouched(&fs, &before, &ctx);
        ids.observe(&fs, &ctx);

        // And once more: a torn power cut, then a truncating open with nothing to cut.
        drop(log);
        fs.crash_keeping_prefix(max_seq);
        let last = all.last().map_or(0, |r| r.seq);
        let (log, st) = open_truncating(&fs, &keyring, o, last)
            .unwrap_or_else(|e| panic!("{ctx}: third open: {e}"));
        assert_eq!(read_all(&log, 9), all, "{ctx}: third open");
        assert_eq!(st.truncated_records, 0, "{ctx}");
        assert_untouched(&fs, &before, &ctx);
        ids.observe(&fs, &ctx);
    }
}

#[test]
fn a_crash_at_every_mutation_of_a_truncating_open_is_finished_by_the_next_one() {
    let (_, keyring) = setup();
    let o = opts(SEGMENT);
    // The first and last cut point of every kind.
    let points: Vec<(u64, Cut)> = {
        let (fs, _) = setup();
        let all = cut_points(&build(&fs, &keyring));
        let mut chosen = BTreeMap::new();
        for (max, kind) in &all {
            chosen.entry((*kind, 0)).or_insert(*max);
            chosen.insert((*kind, 1), *max);
        }
        let set: BTreeSet<(u64, Cut)> = chosen.into_iter().map(|((k, _), m)| (m, k)).collect();
        set.into_iter().collect()
    };
    let mut crash_points = 0;
    for ((max_seq, kind), finished_tail) in points.iter().flat_map(|p| [(*p, false), (*p, true)]) {
        let total = {
            let (fs, _) = setup();
            build_with(&fs, &keyring, finished_tail);
            let base = fs.mutation_count();
            open_truncating(&fs, &keyring, o, max_seq).expect("clean run");
            fs.mutation_count() - base
        };
        for n in 0..total {
            crash_points += 1;
            let ctx = format!(
                "max_seq {max_seq} ({kind:?}, finished tail {finished_tail}), fault {n} of {total}"
            );
            let (fs, _) = setup();
            let b = build_with(&fs, &keyring, finished_tail);
            let before = snapshot(&fs);
            let mut ids = Ids::new(&fs);
            let want = b.upto(max_seq);
            let kept_last = want.last().map_or(0, |r| r.seq);

            fs.fail_after(n, FaultKind::AnyMutation);
            assert!(
                open_truncating(&fs, &keyring, o, max_seq).is_err(),
                "{ctx}: fault did not fire"
            );
            if n % 2 == 0 {
                fs.crash();
            } else {
                fs.crash_keeping_prefix((n * 7919).wrapping_add(max_seq));
            }
            assert_untouched(&fs, &before, &ctx);

            // The truncation is atomic: a plain open (which the engine does not do) sees the
            // stream either untouched or cut, never partly cut; either way the next truncating
            // open finishes the job.
            if n % 3 == 2 {
                let (log, _) =
                    open(&fs, &keyring, o).unwrap_or_else(|e| panic!("{ctx}: plain open: {e}"));
                let got = read_all(&log, 7);
                drop(log);
                if got == want {
                    assert_kept(&fs, &before, &b.kept_segments(max_seq), &ctx);
                } else {
                    let everything: Vec<ChangeRecord> = b.records().cloned().collect();
                    assert_eq!(got, everything, "{ctx}: a plain open saw a partial cut");
                }
                assert_untouched(&fs, &before, &ctx);
            }

            let (log, st) = open_truncating(&fs, &keyring, o, max_seq)
                .unwrap_or_else(|e| panic!("{ctx}: second open_truncating: {e}"));
            assert_eq!(read_all(&log, 7), want, "{ctx}");
            assert_eq!(
                (st.last_seq, log.last_seq()),
                (kept_last, kept_last),
                "{ctx}"
            );
            assert_eq!(st.records, want.len() as u64, "{ctx}");
            assert_untouched(&fs, &before, &ctx);
            assert_kept(&fs, &before, &b.kept_segments(max_seq), &ctx);
            ids.observe(&fs, &ctx);

            let mut all = want.clone();
            all.extend(append_more(&log, next_seq(max_seq, kept_last)));
            drop(log);
            fs.crash();
            let (log, st) =
                open(&fs, &keyring, o).unwrap_or_else(|e| panic!("{ctx}: plain reopen: {e}"));
            assert_eq!(read_all(&log, 5), all, "{ctx}: after appends and a crash");
            assert_eq!(st.truncated_records, 0, "{ctx}");
            assert_untouched(&fs, &before, &ctx);
            ids.observe(&fs, &ctx);
        }
    }
    eprintln!("{crash_points} crash points");
    assert!(crash_points > 30, "only {crash_points} crash points");
}

#[test]
fn a_block_across_max_seq_is_malformed_and_nothing_changes() {
    let (fs, keyring) = setup();
    let o = opts(SEGMENT);
    let (log, _) = open(&fs, &keyring, o).expect("open");
    let groups: Vec<Vec<ChangeRecord>> = vec![
        (1..=3).map(|s| rec(s, s)).collect(),
        (4..=6).map(|s| rec(s, s)).collect(),
        (7..=9).map(|s| rec(s, s)).collect(),
        (10..=12).map(|s| rec(s, s)).collect(),
    ];
    for g in &groups {
        log.append(g, false).expect("append");
    }
    assert!(log.segment_paths().len() >= 2);
    log.sync().expect("sync");
    drop(log);
    // A first open that cuts nothing leaves the stream as the engine would find it.
    let (log, _) = open(&fs, &keyring, o).expect("reopen");
    let paths = log.segment_paths();
    drop(log);
    let before = snapshot(&fs);
    let names: Vec<String> = fs.list_dir(&dir()).expect("list");
    for max_seq in [1, 2, 4, 5, 8, 11] {
        let e = match open_truncating(&fs, &keyring, o, max_seq) {
            Err(e) => e,
            Ok(_) => panic!("max_seq {max_seq}: a commit group was split"),
        };
        let Error::Malformed { file, at, .. } = &e else {
            panic!("max_seq {max_seq}: expected Malformed, got {e}");
        };
        assert!(file.as_ref().is_some_and(|f| paths.contains(f)), "{e}");
        assert!(at.is_some(), "{e}");
        let msg = e.to_string();
        assert!(
            paths.iter().any(|p| msg.contains(&p.display().to_string())),
            "{msg}"
        );
        assert!(msg.contains("at offset"), "{msg}");
        assert_eq!(snapshot(&fs), before, "max_seq {max_seq}: files changed");
        assert_eq!(fs.list_dir(&dir()).expect("list"), names);
    }
    let (log, st) = open_truncating(&fs, &keyring, o, 6).expect("cut between groups");
    assert_eq!(st.truncated_records, 6);
    assert_eq!(read_all(&log, 100), groups[..2].concat());
}

#[test]
fn a_cut_below_the_trim_point_restarts_the_stream_at_max_seq() {
    let (_, keyring) = setup();
    let o = opts(SEGMENT);
    let all: Vec<ChangeRecord> = (1..=40).map(|s| rec(s, s)).collect();
    for crash_after_open in [false, true] {
        let (fs, _) = setup();
        let (log, _) = open(&fs, &keyring, o).expect("open");
        for r in &all {
            log.append(std::slice::from_ref(r), true).expect("append");
        }
        let report = log
            .trim(None, Some(log.total_bytes() / 2), 0)
            .expect("trim");
        assert!(report.segments_removed >= 2);
        let horizon = report.horizon;
        assert!(horizon > 4, "horizon {horizon}");
        drop(log);
        let before = snapshot(&fs);
        let mut ids = Ids::new(&fs);

        // The WAL kept less than retention already removed: nothing retained is real.
        let max_seq = horizon - 3;
        let (log, st) = open_truncating(&fs, &keyring, o, max_seq).expect("truncate");
        assert_eq!(st.records, 0);
        assert_eq!(st.truncated_records, 40 - (horizon - 1));
        assert_eq!((st.last_seq, log.last_seq()), (max_seq, max_seq));
        assert_eq!(read_all(&log, 10), Vec::<ChangeRecord>::new());
        assert_eq!(log.horizon(), max_seq + 1);
        assert!(matches!(
            log.read(StartAt::At(max_seq), 10, usize::MAX),
            Err(Error::Trimmed { .. })
        ));
        assert_kept(&fs, &before, &BTreeSet::new(), "below the trim point");
        ids.observe(&fs, "after truncation");
        if crash_after_open {
            drop(log);
            fs.crash();
            let (log, st) = open(&fs, &keyring, o).expect("reopen");
            assert_eq!(st.last_seq, max_seq);
            let extra = append_more(&log, max_seq + 1);
            drop(log);
            fs.crash();
            let (log, _) = open(&fs, &keyring, o).expect("reopen");
            assert_eq!(read_all(&log, 4), extra);
            assert!(matches!(
                log.read(StartAt::At(max_seq), 10, usize::MAX),
                Err(Error::Trimmed { .. })
            ));
            ids.observe(&fs, "after appends");
        } else {
            let extra = append_more(&log, max_seq + 1);
            drop(log);
            let (log, _) = open(&fs, &keyring, o).expect("reopen");
            assert_eq!(read_all(&log, 4), extra);
            assert_eq!(log.horizon(), max_seq + 1);
            ids.observe(&fs, "after appends");
        }
    }
}

#[test]
fn a_truncating_open_also_cuts_an_unsynced_phantom_tail_that_survived_a_power_cut() {
    // The scenario the API is for: the stream's unsynced tail reached the disk (partly, maybe
    // torn), the WAL's did not; the engine reopens with the WAL's last sequence number.
    let (_, keyring) = setup();
    let o = opts(SEGMENT);
    for seed in 0..40u64 {
        let (fs, _) = setup();
        let (log, _) = open(&fs, &keyring, o).expect("open");
        let mut seq = 1;
        let mut durable = Vec::new();
        for g in 0..20u64 {
            let group: Vec<ChangeRecord> = (0..=g % 2).map(|k| rec(seq + k, g)).collect();
            seq += group.len() as u64;
            // The first 8 groups are synced (the WAL has them); the rest are not.
            log.append(&group, g == 7).expect("append");
            if g <= 7 {
                durable.extend(group);
            }
        }
        drop(log);
        fs.crash_keeping_prefix(seed);
        let wal_last = durable.last().map_or(0, |r| r.seq);
        let (log, st) = open_truncating(&fs, &keyring, o, wal_last).expect("recover");
        assert_eq!(read_all(&log, 6), durable, "seed {seed}");
        assert_eq!(st.last_seq, wal_last, "seed {seed}");
        let extra = append_more(&log, wal_last + 1);
        drop(log);
        fs.crash();
        let (log, _) = open(&fs, &keyring, o).expect("reopen");
        let mut want = durable.clone();
        want.extend(extra);
        assert_eq!(read_all(&log, 6), want, "seed {seed}");
    }
}

#[test]
fn a_truncated_chain_still_refuses_a_hole() {
    // The new segment names an earlier one and supersedes those in between; a segment it
    // names that is missing is still a hole, not something to skip.
    let (fs, keyring) = setup();
    let b = build(&fs, &keyring);
    let cut = b
        .groups
        .get(b.groups.len() / 2)
        .and_then(|g| g.last())
        .map(|r| r.seq)
        .expect("group");
    let (log, st) = open_truncating(&fs, &keyring, opts(SEGMENT), cut).expect("truncate");
    assert!(st.truncated_records > 0);
    let paths = log.segment_paths();
    drop(log);
    assert!(paths.len() >= 3, "{paths:?}");
    let named = paths.get(paths.len() - 2).expect("the cut segment");
    fs.remove_file(named).expect("remove");
    fs.sync_dir(&dir()).expect("sync");
    let e = open_truncating(&fs, &keyring, opts(SEGMENT), cut).expect_err("a hole");
    assert!(matches!(e, Error::MissingSegment(_)), "{e}");
}
