//! Group commit: every writer gets its own result, groups form behind a leader, a gathering
//! leader waits for the writers it expects, a failing or panicking leader fails only its group,
//! and groups stay within their weight budget.

use sealdb_wal::{GroupCommit, LeaderFailed};
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

/// Collects the items of every group the work runs.
fn recording(
    groups: &Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
) -> impl FnMut(Vec<(u64, u64)>) -> Vec<(u64, u64)> + Clone + Send + 'static {
    let groups = groups.clone();
    move |group: Vec<(u64, u64)>| {
        let mut items: Vec<u64> = group.iter().map(|(_, x)| *x).collect();
        items.sort_unstable();
        groups.lock().expect("lock").push(items);
        group.into_iter().map(|(id, x)| (id, x + 100)).collect()
    }
}

/// Holds the first group's work until `n` items are queued behind it.
fn held_until_queued(
    gc: &Arc<GroupCommit<u64, u64>>,
    n: usize,
    entered: std::sync::mpsc::Sender<()>,
    mut then: impl FnMut(Vec<(u64, u64)>) -> Vec<(u64, u64)> + Clone + Send + 'static,
) -> impl FnMut(Vec<(u64, u64)>) -> Vec<(u64, u64)> + Clone + Send + 'static {
    let gc = gc.clone();
    move |group: Vec<(u64, u64)>| {
        if group.iter().any(|(_, x)| *x == 0) {
            let _ = entered.send(());
            while gc.queued() < n {
                std::thread::yield_now();
            }
        }
        then(group)
    }
}

#[test]
fn writers_queued_behind_a_leader_form_the_next_group() {
    const FOLLOWERS: usize = 5;
    let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::new());
    let groups = Arc::default();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let work = held_until_queued(&gc, FOLLOWERS, entered_tx, recording(&groups));
    let leader = {
        let (gc, work) = (gc.clone(), work.clone());
        std::thread::spawn(move || gc.submit(0, 1, work))
    };
    entered_rx.recv().expect("the leader enters its work");
    let followers: Vec<_> = (1..=FOLLOWERS as u64)
        .map(|x| {
            let (gc, work) = (gc.clone(), work.clone());
            std::thread::spawn(move || assert_eq!(gc.submit(x, 1, work), Ok(x + 100)))
        })
        .collect();
    for f in followers {
        f.join().expect("follower");
    }
    assert_eq!(leader.join().expect("leader"), Ok(100));
    let groups = groups.lock().expect("lock").clone();
    assert_eq!(
        groups,
        vec![vec![0], (1..=FOLLOWERS as u64).collect::<Vec<_>>()]
    );
    assert_eq!(gc.queued(), 0);
}

#[test]
fn a_gathering_leader_waits_for_the_writers_it_expects() {
    // A window far longer than the test needs: the leader must be seen to wait for the
    // writer, not to happen to meet it.
    let gc: Arc<GroupCommit<u64, u64>> = Arc::new(GroupCommit::with_budget_and_window(
        usize::MAX,
        std::time::Duration::from_secs(600),
    ));
    let groups = Arc::default();
    // Prime: item 0 is held until items 1 and 2 queue, then 1 and 2 form a group of two,
    // so two writers are what the queue has seen at the end of its last group.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let work = held_until_queued(&gc, 2, entered_tx, recording(&groups));
    let first = {
        let (gc, work) = (gc.clone(), work.clone());
        std::thread::spawn(move || gc.submit(0, 1, work))
    };
    entered_rx.recv().expect("the leader enters its work");
    let primers: Vec<_> = (1..=2u64)
        .map(|x| {
            let (gc, work) = (gc.clone(), work.clone());
            std::thread::spawn(move || gc.submit(x, 1, work))
        })
        .collect();
    for p in primers {
        assert!(p.join().expect("primer").is_ok());
    }
    assert_eq!(first.join().expect("first"), Ok(100));
    // Now a lone synced writer leads: it waits for a second writer instead of writing a
    // group of one.
    let gathering = {
        let (gc, work) = (gc.clone(), work.clone());
        std::thread::spawn(move || gc.submit_gathering(3, 1, true, work))
    };
    while gc.queued() < 1 {
        std::thread::yield_now();
    }
    assert_eq!(gc.submit(4, 1, work.clone()), Ok(104));
    assert_eq!(gathering.join().expect("gathering"), Ok(103));
    let groups = groups.lock().expect("lock").clone();
    assert_eq!(groups, vec![vec![0], vec![1, 2], vec![3, 4]]);
}

#[test]
fn an_item_the_work_forgets_fails_and_its_leader_steps_down() {
    let gc: GroupCommit<u64, u64> = GroupCommit::new();
    // The work answers for nothing: the lone writer (its own leader) must get an error,
    // not a result left over from elsewhere, and must not wait forever.
    let forgetful = |_group: Vec<(u64, u64)>| -> Vec<(u64, u64)> { Vec::new() };
    assert_eq!(
        gc.submit(5, 1, forgetful),
        Err(LeaderFailed("no result for the item".into()))
    );
    // A result for an id not in the group is not taken for the leader's own.
    let wrong_id = |group: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
        group.into_iter().map(|(id, x)| (id + 1000, x)).collect()
    };
    assert_eq!(
        gc.submit(6, 1, wrong_id),
        Err(LeaderFailed("no result for the item".into()))
    );
    // Leadership was released each time: the next writer leads and gets its result.
    let work = |group: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
        group.into_iter().map(|(id, x)| (id, x * 10)).collect()
    };
    assert_eq!(gc.submit(7, 1, work), Ok(70));
    assert_eq!(gc.submit(8, 1, work), Ok(80));
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
