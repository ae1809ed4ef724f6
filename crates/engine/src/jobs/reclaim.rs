//! Dropping what a job replaced (memtables, table handles) off the writer's path.

/// Memory waiting for the reclaimer: at most this many items, so what is freed late stays
/// bounded (a memtable already left the write-buffer accounting when it is handed over).
const RECLAIM_QUEUE: usize = 1;

/// Drops `item` on the process's reclaimer thread, which runs at the lowest priority; drops it
/// here instead if the reclaimer is busy or cannot be started.
pub(crate) fn reclaim_later<T: Send + 'static>(item: T) {
    type Reclaim = Box<dyn Send>;
    static RECLAIMER: std::sync::OnceLock<Option<crossbeam_channel::Sender<Reclaim>>> =
        std::sync::OnceLock::new();
    let tx = RECLAIMER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<Reclaim>(RECLAIM_QUEUE);
        std::thread::Builder::new()
            .name("sealdb-reclaim".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(19);
                for item in rx {
                    drop(item);
                }
            })
            .ok()
            .map(|_| tx)
    });
    let item: Reclaim = Box::new(item);
    if let Some(tx) = tx
        && let Err(e) = tx.try_send(item)
    {
        drop(e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the thread it is dropped on.
    struct Tell(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn reclaimed_items_are_dropped_on_the_reclaimer_or_at_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        let here = std::thread::current().name().map(str::to_string);
        for _ in 0..8 {
            reclaim_later(Tell(tx.clone()));
        }
        drop(tx);
        let threads: Vec<Option<String>> = rx.iter().collect();
        // Every item is dropped exactly once, by the reclaimer or (queue full) right here.
        assert_eq!(threads.len(), 8);
        assert!(
            threads
                .iter()
                .all(|t| t.as_deref() == Some("sealdb-reclaim") || *t == here),
            "{threads:?}"
        );
        assert!(
            threads
                .iter()
                .any(|t| t.as_deref() == Some("sealdb-reclaim")),
            "{threads:?}"
        );
    }
}
