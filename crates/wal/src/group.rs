//! Leader/follower group commit.
//!
//! Writers queue their item; the first writer to find no leader active becomes the leader,
//! takes queued items (its own and the followers', in arrival order, up to the queue's weight
//! budget), and runs the commit work once for all of them — one frame, one `fdatasync`.
//! Followers sleep until their result is posted. While a leader works, new writers queue up
//! and form the next group, so under load groups grow and syncs are shared.
//!
//! A panic in the leader's work (it may run application code, such as an index extractor)
//! is contained: every writer of that group gets [`LeaderFailed`] and the queue goes on with
//! the next leader, instead of every writer waiting forever for a leader that is gone.

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

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
        }
    }

    /// Submits `item` (of `weight` against the budget) and waits for its result. Whenever
    /// this writer finds no leader active while its result is pending, it leads: it calls
    /// `work` with the next group (ids and items, in arrival order), which need not hold its
    /// own item (then it may lead again). `work` must return one result per id. Every writer
    /// passes an equivalent `work`: only the leaders' run.
    ///
    /// Fails with [`LeaderFailed`] if the work of this item's group panicked or gave it no
    /// result.
    pub fn submit<F>(&self, item: T, weight: usize, mut work: F) -> Result<R, LeaderFailed>
    where
        F: FnMut(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        let mut st = self.state.lock();
        let my_id = st.next_id;
        st.next_id += 1;
        st.pending.push((my_id, item, weight));
        loop {
            if let Some(r) = st.results.remove(&my_id) {
                return r;
            }
            if !st.leader_active {
                st.leader_active = true;
                let group = self.take_group(&mut st);
                let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
                drop(st);
                let outcome = catch_unwind(AssertUnwindSafe(|| work(group)));
                st = self.state.lock();
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
                st.leader_active = false;
                self.done.notify_all();
                continue;
            }
            self.done.wait(&mut st);
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
