//! Reads, live tailing and retention.

use super::*;

impl StreamLog {
    /// Reads records from `start`, at most `max_records` (≥ 1) of them and at most
    /// `max_bytes` of encoded records ([`ChangeRecord::encoded_len`]), except that a read
    /// returns at least one record when one is available, however large.
    ///
    /// `At`/`After` a position whose records retention has removed fail with
    /// [`Error::Trimmed`]. `Latest` returns nothing now (it positions after the newest
    /// record). The index finds the first block to read without scanning.
    pub fn read(&self, start: StartAt, max_records: usize, max_bytes: usize) -> Result<ReadBatch> {
        if max_records == 0 {
            return Err(Error::invalid_argument(
                "a stream read needs max_records >= 1".into(),
            ));
        }
        // Deferred records are readable like written ones: write them first.
        self.flush_pending()?;
        let (mut next, cursor) = {
            let idx = self.index.lock();
            let seq = match start {
                StartAt::TrimHorizon => idx.trimmed_through.saturating_add(1),
                StartAt::Latest => idx.last_seq.saturating_add(1),
                StartAt::At(s) => s,
                StartAt::After(s) => match s.checked_add(1) {
                    Some(s) => s,
                    None => {
                        return Ok(ReadBatch {
                            records: Vec::new(),
                            next: u64::MAX,
                        });
                    }
                },
            };
            if idx.trimmed_through > 0 && seq <= idx.trimmed_through {
                return Err(Error::Trimmed {
                    requested: seq,
                    horizon: idx.horizon(),
                });
            }
            (seq, idx.locate(seq))
        };
        let mut records: Vec<ChangeRecord> = Vec::new();
        let Some((mut seg_no, mut block_no)) = cursor else {
            return Ok(ReadBatch { records, next });
        };
        let mut bytes = 0usize;
        'blocks: while records.len() < max_records {
            enum Step {
                Block(BlockEntry, Option<SealedReader>, PathBuf, FileId),
                Advance(u64),
                Done,
            }
            let step = {
                let idx = self.index.lock();
                match idx.segments.get(&seg_no) {
                    None if records.is_empty() => {
                        return Err(Error::Trimmed {
                            requested: next,
                            horizon: idx.horizon(),
                        });
                    }
                    None => Step::Done,
                    Some(seg) => match seg.blocks.get(block_no) {
                        Some(entry) => Step::Block(
                            *entry,
                            seg.reader.clone().filter(|r| r.len() >= entry.handle.end()),
                            seg.path.clone(),
                            seg.file_id,
                        ),
                        None if seg.closed => idx
                            .segments
                            .range(seg_no.saturating_add(1)..)
                            .next()
                            .map_or(Step::Done, |(n, _)| Step::Advance(*n)),
                        None => Step::Done,
                    },
                }
            };
            let (entry, reader, path, file_id) = match step {
                Step::Done => break,
                Step::Advance(n) => {
                    seg_no = n;
                    block_no = 0;
                    continue;
                }
                Step::Block(entry, reader, path, file_id) => (entry, reader, path, file_id),
            };
            block_no += 1;
            if entry.last_seq < next {
                continue;
            }
            let reader = match reader {
                Some(r) => r,
                None => match self.reopen(seg_no, &path, file_id) {
                    Ok(r) => r,
                    Err(e) => {
                        let idx = self.index.lock();
                        if idx.segments.contains_key(&seg_no) {
                            return Err(e);
                        }
                        if records.is_empty() {
                            return Err(Error::Trimmed {
                                requested: next,
                                horizon: idx.horizon(),
                            });
                        }
                        break;
                    }
                },
            };
            let block = reader.read_block(entry.handle)?;
            let offset = Some(entry.handle.offset);
            if block.is_final {
                return Err(malformed_in(
                    &path,
                    offset,
                    "indexed records block is final",
                ));
            }
            let decoded = decode_records_frame(&block.data)
                .map_err(|why| malformed_in(&path, offset, why))?;
            if decoded.first().map(|r| r.seq) != Some(entry.first_seq)
                || decoded.last().map(|r| r.seq) != Some(entry.last_seq)
            {
                return Err(malformed_in(
                    &path,
                    offset,
                    "block's sequence numbers differ from the index",
                ));
            }
            for r in decoded {
                if r.seq < next {
                    continue;
                }
                let len = r.encoded_len();
                if records.len() >= max_records
                    || (!records.is_empty() && bytes.saturating_add(len) > max_bytes)
                {
                    break 'blocks;
                }
                bytes = bytes.saturating_add(len);
                next = r.seq.saturating_add(1);
                records.push(r);
            }
        }
        Ok(ReadBatch { records, next })
    }

    /// Opens a fresh reader on a segment (the cached one is missing or shorter than the
    /// block), checks that the file is still the one written, and caches it. The file-id
    /// check also keeps out a segment moved in from another stream: file ids are random and
    /// never reused, and this one was bound to this stream when its start frame was verified
    /// (at open) or written (at creation).
    fn reopen(&self, seg_no: u64, path: &Path, file_id: FileId) -> Result<SealedReader> {
        let keyring = self.keyring.read().clone();
        let exp = chain_config(self.opts.cipher).expected(&keyring);
        let reader = SealedReader::open(self.fs.as_ref(), path, &keyring, &exp)?;
        if reader.header().file_id != file_id {
            return Err(sealdb_crypto::Error::integrity(
                path.display().to_string(),
                None,
                IntegrityReason::ReplacedFile,
            )
            .into());
        }
        let mut idx = self.index.lock();
        if let Some(seg) = idx.segments.get_mut(&seg_no)
            && seg.reader.as_ref().is_none_or(|c| c.len() < reader.len())
        {
            seg.reader = Some(reader.clone());
        }
        Ok(reader)
    }

    /// Blocks until a record with a sequence number greater than `after_seq` has been
    /// appended (returns `true`) or `timeout` passes (returns whether one has by then).
    pub fn wait_for(&self, after_seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut idx = self.index.lock();
        while idx.last_seq.max(idx.pending_seq) <= after_seq {
            match deadline {
                Some(d) => {
                    if self.appended.wait_until(&mut idx, d).timed_out() {
                        return idx.last_seq.max(idx.pending_seq) > after_seq;
                    }
                }
                None => self.appended.wait(&mut idx),
            }
        }
        true
    }

    /// Removes whole closed segments, oldest first, while the oldest one is (a) empty, (b)
    /// older than `max_age` (its newest record committed before `now_ms - max_age`), or (c)
    /// the stream's total size exceeds `max_bytes`. Never removes the active segment. Readers
    /// asking for removed records get [`Error::Trimmed`] from then on.
    pub fn trim(
        &self,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
        now_ms: u64,
    ) -> Result<TrimReport> {
        let _serial = self.trim_lock.lock();
        let doomed: Vec<(PathBuf, u64)> = {
            let mut guard = self.index.lock();
            let idx = &mut *guard;
            let cutoff = max_age
                .map(|a| now_ms.saturating_sub(u64::try_from(a.as_millis()).unwrap_or(u64::MAX)));
            let mut total = idx.total_bytes();
            let mut doomed = Vec::new();
            for seg in idx.segments.values() {
                if !seg.closed {
                    break;
                }
                let empty = seg.blocks.is_empty();
                let expired =
                    cutoff.is_some_and(|c| seg.times.is_none_or(|(_, newest)| newest < c));
                let over = max_bytes.is_some_and(|m| total > m);
                if !(empty || expired || over) {
                    break;
                }
                total = total.saturating_sub(seg.bytes);
                doomed.push((seg.number, seg.path.clone(), seg.bytes));
            }
            for (n, _, _) in &doomed {
                idx.segments.remove(n);
            }
            if let Some(first) = idx.segments.values().next() {
                idx.trimmed_through = idx.trimmed_through.max(first.base_seq);
            }
            doomed.into_iter().map(|(_, p, b)| (p, b)).collect()
        };
        // Oldest first, each removal made durable before the next: after a crash the chain
        // on disk is still a suffix, never one with a hole.
        let mut report = TrimReport::default();
        let (paths, bytes): (Vec<PathBuf>, Vec<u64>) = doomed.into_iter().unzip();
        sealdb_log::remove_oldest_first(self.fs.as_ref(), &self.dir, &paths, &mut |i| {
            report.segments_removed += 1;
            report.bytes_removed += bytes.get(i).copied().unwrap_or(0);
        })?;
        report.horizon = self.horizon();
        Ok(report)
    }

    /// Replaces the keyring; segments created from now on use its current data-key version.
    /// It must still hold the versions of retained segments for reads of them.
    pub fn set_keyring(&self, keyring: Keyring) {
        *self.keyring.write() = keyring;
    }

    /// Paths of every retained segment (closed and active), oldest first: for backups and
    /// verification.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.index
            .lock()
            .segments
            .values()
            .map(|s| s.path.clone())
            .collect()
    }

    /// Bytes the retained segments occupy.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().total_bytes()
    }

    /// The stream directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let cfg = chain_config(CipherId::ChaCha20Poly1305);
        assert_eq!(segment_file_name(42), "0000000000000042.stream");
        assert_eq!(cfg.parse_name("0000000000000042.stream"), Some(42));
        assert_eq!(cfg.parse_name("0000000000000042.wal"), None);
    }

    #[test]
    fn stream_log_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StreamLog>();
    }
}
