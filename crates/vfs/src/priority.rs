//! Scheduling priority of background threads.
//!
//! Flushes and compactions must not take the core a committing writer needs: on a machine
//! with few cores, a background thread at the writer's priority preempts it for a whole
//! scheduler tick. A lowered priority keeps them running whenever a core is otherwise idle
//! and yields to foreground threads when it is not. Threads a writer may wait on directly
//! (creating the next WAL segment) keep the normal priority: load could starve them.

/// The nice value background threads run at: well below the default (0), far from the
/// lowest (19) so they still make progress on a busy machine (a flush that never runs stalls
/// every writer on memtable space).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to nice value `nice` (0..=19; higher is
/// lower priority). Only the calling thread changes, not the process. Returns whether the
/// priority was changed: always `false` off Linux, where it does nothing.
///
/// An unprivileged thread can lower its priority but not raise it again, so call this only
/// on threads that stay background threads.
pub fn lower_thread_priority(nice: i32) -> bool {
    imp::lower(nice.clamp(0, 19))
}

#[cfg(target_os = "linux")]
mod imp {
    #[allow(unsafe_code)]
    pub(super) fn lower(nice: i32) -> bool {
        // SAFETY: `gettid` takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let Ok(who) = libc::id_t::try_from(tid) else {
            return false;
        };
        // SAFETY: `setpriority` only reads its integer arguments. On Linux, PRIO_PROCESS with
        // a thread id sets that one thread's nice value (threads are scheduled individually).
        unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn lower(_nice: i32) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn own_nice() -> i32 {
        // SAFETY: as in `lower`; `getpriority` only reads its integer arguments.
        unsafe {
            let who = libc::id_t::try_from(libc::gettid()).expect("tid");
            libc::getpriority(libc::PRIO_PROCESS, who)
        }
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        let target = (before + 5).min(19);
        let lowered = std::thread::spawn(move || (lower_thread_priority(target), own_nice()))
            .join()
            .expect("thread");
        assert_eq!(lowered, (true, target));
        // The spawning thread keeps its own priority.
        assert_eq!(own_nice(), before);
    }
}
