//! Measurement: operation kinds, worker threads, histograms and timelines.

use crate::Result;
use sealdb_benches::report::RunRecord;
use sealdb_benches::{Latency, Timeline};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Miss,
    Write,
    Scan,
    Insert,
    Rmw,
}

const OPS: [Op; 6] = [Op::Read, Op::Miss, Op::Write, Op::Scan, Op::Insert, Op::Rmw];

impl Op {
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Miss => "miss",
            Op::Write => "write",
            Op::Scan => "scan",
            Op::Insert => "insert",
            Op::Rmw => "rmw",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Time(Duration),
    Ops(u64),
}

#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) lat: [Latency; 6],
    pub(crate) tl: [Timeline; 6],
    pub(crate) elapsed: Duration,
    /// Ops by background threads are in `lat` too but must not be merged into "all".
    pub(crate) has_background: bool,
}

impl Measured {
    fn merge(&mut self, other: &Measured) {
        for i in 0..OPS.len() {
            self.lat[i].merge(&other.lat[i]);
            self.tl[i].merge(&other.tl[i]);
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// One record per operation kind seen, plus `all` when a workload mixes kinds.
    pub(crate) fn records(&self, engine: &str, workload: &str, threads: usize) -> Vec<RunRecord> {
        let secs = self.elapsed.as_secs_f64();
        let mut out = Vec::new();
        let kinds: Vec<Op> = OPS
            .into_iter()
            .filter(|o| self.lat[o.index()].count() > 0)
            .collect();
        for o in &kinds {
            out.push(RunRecord::new(
                engine,
                workload,
                o.name(),
                threads,
                &self.lat[o.index()],
                &self.tl[o.index()],
                secs,
            ));
        }
        if kinds.len() > 1 && !self.has_background {
            let mut lat = Latency::new();
            let mut tl = Timeline::default();
            for o in &kinds {
                lat.merge(&self.lat[o.index()]);
                tl.merge(&self.tl[o.index()]);
            }
            out.push(RunRecord::new(
                engine, workload, "all", threads, &lat, &tl, secs,
            ));
        }
        out
    }

    pub(crate) fn count(&self, op: Op) -> u64 {
        self.lat[op.index()].count()
    }
}

/// One thread's work: performs one operation and says which kind, or `None` when it has
/// nothing left to do.
pub(crate) type Worker<'a> = Box<dyn FnMut() -> Result<Option<Op>> + Send + 'a>;

/// Runs `counted` workers until `stop` (per thread) and `background` workers until every
/// counted one has finished. Each operation is timed on its own; the clock starts when every
/// thread is ready.
pub(crate) fn run_threads<'a>(
    counted: usize,
    background: usize,
    stop: Stop,
    make: &(dyn Fn(usize) -> Worker<'a> + Sync),
) -> Result<Measured> {
    let barrier = Barrier::new(counted + background);
    let start: OnceLock<Instant> = OnceLock::new();
    let remaining = AtomicUsize::new(counted);
    let results: Vec<Result<Measured>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..counted + background)
            .map(|t| {
                let mut work = make(t);
                let (barrier, start, remaining) = (&barrier, &start, &remaining);
                s.spawn(move || -> Result<Measured> {
                    let is_counted = t < counted;
                    let mut m = Measured::default();
                    barrier.wait();
                    let start = *start.get_or_init(Instant::now);
                    let mut done = 0u64;
                    let outcome = loop {
                        if !is_counted && remaining.load(Ordering::Acquire) == 0 {
                            break Ok(());
                        }
                        let t0 = Instant::now();
                        let op = match work() {
                            Ok(Some(op)) => op,
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        };
                        let t1 = Instant::now();
                        m.lat[op.index()].record(t1 - t0);
                        m.tl[op.index()].tick(t1 - start);
                        done += 1;
                        if is_counted {
                            m.elapsed = t1 - start;
                            let finished = match stop {
                                Stop::Time(d) => t1 - start >= d,
                                Stop::Ops(n) => done >= n,
                            };
                            if finished {
                                break Ok(());
                            }
                        }
                    };
                    if is_counted {
                        remaining.fetch_sub(1, Ordering::AcqRel);
                    }
                    outcome.map(|()| m)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("worker thread panicked".into()))
            })
            .collect()
    });
    let mut all = Measured {
        has_background: background > 0,
        ..Measured::default()
    };
    for r in results {
        all.merge(&r?);
    }
    Ok(all)
}
