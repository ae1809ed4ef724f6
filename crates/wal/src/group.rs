//! Leader/follower group commit.
//!
//! Writers queue their item; the first writer to find no leader active becomes the leader,
//! takes every queued item (its own and the followers'), and runs the commit work once for all
//! of them — one frame, one `fdatasync`. Followers sleep until their result is posted. While a
//! leader works, new writers queue up and form the next group, so under load groups grow and
//! syncs are shared.

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;

#[derive(Debug)]
struct State<T, R> {
    pending: Vec<(u64, T)>,
    results: HashMap<u64, R>,
    next_id: u64,
    leader_active: bool,
}

/// A group-commit queue carrying items of type `T` and results of type `R`.
#[derive(Debug)]
pub struct GroupCommit<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
}

impl<T, R> Default for GroupCommit<T, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, R> GroupCommit<T, R> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                results: HashMap::new(),
                next_id: 0,
                leader_active: false,
            }),
            done: Condvar::new(),
        }
    }

    /// Submits `item` and waits for its result. If this writer becomes the leader, it calls
    /// `work` with the whole group (ids and items, in arrival order); `work` must return one
    /// result per id. Every writer passes an equivalent `work`: only the leader's runs.
    pub fn submit<F>(&self, item: T, work: F) -> R
    where
        F: FnOnce(Vec<(u64, T)>) -> Vec<(u64, R)>,
    {
        let mut st = self.state.lock();
        let my_id = st.next_id;
        st.next_id += 1;
        st.pending.push((my_id, item));
        let mut work = Some(work);
        loop {
            if let Some(r) = st.results.remove(&my_id) {
                return r;
            }
            if !st.leader_active
                && let Some(work) = work.take()
            {
                st.leader_active = true;
                let group = std::mem::take(&mut st.pending);
                drop(st);
                let results = work(group);
                st = self.state.lock();
                st.results.extend(results);
                st.leader_active = false;
                self.done.notify_all();
                continue;
            }
            self.done.wait(&mut st);
        }
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
                        let r = gc.submit(v, |group| {
                            groups.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            group.into_iter().map(|(id, x)| (id, x * 2)).collect()
                        });
                        assert_eq!(r, v * 2);
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
}
