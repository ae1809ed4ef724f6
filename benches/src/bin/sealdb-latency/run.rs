//! The run: fresh-database and loaded workloads on every engine in turn, recorded into the
//! report.

use crate::Result;
use crate::cli::{Settings, Workload};
use crate::measure::{Measured, Op, Stop, run_threads};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealdb_benches::engine::{Engine, EngineConfig, EngineKind, dir_size, process_write_bytes};
use sealdb_benches::report::{Report, SpaceRecord};
use sealdb_benches::rng::{Distribution, KeyChooser, Rng};
use sealdb_benches::{KeySpace, Latency, Timeline, Values};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Bench {
    pub(crate) settings: Settings,
    pub(crate) keys: KeySpace,
    pub(crate) values: Values,
    pub(crate) engines: Vec<EngineKind>,
    pub(crate) root: PathBuf,
    pub(crate) cfg: EngineConfig,
    pub(crate) cold_cfg: EngineConfig,
    pub(crate) report: Report,
    /// Largest key index a random-key write may use (inside the key space's digits).
    pub(crate) random_key_limit: u64,
}

/// A loaded engine kept open across the loaded workloads.
pub(crate) struct Slot {
    kind: EngineKind,
    dir: PathBuf,
    pub(crate) engine: Option<Box<dyn Engine>>,
    /// Present keys `0..count` (grows with YCSB inserts).
    count: AtomicU64,
    warm: bool,
}

fn progress(len: u64, prefix: String) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>14} {msg:<10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix);
    pb
}

impl Bench {
    fn record(&mut self, m: &Measured, engine: &str, workload: &str, threads: usize) {
        self.report
            .runs
            .extend(m.records(engine, workload, threads));
    }

    /// Records space and write amplification; `written` = key-value pairs the workload
    /// wrote, `live` = pairs in the data set, `io_before` = the process's write bytes when
    /// the workload began.
    fn space(
        &mut self,
        engine: &dyn Engine,
        kind: EngineKind,
        workload: &str,
        dir: &Path,
        (written, live): (u64, u64),
        io_before: Option<u64>,
    ) {
        let user_bytes = written * self.pair_bytes();
        let live_keys = live;
        let io = match (io_before, process_write_bytes()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let dir_bytes = dir_size(dir);
        let live_bytes = live_keys * (self.keys.key_size() + self.values.size()) as u64;
        self.report.space.push(SpaceRecord {
            engine: kind.name().to_string(),
            workload: workload.to_string(),
            user_bytes,
            io_write_bytes: io,
            write_amp_io: io.map(|b| b as f64 / user_bytes.max(1) as f64),
            write_amp_engine: engine.engine_write_amp(),
            dir_bytes,
            live_bytes,
            space_amp: dir_bytes as f64 / live_bytes.max(1) as f64,
        });
    }

    fn pair_bytes(&self) -> u64 {
        (self.keys.key_size() + self.values.size()) as u64
    }

    fn fresh_dir(&self, kind: EngineKind, workload: &str) -> Result<PathBuf> {
        let dir = self.root.join(format!("{}-{workload}", kind.name()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(dir)
    }

    // ---- workloads on a fresh database ------------------------------------------------

    pub(crate) fn run_fresh(&mut self, w: Workload) -> Result<()> {
        match w {
            Workload::Put => self.put_workload(),
            Workload::Fillseq | Workload::Fillrandom => {
                let threads = if w == Workload::Fillseq {
                    vec![1]
                } else {
                    self.settings.threads_for(w)
                };
                for t in threads {
                    for kind in self.engines.clone() {
                        self.fill(kind, w, t)?;
                    }
                }
                Ok(())
            }
            Workload::Syncwrites => {
                for t in self.settings.threads_for(w) {
                    for kind in self.engines.clone() {
                        self.syncwrites(kind, t)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn put_workload(&mut self) -> Result<()> {
        let (lat, tl, elapsed) = raw_append_fdatasync(&self.root, self.settings.synced_ops)?;
        let m = Measured {
            lat: {
                let mut l: [Latency; 6] = Default::default();
                l[Op::Write.index()] = lat;
                l
            },
            tl: {
                let mut t: [Timeline; 6] = Default::default();
                t[Op::Write.index()] = tl;
                t
            },
            elapsed,
            has_background: false,
        };
        self.record(&m, "raw-4k-fdatasync", "put sync", 1);
        let threads = self.settings.threads_for(Workload::Put);
        for kind in self.engines.clone() {
            let dir = self.fresh_dir(kind, "put")?;
            let io0 = process_write_bytes();
            let engine = kind.open(&dir, &self.cfg)?;
            let mut total = 0u64;
            for &t in &threads {
                for sync in [false, true] {
                    let ops = if sync {
                        self.settings.synced_ops
                    } else {
                        self.settings.unsynced_ops
                    };
                    eprintln!(
                        "put {} x{t}: {} ({ops} per thread)",
                        if sync { "sync" } else { "nosync" },
                        kind.name()
                    );
                    let m = self.random_puts(engine.as_ref(), t, Stop::Ops(ops), sync)?;
                    total += m.count(Op::Write);
                    let label = if sync { "put sync" } else { "put nosync" };
                    self.record(&m, kind.name(), label, t);
                }
            }
            engine.flush()?;
            eprintln!("  {}: {}", kind.name(), engine.describe());
            self.space(engine.as_ref(), kind, "put", &dir, (total, total), io0);
            drop(engine);
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Unsynced or synced puts of random, practically unique keys.
    fn random_puts(
        &self,
        engine: &dyn Engine,
        threads: usize,
        stop: Stop,
        sync: bool,
    ) -> Result<Measured> {
        let seed = self.settings.seed ^ u64::from(sync);
        let (keys, values, limit) = (self.keys, &self.values, self.random_key_limit);
        run_threads(threads, 0, stop, &|t| {
            let mut rng = Rng::new(seed.wrapping_add(1000 * t as u64 + 1));
            let mut k = Vec::new();
            Box::new(move || {
                keys.present(rng.below(limit), &mut k);
                engine.put(&k, values.get(rng.next_u64()), sync)?;
                Ok(Some(Op::Write))
            })
        })
    }

    fn fill(&mut self, kind: EngineKind, w: Workload, threads: usize) -> Result<()> {
        let n = self.settings.keys;
        let name = w.name();
        eprintln!("{name} x{threads}: {} ({n} keys)", kind.name());
        let dir = self.fresh_dir(kind, &name)?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let order: Vec<u64> = if w == Workload::Fillseq {
            (0..n).collect()
        } else {
            let mut v: Vec<u64> = (0..n).collect();
            Rng::new(self.settings.seed).shuffle(&mut v);
            v
        };
        let per = n.div_ceil(threads as u64);
        let (keys, values, order, e) = (self.keys, &self.values, &order, engine.as_ref());
        let m = run_threads(threads, 0, Stop::Ops(u64::MAX), &|t| {
            let mut i = t as u64 * per;
            let end = ((t as u64 + 1) * per).min(n);
            let mut k = Vec::new();
            Box::new(move || {
                if i >= end {
                    return Ok(None);
                }
                let idx = order[i as usize];
                keys.present(idx, &mut k);
                e.put(&k, values.get(idx), false)?;
                i += 1;
                Ok(Some(Op::Write))
            })
        })?;
        self.record(&m, kind.name(), &name, threads);
        engine.flush()?;
        eprintln!("  {}: {}", kind.name(), engine.describe());
        self.space(engine.as_ref(), kind, &name, &dir, (n, n), io0);
        drop(engine);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    fn syncwrites(&mut self, kind: EngineKind, threads: usize) -> Result<()> {
        eprintln!("syncwrites x{threads}: {}", kind.name());
        let dir = self.fresh_dir(kind, "syncwrites")?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let m = self.random_puts(engine.as_ref(), threads, self.settings.stop(), true)?;
        self.record(&m, kind.name(), "syncwrites", threads);
        let n = m.count(Op::Write);
        engine.flush()?;
        self.space(engine.as_ref(), kind, "syncwrites", &dir, (n, n), io0);
        drop(engine);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    // ---- workloads on the loaded database -----------------------------------------------

    pub(crate) fn load(&mut self, kind: EngineKind) -> Result<Slot> {
        let n = self.settings.keys;
        let dir = self.fresh_dir(kind, "loaded")?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let mut order: Vec<u64> = (0..n).collect();
        Rng::new(self.settings.seed ^ 0x10ad).shuffle(&mut order);
        let pb = progress(n, kind.name().to_string());
        pb.set_message("load");
        let started = Instant::now();
        let mut batch = Vec::with_capacity(1000);
        for chunk in order.chunks(1000) {
            batch.clear();
            for &i in chunk {
                let mut k = Vec::new();
                self.keys.present(i, &mut k);
                batch.push((k, self.values.get(i).to_vec()));
            }
            engine.put_batch(&batch)?;
            pb.inc(chunk.len() as u64);
        }
        pb.set_message("compact");
        engine.compact()?;
        pb.finish_and_clear();
        eprintln!(
            "load: {} {n} keys in {:.1} s (with compaction); {}",
            kind.name(),
            started.elapsed().as_secs_f64(),
            engine.describe()
        );
        self.space(engine.as_ref(), kind, "load+compact", &dir, (n, n), io0);
        Ok(Slot {
            kind,
            dir,
            engine: Some(engine),
            count: AtomicU64::new(n),
            warm: false,
        })
    }

    fn warm(&self, slot: &mut Slot) -> Result<()> {
        if slot.warm {
            return Ok(());
        }
        let engine = slot.engine.as_deref().ok_or("engine is closed")?;
        let seen = engine.scan(b"", usize::MAX)? as u64;
        let expected = slot.count.load(Ordering::Relaxed);
        if seen != expected {
            eprintln!(
                "warning: {} holds {seen} keys where {expected} were written",
                slot.kind.name()
            );
        }
        slot.warm = true;
        Ok(())
    }

    pub(crate) fn run_loaded(&mut self, w: Workload, slots: &mut [Slot]) -> Result<()> {
        let dists: Vec<Option<Distribution>> = if w.is_ycsb() {
            self.settings.dists.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for t in self.settings.threads_for(w) {
            for &dist in &dists {
                let label = match dist {
                    Some(d) => format!("{}/{}", w.name(), d.label()),
                    None => w.name(),
                };
                for slot in slots.iter_mut() {
                    let extra = if w == Workload::Readwhilewriting {
                        " + 1 writer"
                    } else {
                        ""
                    };
                    eprintln!("{label} x{t}{extra}: {}", slot.kind.name());
                    if w == Workload::Readcold {
                        // Close, reopen with a tiny cache, read, close, reopen as before.
                        slot.engine = None;
                        let cold = slot.kind.open(&slot.dir, &self.cold_cfg)?;
                        let m = self.loaded_workload(w, cold.as_ref(), slot, t, dist)?;
                        self.record(&m, slot.kind.name(), &label, t);
                        drop(cold);
                        slot.engine = Some(slot.kind.open(&slot.dir, &self.cfg)?);
                        slot.warm = false;
                        continue;
                    }
                    self.warm(slot)?;
                    let engine = slot.engine.as_deref().ok_or("engine is closed")?;
                    let io0 = process_write_bytes();
                    let m = self.loaded_workload(w, engine, slot, t, dist)?;
                    self.record(&m, slot.kind.name(), &label, t);
                    if w.writes() {
                        let written = m.count(Op::Write) + m.count(Op::Insert) + m.count(Op::Rmw);
                        let live = slot.count.load(Ordering::Relaxed);
                        self.space(engine, slot.kind, &label, &slot.dir, (written, live), io0);
                        eprintln!("  {}: {}", slot.kind.name(), engine.describe());
                        engine.compact()?;
                        slot.warm = false;
                    }
                }
            }
        }
        Ok(())
    }

    fn loaded_workload(
        &self,
        w: Workload,
        engine: &dyn Engine,
        slot: &Slot,
        threads: usize,
        dist: Option<Distribution>,
    ) -> Result<Measured> {
        let stop = self.settings.stop();
        let seed = self.settings.seed ^ ((w as u64) << 8);
        let (keys, values, count) = (self.keys, &self.values, &slot.count);
        let scan_len = self.settings.scan_len;
        let rng_for = |t: usize| Rng::new(seed.wrapping_add(7919 * t as u64 + 1));
        match w {
            Workload::Readrandom | Workload::Readcold => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    engine.get(&k)?.ok_or("a present key was not found")?;
                    Ok(Some(Op::Read))
                })
            }),
            Workload::Readmissing => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.absent(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    if engine.get(&k)?.is_some() {
                        return Err("an absent key was found".into());
                    }
                    Ok(Some(Op::Miss))
                })
            }),
            Workload::Scan => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    engine.scan(&k, scan_len)?;
                    Ok(Some(Op::Scan))
                })
            }),
            Workload::Readwhilewriting => run_threads(threads, 1, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                let writer = t == threads;
                Box::new(move || {
                    let i = rng.below(count.load(Ordering::Relaxed));
                    keys.present(i, &mut k);
                    if writer {
                        engine.put(&k, values.get(rng.next_u64()), false)?;
                        Ok(Some(Op::Write))
                    } else {
                        engine.get(&k)?.ok_or("a present key was not found")?;
                        Ok(Some(Op::Read))
                    }
                })
            }),
            Workload::Mixed => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    if rng.below(2) == 0 {
                        engine.get(&k)?.ok_or("a present key was not found")?;
                        Ok(Some(Op::Read))
                    } else {
                        engine.put(&k, values.get(rng.next_u64()), false)?;
                        Ok(Some(Op::Write))
                    }
                })
            }),
            _ if w.is_ycsb() => {
                let dist = dist.unwrap_or(Distribution::Uniform);
                let mix = YcsbMix::of(w);
                let items = count.load(Ordering::Relaxed);
                let chooser = KeyChooser::new(dist, w == Workload::YcsbD, items);
                run_threads(threads, 0, stop, &|t| {
                    let mut rng = rng_for(t);
                    let mut chooser = chooser.clone();
                    let mut k = Vec::new();
                    Box::new(move || {
                        let r = rng.next_f64();
                        let present = count.load(Ordering::Relaxed);
                        if r < mix.insert {
                            // New keys extend the key space; readers see them once acked.
                            let i = count.fetch_add(1, Ordering::AcqRel);
                            keys.present(i, &mut k);
                            engine.put(&k, values.get(i), false)?;
                            return Ok(Some(Op::Insert));
                        }
                        keys.present(chooser.next(&mut rng, present), &mut k);
                        let r = r - mix.insert;
                        if r < mix.read {
                            engine.get(&k)?;
                            Ok(Some(Op::Read))
                        } else if r < mix.read + mix.update {
                            engine.put(&k, values.get(rng.next_u64()), false)?;
                            Ok(Some(Op::Write))
                        } else if r < mix.read + mix.update + mix.scan {
                            engine.scan(&k, rng.range_inclusive(1, 100) as usize)?;
                            Ok(Some(Op::Scan))
                        } else {
                            std::hint::black_box(engine.get(&k)?);
                            engine.put(&k, values.get(rng.next_u64()), false)?;
                            Ok(Some(Op::Rmw))
                        }
                    })
                })
            }
            _ => Err(format!("{} is not a loaded workload", w.name()).into()),
        }
    }
}

/// YCSB core workload proportions (insert, read, update, scan; read-modify-write is the rest).
#[derive(Debug, Clone, Copy)]
struct YcsbMix {
    insert: f64,
    read: f64,
    update: f64,
    scan: f64,
}

impl YcsbMix {
    fn of(w: Workload) -> Self {
        let (insert, read, update, scan) = match w {
            Workload::YcsbA => (0.0, 0.5, 0.5, 0.0),
            Workload::YcsbB => (0.0, 0.95, 0.05, 0.0),
            Workload::YcsbC => (0.0, 1.0, 0.0, 0.0),
            Workload::YcsbD => (0.05, 0.95, 0.0, 0.0),
            Workload::YcsbE => (0.05, 0.0, 0.0, 0.95),
            // F: 50% reads, 50% read-modify-writes.
            _ => (0.0, 0.5, 0.0, 0.0),
        };
        Self {
            insert,
            read,
            update,
            scan,
        }
    }
}

fn raw_append_fdatasync(dir: &Path, ops: u64) -> Result<(Latency, Timeline, Duration)> {
    let path = dir.join("raw-append.bin");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0xa5u8; 4096];
    let mut lat = Latency::new();
    let mut tl = Timeline::default();
    let start = Instant::now();
    for _ in 0..ops {
        let t0 = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        let t1 = Instant::now();
        lat.record(t1 - t0);
        tl.tick(t1 - start);
    }
    let elapsed = start.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((lat, tl, elapsed))
}
