//! Leader/follower group commit.
//!
//! Writers queue their item; the first writer to find no leader active becomes the leader,
//! takes queued items (its own and the followers', in arrival order, up to the queue's weight
//! budget), and runs the commit work once for all of them — one frame, one `fdatasync`.
//! While a leader works, new writers queue up and form the next group.
//!
//! With closed-loop writers (each submits its next item only after its last one is done)
//! that alone groups poorly: while one group is written, at most the writers outside it can
//! queue, and the writers of the finished group come back just after the next leader took
//! its group — with two writers every group has one item. So a leader whose own item asks
//! for it (a synced write: the `fdatasync` it shares costs far more than a short wait)
//! *gathers* first: while fewer items are queued than writers were seen at the end of the
//! last group, it waits up to [`GATHER_WINDOW`] (spinning, the lock released) for them.
//! The width it waits for follows the workload: a group that came up short lowers it.
//!
//! Followers wait for their result with a short bounded spin (`std::hint::spin_loop`, no
//! `sched_yield`, which under CPU oversubscription gives the core away for a whole scheduler
//! tick) and then park on a condition variable. The spin adapts: it grows while spinning
//! pays off and shrinks when followers end up parking anyway. The lock is `std`'s futex
//! mutex rather than `parking_lot`'s, whose contended path also yields.
//!
//! A panic in the leader's work (it may run application code, such as an index extractor)
//! is contained: every writer of that group gets [`LeaderFailed`] and the queue goes on with
//! the next leader, instead of every writer waiting forever for a leader that is gone.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest a gathering leader waits for the writers it expects (see the module docs):
/// well under one `fdatasync` of a fast disk, so a writer that does not come costs little.
pub const GATHER_WINDOW: Duration = Duration::from_micros(100);

/// The most writers a leader waits for.
const MAX_WIDTH: usize = 64;

/// Bounds of the followers' adaptive spin, in `spin_loop` iterations.
const MIN_SPIN: u32 = 64;
const MAX_SPIN: u32 = 1 << 12;

#[derive(Debug)]
struct State<T, R> {
    /// Queued items: id, item, weight.
    pending: Vec<(u64, T, usize)>,
    results: HashMap<u64, Result<R, LeaderFailed>>,
    /// The ids of the group a leader works on, kept between groups so that leading does not
    /// allocate a list each time.
    ids: Vec<u64>,
    /// Followers parked on the condition variable. A leader wakes them only when there are
    /// some: `notify_all` is a `futex` system call even with no waiter, which for a lone
    /// writer would be one system call per commit.
    parked: usize,
    next_id: u64,
    leader_active: bool,
}

/// The leader's work for a group panicked (or returned no result for an item): what the
/// items of that group reached is for the caller to judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the group-commit leader failed: {0}")]
pub struct LeaderFailed(pub String);

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// A group-commit queue carrying items of type `T` and results of type `R`.
#[derive(Debug)]
pub struct GroupCommit<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
    budget: usize,
    /// Bumped (under the lock) whenever results are posted or leadership is released: what a
    /// spinning follower watches without taking the lock.
    epoch: AtomicU64,
    /// The current spin bound of a waiting follower.
    spin: AtomicU32,
    /// Items queued and not yet taken into a group (readable without the lock).
    queued: AtomicU64,
    /// Writers seen at the end of the last group (its items plus those queued by then): how
    /// many a gathering leader waits for.
    width: AtomicUsize,
    /// How long a gathering leader waits at most.
    gather_window: Duration,
}

impl<T, R> Default for GroupCommit<T, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, R> GroupCommit<T, R> {
    /// An empty queue whose groups are unbounded.
    pub fn new() -> Self {
        Self::with_budget(usize::MAX)
    }

    /// An empty queue whose leader takes items only while their weights sum to at most
    /// `budget` (always at least one item, whatever its weight); the rest wait for the next
    /// group.
    pub fn with_budget(budget: usize) -> Self {
        Self::with_budget_and_window(budget, GATHER_WINDOW)
    }

    /// Like [`with_budget`](Self::with_budget), with a gathering leader waiting at most
    /// `gather_window` (instead of [`GATHER_WINDOW`]) for the writers it expects.
    pub fn with_budget_and_window(budget: usize, gather_window: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                results: HashMap::new(),
                ids: Vec::new(),
                parked: 0,
                next_id: 0,
                leader_active: false,
            }),
            done: Condvar::new(),
            budget,
            epoch: AtomicU64::new(0),
            spin: AtomicU32::new(MIN_SPIN * 4),
            queued: AtomicU64::new(0),
            width: AtomicUsize::new(1),
            gather_window,
        }
    }

    /// How many submitted items wait to be taken into a group. Lets a caller (or a test)
    /// see that writers have queued behind a working leader.
    pub fn queued(&self) -> usize {
        usize::try_from(self.queued.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        // The work runs outside the lock and its panics are caught, so a poisoned lock only
        // means a panic between two consistent states (an allocation failure): go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Submits `item` (of `weight` against the budget) and waits for its result. Whenever
    /// this writer finds no leader active while its result is pending, it leads: it calls
    /// `work` with the next group (ids and items, in arrival order), which need not hold its
    /// own item (then it may lead again). `work` must return one result per id. Every writer
    /// passes an equivalent `work`: only the leaders' run.
    ///
    /// Fails with [`LeaderFailed`] if the work of this item's group panicked or gave it no
    /// result.
    pub fn submit<F>(&self, item: T, weight: usize, work: F) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        self.submit_gathering(item, weight, false, work)
    }

    /// Like [`submit`](Self::submit); with `gather`, this writer, if it leads, first waits
    /// briefly for the writers it expects to join its group (see the module docs). For items
    /// whose work is dominated by a cost the group shares, such as a synced write.
    pub fn submit_gathering<F>(
        &self,
        item: T,
        weight: usize,
        gather: bool,
        mut work: F,
    ) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        let mut st = self.lock();
        let my_id = st.next_id;
        st.next_id += 1;
        st.pending.push((my_id, item, weight));
        self.queued.fetch_add(1, Ordering::AcqRel);
        loop {
            // Most writers lead their own item and never find a result here: skip the hash.
            if !st.results.is_empty()
                && let Some(r) = st.results.remove(&my_id)
            {
                return r;
            }
            if !st.leader_active {
                return self.lead(st, my_id, gather, &mut work);
            }
            let seen = self.epoch.load(Ordering::Acquire);
            drop(st);
            let spun = self.spin_until_changed(seen);
            st = self.lock();
            if !spun {
                // Parks until a leader posts results or steps down (both bump the epoch
                // under the lock, so no wake-up is missed).
                while self.epoch.load(Ordering::Acquire) == seen {
                    // Counted under the lock the leader bumps the epoch under: a leader either
                    // sees this writer parked, or bumped the epoch before it could park.
                    st.parked += 1;
                    st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                    st.parked -= 1;
                }
            }
        }
    }

    /// Spins (bounded, adaptively) until the epoch moves past `seen`. Returns whether it did.
    fn spin_until_changed(&self, seen: u64) -> bool {
        let limit = self.spin.load(Ordering::Relaxed);
        for _ in 0..limit {
            if self.epoch.load(Ordering::Acquire) != seen {
                // Spinning paid off: allow a little more next time.
                let _ = self
                    .spin
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                        Some(s.saturating_add(s / 8 + 1).min(MAX_SPIN))
                    });
                return true;
            }
            std::hint::spin_loop();
        }
        let _ = self
            .spin
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s / 2).max(MIN_SPIN))
            });
        false
    }

    /// Waits (lock released, bounded by the gather window) until the writers seen at the end
    /// of the last group are queued.
    fn gather<'a>(&'a self, st: MutexGuard<'a, State<T, R>>) -> MutexGuard<'a, State<T, R>> {
        let width = self.width.load(Ordering::Relaxed).min(MAX_WIDTH);
        if st.pending.len() >= width {
            return st;
        }
        drop(st);
        let deadline = Instant::now() + self.gather_window;
        while self.queued() < width && Instant::now() < deadline {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
        self.lock()
    }

    /// Leads groups until this writer's own result is posted; then steps down.
    fn lead<'a, F>(
        &'a self,
        mut st: MutexGuard<'a, State<T, R>>,
        my_id: u64,
        gather: bool,
        work: &mut F,
    ) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        st.leader_active = true;
        let mut mine = None;
        loop {
            if gather {
                st = self.gather(st);
            }
            let group = self.take_group(&mut st);
            let mut ids = std::mem::take(&mut st.ids);
            ids.clear();
            ids.extend(group.iter().map(|(id, _)| *id));
            drop(st);
            let outcome = catch_unwind(AssertUnwindSafe(|| work(group)));
            st = self.lock();
            // The leader's own result stays here rather than passing through the shared map
            // (for a lone writer, every group is just its own item).
            match outcome {
                Ok(results) => {
                    for (id, r) in results {
                        if id == my_id {
                            mine = Some(Ok(r));
                        } else {
                            st.results.insert(id, Ok(r));
                        }
                    }
                }
                Err(payload) => {
                    let why = format!("panicked: {}", panic_message(payload.as_ref()));
                    for id in &ids {
                        let r = Err(LeaderFailed(why.clone()));
                        if *id == my_id {
                            mine = Some(r);
                        } else {
                            st.results.insert(*id, r);
                        }
                    }
                }
            }
            // How many writers are about: those of this group and those that queued while it
            // was written.
            self.width
                .store((ids.len() + st.pending.len()).max(1), Ordering::Relaxed);
            // An item the work forgot would wait forever.
            for &id in &ids {
                let forgot = || Err(LeaderFailed("no result for the item".into()));
                if id == my_id {
                    mine.get_or_insert_with(forgot);
                } else {
                    st.results.entry(id).or_insert_with(forgot);
                }
            }
            st.ids = ids;
            if mine.is_some() {
                break;
            }
            // Writers of the finished group go on while this thread takes the next group.
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.wake_parked(&st);
        }
        st.leader_active = false;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.wake_parked(&st);
        mine.unwrap_or_else(|| Err(LeaderFailed("no result for the item".into())))
    }

    /// How many followers are parked on the condition variable now.
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.lock().parked
    }

    /// Wakes the parked followers, if any (called with the lock held, after the epoch moved).
    fn wake_parked(&self, st: &State<T, R>) {
        if st.parked > 0 {
            self.done.notify_all();
        }
    }

    /// Removes the next group from the queue: the longest prefix within the budget, and at
    /// least one item.
    fn take_group(&self, st: &mut State<T, R>) -> Vec<(u64, T)> {
        let mut total = 0usize;
        let mut n = 0usize;
        for (_, _, w) in &st.pending {
            let next = total.saturating_add(*w);
            if n > 0 && next > self.budget {
                break;
            }
            total = next;
            n += 1;
        }
        self.queued.fetch_sub(n as u64, Ordering::AcqRel);
        st.pending
            .drain(..n)
            .map(|(id, item, _)| (id, item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    // The other group-commit tests use only the public API: crates/wal/tests/group_commit.rs.
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_parked_follower_is_woken_once_the_leader_is_done() {
        let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::new());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let work = move |group: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            if group.iter().any(|(_, x)| *x == 0) {
                let _ = entered_tx.send(());
                let _ = release_rx.lock().expect("lock").recv();
            }
            group.into_iter().map(|(id, x)| (id, x + 100)).collect()
        };
        let leader = {
            let (gc, work) = (gc.clone(), work.clone());
            std::thread::spawn(move || gc.submit(0, 1, work))
        };
        entered_rx.recv().expect("the leader enters its work");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        {
            let gc = gc.clone();
            std::thread::spawn(move || {
                let _ = done_tx.send(gc.submit(1, 1, work));
            });
        }
        // The follower's spin is bounded; while the leader is held it ends up parked.
        while gc.parked() == 0 {
            std::thread::yield_now();
        }
        release_tx.send(()).expect("release the leader");
        assert_eq!(leader.join().expect("leader"), Ok(100));
        // The leader stepped down with a writer parked: it must have woken it (a missed
        // wake-up leaves it parked for good; the bound only keeps a failure from hanging).
        let r = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the parked follower must be woken");
        assert_eq!(r, Ok(101));
        assert_eq!(gc.parked(), 0);
    }
}
