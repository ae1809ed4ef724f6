//! The chain rules, once for every chained log: built with the crate's own writer functions
//! and a toy payload (one byte code plus a counter), then damaged the ways a crash or an
//! attacker damages a directory.

use sealdb_crypto::{ArtifactKind, CipherId, DatabaseId, Keyring};
use sealdb_log::{
    ChainConfig, ChainRules, Error, FRAME_END, FRAME_PAYLOAD, Link, Scanned, SpareSlot, scan_chain,
    walk_segment,
};
use sealdb_vfs::{CrashFs, FileSystem, SharedFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CFG: ChainConfig = ChainConfig {
    kind: ArtifactKind::Wal,
    suffix: ".log",
    cipher: CipherId::ChaCha20Poly1305,
};

const RULES: ChainRules = ChainRules {
    min_segment: 0,
    front_trimmed: false,
    supersede: false,
    keep_readers: false,
};

fn dir() -> PathBuf {
    PathBuf::from("/db/log")
}

fn setup() -> (CrashFs, Keyring) {
    let fs = CrashFs::new();
    fs.create_dir_all(&dir()).expect("mkdir");
    (fs, Keyring::generate(DatabaseId([3; 16])).expect("keyring"))
}

fn payload(n: u64) -> Vec<u8> {
    let mut v = vec![FRAME_PAYLOAD];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// Writes segments `first..=last`, each holding `per` payloads and finished with an end frame
/// except the last; returns each segment's length.
fn build(fs: &CrashFs, keyring: &Keyring, first: u64, last: u64, per: u64) -> Vec<u64> {
    let mut prev = (first.saturating_sub(1), 0u64, false);
    let mut ends = Vec::new();
    let mut n = 0u64;
    for number in first..=last {
        let link = Link::after(prev.0, prev.1, prev.2, number);
        let mut w = sealdb_log::create_segment(fs, &dir(), &CFG, keyring, number, &link.encode())
            .expect("create");
        for _ in 0..per {
            n += 1;
            w.append_block(&payload(n)).expect("append");
        }
        if number != last {
            w.finish(&[FRAME_END]).expect("finish");
        }
        w.sync().expect("sync");
        prev = (number, w.offset(), true);
        ends.push(w.offset());
    }
    ends
}

/// Scans and walks the whole chain; returns the payload counters in order, the torn tail.
fn replay(
    fs: &CrashFs,
    keyring: &Keyring,
    rules: ChainRules,
) -> Result<(Vec<u64>, Option<sealdb_log::TornTail>), Error> {
    let chain = scan_chain::<(), Error>(fs, &dir(), &CFG, keyring, rules, &mut |p, h, d| {
        Link::decode_exact(d)
            .map(|l| (l, ()))
            .map_err(|why| Error::malformed(p, Some(h.offset), why))
    })?;
    let mut got = Vec::new();
    let mut torn = chain.torn_header.as_ref().map(|(t, _)| *t);
    for (i, seg) in chain.segments.iter().enumerate() {
        let reader = seg.reader(fs, &CFG, keyring)?;
        let next = chain.segments.get(i + 1).map(|s| s.link);
        let walked = walk_segment::<(), Error>(
            seg,
            &reader,
            next,
            &mut |_, d| {
                let mut b = [0u8; 8];
                b.copy_from_slice(d.get(1..9).unwrap_or(&[0; 8]));
                got.push(u64::from_le_bytes(b));
                Ok(())
            },
            &mut |_, _| Ok(()),
        )?;
        torn = walked.torn.or(torn);
    }
    Ok((got, torn))
}

fn rewrite(fs: &CrashFs, path: &Path, bytes: &[u8]) {
    fs.remove_file(path).expect("rm");
    let mut f = fs.create_new(path).expect("create");
    f.append(bytes).expect("write");
    f.sync_data().expect("sync");
}

fn read(fs: &CrashFs, path: &Path) -> Vec<u8> {
    sealdb_vfs::read_file_limited(fs, path, 1 << 20).expect("read")
}

#[test]
fn a_whole_chain_replays_every_payload_in_order() {
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 3, 4);
    let (got, torn) = replay(&fs, &keyring, RULES).expect("replay");
    assert_eq!(got, (1..=12).collect::<Vec<_>>());
    assert_eq!(torn, None);
}

#[test]
fn a_torn_tail_is_cut_only_at_the_end_of_the_last_segment() {
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 2, 3);
    let last = CFG.path(&dir(), 2);
    let bytes = read(&fs, &last);
    rewrite(&fs, &last, &bytes[..bytes.len() - 5]);
    let (got, torn) = replay(&fs, &keyring, RULES).expect("replay");
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    let torn = torn.expect("torn tail");
    assert_eq!(
        (torn.segment, torn.dropped_bytes + torn.offset),
        (2, bytes.len() as u64 - 5)
    );

    // The same cut in a closed segment is not a torn write: it is an integrity error.
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 2, 3);
    let first = CFG.path(&dir(), 1);
    let bytes = read(&fs, &first);
    rewrite(&fs, &first, &bytes[..bytes.len() - 5]);
    let e = replay(&fs, &keyring, RULES).expect_err("cut closed segment");
    assert!(matches!(e, Error::Crypto(_)), "{e}");
}

#[test]
fn a_last_segment_without_a_start_frame_is_a_torn_header() {
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 2, 2);
    // A spare: created ahead of need, never started.
    let shared: SharedFs = Arc::new(fs.clone());
    let slot = SpareSlot::new();
    slot.prepare(shared, dir(), CFG, keyring.clone(), 3, "test-spare");
    assert_eq!(slot.ready_number(), Some(3));
    let (got, torn) = replay(&fs, &keyring, RULES).expect("replay");
    assert_eq!(got, vec![1, 2, 3, 4]);
    let torn = torn.expect("torn header");
    assert_eq!((torn.segment, torn.offset), (3, 0));
    assert!(torn.dropped_bytes > 0);
    slot.discard(&fs, &dir(), &CFG).expect("discard");
    assert!(!fs.exists(&CFG.path(&dir(), 3)));
    assert_eq!(replay(&fs, &keyring, RULES).expect("replay").1, None);
}

#[test]
fn a_missing_segment_in_the_middle_or_at_the_front_breaks_the_chain() {
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 3, 2);
    fs.remove_file(&CFG.path(&dir(), 2)).expect("rm");
    let e = replay(&fs, &keyring, RULES).expect_err("hole");
    assert!(matches!(e, Error::MissingSegment(_)), "{e}");

    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 3, 2);
    fs.remove_file(&CFG.path(&dir(), 1)).expect("rm");
    let e = replay(&fs, &keyring, RULES).expect_err("front");
    assert!(matches!(e, Error::MissingSegment(_)), "{e}");
    // A log trimmed from the front, or one whose front is obsolete, may lack it.
    let trimmed = ChainRules {
        front_trimmed: true,
        ..RULES
    };
    assert_eq!(
        replay(&fs, &keyring, trimmed).expect("trimmed").0,
        vec![3, 4, 5, 6]
    );
    let obsolete = ChainRules {
        min_segment: 2,
        ..RULES
    };
    assert_eq!(
        replay(&fs, &keyring, obsolete).expect("obsolete").0,
        vec![3, 4, 5, 6]
    );
}

#[test]
fn a_segment_cut_off_by_a_later_start_frame_is_superseded_only_where_allowed() {
    let (fs, keyring) = setup();
    let ends = build(&fs, &keyring, 1, 2, 2);
    // Segment 3 names segment 1 as its predecessor: segment 2 was cut off.
    let link = Link::after(1, ends[0], true, 3);
    sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 3, &link.encode()).expect("create");
    let e = replay(&fs, &keyring, RULES).expect_err("not allowed");
    assert!(matches!(e, Error::MissingSegment(_)), "{e}");
    let rules = ChainRules {
        supersede: true,
        ..RULES
    };
    let chain = scan_chain::<(), Error>(&fs, &dir(), &CFG, &keyring, rules, &mut |_, _, d| {
        Ok((Link::decode_exact(d).expect("link"), ()))
    })
    .expect("scan");
    let numbers = |v: &[Scanned<()>]| v.iter().map(|s| s.number).collect::<Vec<_>>();
    assert_eq!(numbers(&chain.segments), vec![1, 3]);
    assert_eq!(numbers(&chain.superseded), vec![2]);
    assert_eq!(chain.newest_started(), 3);
}

#[test]
fn an_unfinished_predecessor_is_read_exactly_to_the_end_its_successor_recorded() {
    let (fs, keyring) = setup();
    // Segment 1 with three payloads, unfinished; segment 2 says it validly ends after two.
    let link = Link::after(0, 0, false, 1);
    let mut w =
        sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 1, &link.encode()).expect("create");
    let mut after_two = 0;
    for n in 1..=3 {
        let h = w.append_block(&payload(n)).expect("append");
        if n == 2 {
            after_two = h.end();
        }
    }
    w.sync().expect("sync");
    let link = Link::after(1, after_two, false, 2);
    sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 2, &link.encode()).expect("create");
    assert_eq!(replay(&fs, &keyring, RULES).expect("replay").0, vec![1, 2]);

    // A recorded end that is not a block boundary is malformed.
    fs.remove_file(&CFG.path(&dir(), 2)).expect("rm");
    let link = Link::after(1, after_two + 1, false, 2);
    sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 2, &link.encode()).expect("create");
    let e = replay(&fs, &keyring, RULES).expect_err("bad end");
    assert!(
        e.malformed_message()
            .is_some_and(|m| m.contains("recorded")),
        "{e}"
    );
}

#[test]
fn a_finished_predecessor_must_carry_its_end_frame() {
    let (fs, keyring) = setup();
    let link = Link::after(0, 0, false, 1);
    let mut w =
        sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 1, &link.encode()).expect("create");
    w.append_block(&payload(1)).expect("append");
    w.sync().expect("sync");
    let link = Link::after(1, w.offset(), true, 2);
    sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 2, &link.encode()).expect("create");
    let e = replay(&fs, &keyring, RULES).expect_err("no end frame");
    assert!(
        matches!(e, Error::Crypto(_) | Error::Malformed { .. }),
        "{e}"
    );
}

#[test]
fn frames_out_of_place_are_malformed_with_file_and_offset() {
    for (bad, final_block, what) in [
        (
            Link::after(0, 0, false, 1).encode(),
            false,
            "a second start frame",
        ),
        (vec![9u8], false, "unexpected frame type 9"),
        (payload(7), true, "final frame is not an end frame"),
    ] {
        let (fs, keyring) = setup();
        let link = Link::after(0, 0, false, 1);
        let mut w = sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 1, &link.encode())
            .expect("create");
        let h = if final_block {
            w.finish(&bad)
        } else {
            w.append_block(&bad)
        }
        .expect("append");
        w.sync().expect("sync");
        let e = replay(&fs, &keyring, RULES).expect_err(what);
        let msg = e.malformed_message().expect("malformed");
        assert!(msg.contains(what), "{msg}");
        assert!(
            msg.contains(&format!("block at offset {}", h.offset)),
            "{msg}"
        );
        assert!(msg.contains("0000000000000001.log"), "{msg}");
    }
}

#[test]
fn a_start_frame_naming_another_segment_is_malformed() {
    let (fs, keyring) = setup();
    let link = Link::after(0, 0, false, 5);
    sealdb_log::create_segment(&fs, &dir(), &CFG, &keyring, 1, &link.encode()).expect("create");
    let e = replay(&fs, &keyring, RULES).expect_err("wrong number");
    assert!(
        e.malformed_message()
            .is_some_and(|m| m.contains("names segment 5")),
        "{e}"
    );
}

#[test]
fn retiring_a_prefix_deletes_or_archives_it_and_the_rest_still_replays() {
    let (fs, keyring) = setup();
    build(&fs, &keyring, 1, 4, 1);
    let archive = PathBuf::from("/db/archive");
    let mut gone = Vec::new();
    sealdb_log::retire_prefix(&fs, &dir(), &CFG, &[1, 2], Some(&archive), &mut |n| {
        gone.push(n)
    })
    .expect("retire");
    assert_eq!(gone, vec![1, 2]);
    assert_eq!(CFG.list(&fs, &archive).expect("list"), vec![1, 2]);
    assert_eq!(CFG.list(&fs, &dir()).expect("list"), vec![3, 4]);
    let rules = ChainRules {
        min_segment: 3,
        ..RULES
    };
    assert_eq!(replay(&fs, &keyring, rules).expect("replay").0, vec![3, 4]);
}

#[test]
fn a_rollover_starts_the_spare_created_for_it_and_removes_one_created_for_another() {
    let (fs, keyring) = setup();
    let ends = build(&fs, &keyring, 1, 2, 1);
    let shared: SharedFs = Arc::new(fs.clone());
    let file_id = |n: u64| {
        sealdb_crypto::sealed::read_file_header(&fs, &CFG.path(&dir(), n))
            .expect("header")
            .file_id
    };
    // Segment 2 is the active one; finish it as a rollover does.
    let link2 = Link::after(2, ends[1], false, 3);
    let slot = SpareSlot::new();
    slot.prepare(shared.clone(), dir(), CFG, keyring.clone(), 3, "test-spare");
    assert_eq!(slot.ready_number(), Some(3));
    let spare_id = file_id(3);
    let w = sealdb_log::start_next(
        &fs,
        &dir(),
        &CFG,
        &keyring,
        Some(&slot),
        3,
        &link2.encode(),
        false,
    )
    .expect("start in spare");
    assert_eq!(w.header().file_id, spare_id, "the spare became the segment");
    assert_eq!(slot.ready_number(), None);
    drop(w);
    assert_eq!(replay(&fs, &keyring, RULES).expect("replay").0, vec![1, 2]);

    // A spare made for another number is removed; the segment is created afresh.
    let link4 = Link::after(3, 0, false, 4);
    slot.prepare(shared, dir(), CFG, keyring.clone(), 9, "test-spare");
    assert_eq!(slot.ready_number(), Some(9));
    let w = sealdb_log::start_next(
        &fs,
        &dir(),
        &CFG,
        &keyring,
        Some(&slot),
        4,
        &link4.encode(),
        false,
    )
    .expect("start afresh");
    assert_eq!(w.header().file_id, file_id(4));
    assert!(!fs.exists(&CFG.path(&dir(), 9)));
    assert_eq!(CFG.list(&fs, &dir()).expect("list"), vec![1, 2, 3, 4]);
}

/// A spare created before a data-key rotation is sealed under the old version: a rollover
/// after the rotation must not start writing in it (the new segment would keep the old
/// version alive, and re-encryption could never retire it).
#[test]
fn a_spare_sealed_under_an_older_data_key_is_not_used_after_a_rotation() {
    let (fs, keyring) = setup();
    let ends = build(&fs, &keyring, 1, 2, 1);
    let shared: SharedFs = Arc::new(fs.clone());
    let slot = SpareSlot::new();
    slot.prepare(shared, dir(), CFG, keyring.clone(), 3, "test-spare");
    assert_eq!(slot.ready_number(), Some(3));
    let old = keyring.current_version();
    let mut rotated = keyring.clone();
    rotated.add_version(
        old + 1,
        sealdb_crypto::SecretKey::generate().expect("data key"),
    );
    let link = Link::after(2, ends[1], false, 3);
    let w = sealdb_log::start_next(
        &fs,
        &dir(),
        &CFG,
        &rotated,
        Some(&slot),
        3,
        &link.encode(),
        false,
    )
    .expect("start");
    assert_eq!(w.header().data_key_version, old + 1);
    drop(w);
    assert_eq!(
        sealdb_crypto::sealed::read_file_header(&fs, &CFG.path(&dir(), 3))
            .expect("header")
            .data_key_version,
        old + 1
    );
    assert_eq!(
        slot.ready_number(),
        None,
        "the stale spare was taken and removed"
    );
    assert_eq!(replay(&fs, &rotated, RULES).expect("replay").0, vec![1, 2]);
}
