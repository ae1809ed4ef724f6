//! What the commit path does not wait for: file-system work of retirement.

use sealdb_crypto::{CipherId, DatabaseId, Keyring};
use sealdb_vfs::{CrashFs, FileSystem, HookFs, Op, SharedFs};
use sealdb_wal::{BatchBuilder, FrameBatch, Wal, WalOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn append(wal: &Wal, seq: u64) -> Result<(), sealdb_wal::Error> {
    let mut b = BatchBuilder::new();
    b.put(0, format!("key{seq}").as_bytes(), b"value")
        .expect("put");
    wal.append(
        &[FrameBatch {
            first_seq: seq,
            count: 1,
            rep: b.rep(),
            commit_time_ms: 0,
        }],
        true,
    )
}

/// Holds whoever removes a WAL segment while it is closed, and says when one arrived.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (closed, someone waiting)
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().expect("gate");
        if !st.0 {
            return;
        }
        st.1 = true;
        self.changed.notify_all();
        while st.0 {
            st = self.changed.wait(st).expect("gate");
        }
    }

    fn wait_for_someone(&self) {
        let mut st = self.state.lock().expect("gate");
        while !st.1 {
            st = self.changed.wait(st).expect("gate");
        }
    }

    fn set_closed(&self, closed: bool) {
        self.state.lock().expect("gate").0 = closed;
        self.changed.notify_all();
    }
}

#[test]
fn appends_go_on_while_obsolete_segments_are_being_deleted() {
    let crash = CrashFs::new();
    crash.create_dir_all(Path::new("/db")).expect("mkdir");
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let fs: SharedFs = Arc::new(HookFs::new(
        Arc::new(crash.clone()),
        Arc::new(move |op, p: &Path| {
            if op == Op::Remove && p.extension().is_some_and(|x| x == "wal") {
                g.pass();
            }
            Ok(())
        }),
    ));
    let dir = PathBuf::from("/db/wal");
    let keyring = Keyring::generate(DatabaseId([3; 16])).expect("keyring");
    let opts = WalOptions {
        segment_size: 1024,
        cipher: CipherId::ChaCha20Poly1305,
    };
    let (wal, _) = Wal::open(fs, &dir, keyring, opts, 0, &mut |_| Ok(())).expect("open");
    let wal = Arc::new(wal);
    let mut seq = 1;
    while wal.segment_numbers().len() < 4 {
        append(&wal, seq).expect("append");
        seq += 1;
    }
    let before = wal.segment_numbers();
    gate.set_closed(true);
    let retiring = {
        let wal = wal.clone();
        let active = wal.active_segment();
        std::thread::spawn(move || wal.remove_obsolete(active))
    };
    // The retirement is now inside its first deletion.
    gate.wait_for_someone();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send(append(&wal, seq));
        });
    }
    // Not a timing assertion: a generous bound so that a regression fails instead of hanging.
    let appended = rx.recv_timeout(Duration::from_secs(60));
    gate.set_closed(false);
    let removed = retiring.join().expect("retire thread").expect("retire");
    appended
        .expect("a synced append completed while a deletion was in progress")
        .expect("append");
    assert_eq!(removed, before.len() - 1);
    assert_eq!(wal.segment_numbers(), vec![wal.active_segment()]);
}

#[test]
fn a_synced_append_that_rolls_over_syncs_the_new_segment_once_then_announces_it() {
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Sync(PathBuf),
        Announce(u64),
    }
    let crash = CrashFs::new();
    crash.create_dir_all(Path::new("/db")).expect("mkdir");
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let l = log.clone();
    let fs: SharedFs = Arc::new(HookFs::new(
        Arc::new(crash.clone()),
        Arc::new(move |op, p: &Path| {
            if op == Op::Sync {
                l.lock().expect("log").push(Event::Sync(p.to_path_buf()));
            }
            Ok(())
        }),
    ));
    let dir = PathBuf::from("/db/wal");
    let keyring = Keyring::generate(DatabaseId([4; 16])).expect("keyring");
    let opts = WalOptions {
        segment_size: 2048,
        cipher: CipherId::ChaCha20Poly1305,
    };
    let (wal, _) = Wal::open(fs, &dir, keyring, opts, 0, &mut |_| Ok(())).expect("open");
    let l = log.clone();
    wal.set_roll_observer(Box::new(move |segment, _| {
        l.lock().expect("log").push(Event::Announce(segment));
    }));
    let first = wal.active_segment();
    let mut seq = 1;
    let spare = loop {
        append(&wal, seq).expect("append");
        seq += 1;
        if let Some(s) = wal.spare_segment() {
            break s;
        }
    };
    log.lock().expect("log").clear();
    while wal.active_segment() == first {
        append(&wal, seq).expect("append");
        seq += 1;
    }
    assert_eq!(wal.active_segment(), spare);
    let events = log.lock().expect("log").clone();
    let new_path = dir.join(sealdb_wal::segment_file_name(spare));
    let syncs_of_new: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| **e == Event::Sync(new_path.clone()))
        .map(|(i, _)| i)
        .collect();
    let announced = events.iter().position(|e| *e == Event::Announce(spare));
    // One sync covers the start frame and the append's frame, and the segment is announced
    // (the head may name it) only after it.
    assert_eq!(syncs_of_new.len(), 1, "{events:?}");
    assert!(announced.is_some_and(|a| a > syncs_of_new[0]), "{events:?}");
    // The old segment was synced (with its end frame) before the new one.
    let old_path = dir.join(sealdb_wal::segment_file_name(first));
    let old_sync = events
        .iter()
        .rposition(|e| *e == Event::Sync(old_path.clone()))
        .expect("the old segment is synced at rollover");
    assert!(old_sync < syncs_of_new[0], "{events:?}");
}
