//! Heap allocations of the unsynced put path (issue 14): a lone writer's put costs a fixed,
//! small number of allocations. Counted, not timed, so the bound holds on any machine; a
//! change that adds a per-put copy or list shows up here as a failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sealdb::{CipherId, Db, Options};

/// The system allocator, counting the allocations each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: a thread being torn down has no counter left, and needs none.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so each keeps
// `System`'s guarantees; the counter is a const-initialised thread-local `Cell`, which never
// allocates (no re-entry into the allocator).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations an unsynced put of a lone writer may make: the batch's encoding (moved, not
/// copied, into the commit queue), the leader's group list, its prepared list and result
/// list, and the memtable entry's key-and-value bytes and skiplist node. Before issue 14's follow-up
/// a put made 17 (14 allocations, 3 reallocations: the batch grew field by field, was copied
/// into the queue, the memtable key was built twice, and the leader collected more lists).
const MAX_PER_PUT: u64 = 6;

#[test]
fn a_lone_writers_unsynced_put_makes_a_bounded_number_of_allocations() -> sealdb::Result<()> {
    let io = |e: std::io::Error| sealdb::Error::InvalidArgument(e.to_string());
    let dir = tempfile::tempdir().map_err(io)?;
    let keystore = tempfile::tempdir().map_err(io)?;
    let opts = Options {
        cipher: CipherId::ChaCha20Poly1305,
        keystore_dir: Some(keystore.path().to_path_buf()),
        // No memtable rotation or flush during the count.
        memtable_size: 64 << 20,
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts)?;
    let ks = db.default_keyspace();
    let put = |i: u64| {
        let mut key = [0_u8; 16];
        key[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        key[8..].copy_from_slice(&i.to_be_bytes());
        ks.put(key, [7_u8; 100])
    };
    // Warm up: scratch buffers and lazily started helpers reach their steady state.
    for i in 0..200 {
        put(i)?;
    }
    const PUTS: u64 = 2000;
    let before = allocations();
    for i in 200..200 + PUTS {
        put(i)?;
    }
    let made = allocations() - before;
    // A tenth of an allocation per put of slack for rare amortised events (a WAL segment
    // roll, a channel block); the old 17 per put would be about 20,000 over.
    assert!(
        made <= MAX_PER_PUT * PUTS + PUTS / 10,
        "{PUTS} puts made {made} allocations ({} per put), over {MAX_PER_PUT} per put",
        made as f64 / PUTS as f64
    );
    // The puts landed (the count is of real work).
    assert_eq!(db.last_sequence(), 200 + PUTS);
    let mut first = [0_u8; 16];
    first[..8].copy_from_slice(&200u64.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    first[8..].copy_from_slice(&200u64.to_be_bytes());
    assert_eq!(ks.get(first)?, Some(vec![7_u8; 100]));
    Ok(())
}
