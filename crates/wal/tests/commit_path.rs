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
