//! Leader/follower group commit.
//!
//! Writers queue their item; the first writer to find no leader active becomes the leader,
//! takes queued items (its own and the followers', in arrival order, up to the queue's weight
//! budget), and runs the commit work once for all of them — one frame, one `fdatasync`.
//! While a leader works, new writers queue up and form the next group. When the leader's
//! group is done it posts the results and, if writers queued meanwhile, takes them as the next
//! group itself (up to [`MAX_DRAINED_GROUPS`] times) instead of handing leadership to a
//! follower that first has to be woken: a hand-off costs a wake-up, and with few writers
//! the woken follower would then lead a group of one.
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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// How many groups a leader whose own item is done takes on for writers that queued while
/// it worked, before handing leadership away (so one caller is not kept leading forever
/// under sustained load).
pub const MAX_DRAINED_GROUPS: usize = 4;

/// Bounds of the followers' adaptive spin, in `spin_loop` iterations.
const MIN_SPIN: u32 = 64;
const MAX_SPIN: u32 = 1 << 12;

#[derive(Debug)]
struct State<T, R> {
    /// Queued items: id, item, weight.
    pending: Vec<(u64, T, usize)>,
    results: HashMap<u64, Result<R, LeaderFailed>>,
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
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                results: HashMap::new(),
                next_id: 0,
                leader_active: false,
            }),
            done: Condvar::new(),
            budget,
            epoch: AtomicU64::new(0),
            spin: AtomicU32::new(MIN_SPIN * 4),
            queued: AtomicU64::new(0),
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
    /// passes an equivalent `work`: only the leaders' run. A leader whose own item is done
    /// goes on leading the writers that queued meanwhile (at most [`MAX_DRAINED_GROUPS`]
    /// groups) before it returns.
    ///
    /// Fails with [`LeaderFailed`] if the work of this item's group panicked or gave it no
    /// result.
    pub fn submit<F>(&self, item: T, weight: usize, mut work: F) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        let mut st = self.lock();
        let my_id = st.next_id;
        st.next_id += 1;
        st.pending.push((my_id, item, weight));
        self.queued.fetch_add(1, Ordering::AcqRel);
        loop {
            if let Some(r) = st.results.remove(&my_id) {
                return r;
            }
            if !st.leader_active {
                return self.lead(st, my_id, &mut work);
            }
            let seen = self.epoch.load(Ordering::Acquire);
            drop(st);
            let spun = self.spin_until_changed(seen);
            st = self.lock();
            if !spun {
                // Parks until a leader posts results or steps down (both bump the epoch
                // under the lock, so no wake-up is missed).
                while self.epoch.load(Ordering::Acquire) == seen {
                    st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
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

    /// Leads groups until this writer's own result is posted and either nobody is queued or
    /// it has drained [`MAX_DRAINED_GROUPS`] groups for others; then steps down.
    fn lead<'a, F>(
        &'a self,
        mut st: MutexGuard<'a, State<T, R>>,
        my_id: u64,
        work: &mut F,
    ) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        st.leader_active = true;
        let mut drained = 0usize;
        loop {
            let group = self.take_group(&mut st);
            let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
            drop(st);
            let outcome = catch_unwind(AssertUnwindSafe(|| work(group)));
            st = self.lock();
            match outcome {
                Ok(results) => {
                    st.results
                        .extend(results.into_iter().map(|(id, r)| (id, Ok(r))));
                }
                Err(payload) => {
                    let why = format!("panicked: {}", panic_message(payload.as_ref()));
                    for id in &ids {
                        st.results.insert(*id, Err(LeaderFailed(why.clone())));
                    }
                }
            }
            // An item the work forgot would wait forever.
            for id in ids {
                st.results
                    .entry(id)
                    .or_insert_with(|| Err(LeaderFailed("no result for the item".into())));
            }
            let mine_done = st.results.contains_key(&my_id);
            if mine_done {
                if st.pending.is_empty() || drained >= MAX_DRAINED_GROUPS {
                    break;
                }
                drained += 1;
            }
            // Writers of the finished group go on while this thread takes the next group.
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.done.notify_all();
        }
        st.leader_active = false;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.done.notify_all();
        st.results
            .remove(&my_id)
            .unwrap_or_else(|| Err(LeaderFailed("no result for the item".into())))
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
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_gets_its_own_result_and_groups_form() {
        let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::new());
        let groups = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let gc = gc.clone();
                let groups = groups.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let v = t * 1000 + i;
                        let r = gc.submit(v, 1, |group| {
                            groups.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            group.into_iter().map(|(id, x)| (id, x * 2)).collect()
                        });
                        assert_eq!(r, Ok(v * 2));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        // 1600 items; with 8 writers and a slow leader, groups must have formed.
        assert!(groups.load(Ordering::Relaxed) < 1600);
    }

    #[test]
    fn writers_queued_behind_a_leader_are_drained_by_it_as_one_group() {
        const FOLLOWERS: usize = 5;
        let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::new());
        // (thread that ran the work, items of the group)
        type Groups = Vec<(std::thread::ThreadId, Vec<u64>)>;
        let groups: Arc<std::sync::Mutex<Groups>> = Arc::default();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
        let work = {
            let gc = gc.clone();
            let groups = groups.clone();
            move |group: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
                let items: Vec<u64> = group.iter().map(|(_, x)| *x).collect();
                if items == [0] {
                    // The test hook: the first leader stays inside its write until every
                    // follower has queued behind it.
                    let _ = entered_tx.send(());
                    while gc.queued() < FOLLOWERS {
                        std::thread::yield_now();
                    }
                }
                groups
                    .lock()
                    .expect("lock")
                    .push((std::thread::current().id(), items));
                group.into_iter().map(|(id, x)| (id, x + 100)).collect()
            }
        };
        let leader = {
            let gc = gc.clone();
            let work = work.clone();
            std::thread::spawn(move || {
                let r = gc.submit(0, 1, work);
                (std::thread::current().id(), r)
            })
        };
        entered_rx.recv().expect("the leader enters its work");
        let start = Arc::new(std::sync::Barrier::new(FOLLOWERS));
        let followers: Vec<_> = (1..=FOLLOWERS as u64)
            .map(|x| {
                let gc = gc.clone();
                let work = work.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    assert_eq!(gc.submit(x, 1, work), Ok(x + 100));
                })
            })
            .collect();
        for f in followers {
            f.join().expect("follower");
        }
        let (leader_thread, r) = leader.join().expect("leader");
        assert_eq!(r, Ok(100));
        let groups = groups.lock().expect("lock").clone();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0], (leader_thread, vec![0]));
        let (second_thread, mut second) = groups[1].clone();
        second.sort_unstable();
        assert_eq!(second, (1..=FOLLOWERS as u64).collect::<Vec<_>>());
        // Not handed to a follower that had to be woken first: the leader drained them.
        assert_eq!(second_thread, leader_thread);
        assert_eq!(gc.queued(), 0);
    }

    #[test]
    fn a_panicking_leader_fails_its_group_and_the_queue_goes_on() {
        let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::new());
        let work = |group: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            if group.iter().any(|(_, x)| *x == 13) {
                panic!("unlucky item");
            }
            group.into_iter().map(|(id, x)| (id, x + 1)).collect()
        };
        let r = gc.submit(13, 1, work);
        assert_eq!(
            r,
            Err(LeaderFailed("panicked: unlucky item".into())),
            "the panicking group's writer gets an error"
        );
        // The next writer is not stuck behind a leader that never finished.
        let (tx, rx) = std::sync::mpsc::channel();
        let g = gc.clone();
        std::thread::spawn(move || {
            let _ = tx.send(g.submit(1, 1, work));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the queue must go on after a panicking leader");
        assert_eq!(r, Ok(2));
    }

    #[test]
    fn groups_stay_within_the_budget() {
        let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::with_budget(10));
        let biggest = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let gc = gc.clone();
                let biggest = biggest.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        // Weights 4 and 7: no two 7s, and at most two 4s, fit one group,
                        // except an item alone.
                        let w = if (t + i) % 2 == 0 { 4 } else { 7 };
                        let r = gc.submit(w, w as usize, |group| {
                            let total: u64 = group.iter().map(|(_, w)| *w).sum();
                            assert!(total <= 10 || group.len() == 1, "group of {total}");
                            biggest.fetch_max(total as usize, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            group
                        });
                        assert_eq!(r, Ok(w));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(biggest.load(Ordering::Relaxed) <= 10);
    }
}
