//! The queue: records in, batches out, acknowledgements, and making it durable.

use super::*;

/// An entry that left the queue, as its `records` value described it.
struct Left {
    seq: u64,
    at: Option<bodies::Location>,
}

impl Spool {
    /// The body of entry `seq`, whose `records` value is `v`. `Some(Err(why))` when that value or
    /// the frame it points to is damaged; `None` when the entry was acknowledged while being
    /// read (its segment may be gone).
    pub(super) fn stored(
        &self,
        seq: u64,
        v: &[u8],
    ) -> Result<Option<Result<Vec<u8>, String>>, SpoolError> {
        let Some((at, _)) = bodies::Location::decode(v) else {
            return Ok(Some(Err("its index value is damaged".into())));
        };
        match self.bodies.read(seq, at).map_err(|e| self.log_err(e))? {
            Ok(body) => Ok(Some(Ok(body))),
            Err(_)
                if !self
                    .records
                    .contains_key(seq_key(seq))
                    .map_err(|e| self.err(e))? =>
            {
                Ok(None)
            }
            Err(why) => Ok(Some(Err(why))),
        }
    }

    /// Queues a record unless it was seen before. Not durable until [`Spool::flush`] returns.
    /// With `advance_watermark`, the terminal's watermark moves up to its signTime.
    pub fn append(
        &self,
        terminal: &str,
        rec: &Normalized,
        photo: Option<&[u8]>,
        advance_watermark: bool,
    ) -> Result<Appended, SpoolError> {
        self.append_encoded(
            &Encoded::new(terminal, &Incoming::of(rec, photo), now_ms()),
            advance_watermark,
        )
    }

    /// [`Spool::append`] for a record already encoded (by the writer, which measured it first).
    pub fn append_encoded(
        &self,
        rec: &Encoded<'_>,
        advance_watermark: bool,
    ) -> Result<Appended, SpoolError> {
        let seen = seen_key(rec.terminal, rec.sign_time, rec.event_id);
        if self.seen.contains_key(&seen).map_err(|e| self.err(e))? {
            return Ok(Appended::Duplicate);
        }
        self.append_checked(rec, advance_watermark)
            .map(Appended::Stored)
    }

    /// Appends a record not seen before (or put back from quarantine): its sequence number.
    pub(super) fn append_checked(
        &self,
        rec: &Encoded<'_>,
        advance_watermark: bool,
    ) -> Result<u64, SpoolError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(SpoolError::Stopped);
        }
        let seen = seen_key(rec.terminal, rec.sign_time, rec.event_id);
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        // The photo first: a record on disk whose photo is not is caught by its PhotoRef.
        if let Some(p) = rec.photo {
            self.photos.put(seq, p).map_err(|e| self.photo_err(e))?;
        }
        // The body before its index: an index entry whose body is missing is a loss.
        let at = match self.bodies.append(seq, &rec.value, rec.photo.is_some()) {
            Ok(at) => at,
            Err(e) => {
                // A full disk, most likely: the photo must not stay behind uncounted.
                if rec.photo.is_some() {
                    let _ = self.photos.remove(seq);
                }
                return Err(self.log_err(e));
            }
        };
        let pending = pending_key(rec.terminal, rec.sign_time, seq);
        let index = at.encode(&pending);
        let indexed = (index.len() + pending.len() + seen.len()) as u64;
        let watermark = advance_watermark.then(|| {
            (
                wm_key(rec.terminal),
                crate::pipeline::clocks::watermark_limit(now_ms() / 1000),
            )
        });
        // In this order, each key only once the ones before it are written: sled replays its log
        // in order after a crash, so it keeps a prefix of these and never a `seen` key without
        // its entry (backfill's copy of a record lost that way would be taken for a duplicate).
        // An entry without its `pending` key is mended at the next open. (A transaction would
        // say the same, but sled seals each one into its log at once: measured, it made a drain
        // 2.5 times slower than plain writes, BENCHMARKS.md.)
        let err = |e| self.err(e);
        self.records.insert(seq_key(seq), index).map_err(err)?;
        self.pending.insert(pending, &[]).map_err(err)?;
        self.seen.insert(seen, &[]).map_err(err)?;
        if let Some((key, limit)) = &watermark {
            self.meta
                .fetch_and_update(key, |old| {
                    marks::raised(old.map(key_seq), rec.sign_time, *limit)
                        .map(|new| new.to_be_bytes().to_vec())
                        .or_else(|| old.map(<[u8]>::to_vec))
                })
                .map_err(err)?;
        }
        self.unflushed.fetch_add(indexed, Ordering::SeqCst);
        if let Some(p) = rec.photo {
            self.photo_disk
                .fetch_add(photos::allocated(p.len() as u64), Ordering::SeqCst);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(seq)
    }

    /// Makes every earlier write durable (fsync): the batch's photos and log frames on a thread
    /// of their own, sled beside them (two fsyncs one after the other cost half a millisecond
    /// more per batch, measured). Group commit: call once per batch. Blocks.
    ///
    /// Then it unlinks the frames' segments and the photos that acknowledgements made before it
    /// freed: only now is their leaving durable.
    ///
    /// A flush that fails stops the spool for good ([`SpoolError::NotDurable`]): it is never
    /// retried, as a second fsync would report success for what the first could not write.
    pub fn flush(&self) -> Result<(), SpoolError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(SpoolError::Stopped);
        }
        let flushed = self.flush_index_and_files();
        if flushed.is_err() {
            self.stopped.store(true, Ordering::SeqCst);
            // For the next process of this boot (a power cut takes the unwritten pages with it,
            // and this file too): see `recovery::renew_index_files`. Best effort.
            let _ = std::fs::write(self.dir.join(recovery::NOT_DURABLE), b"");
        }
        flushed
    }

    fn flush_index_and_files(&self) -> Result<(), SpoolError> {
        // Every entry below `upto` has been written to the log (one writer appends and flushes).
        let upto = self.next_seq.load(Ordering::SeqCst);
        // sled's flush runs beside the log's sync, so the mark it carries is the one an earlier
        // flush made true; `open` checks the entries from there on.
        let proven = self.log_synced.load(Ordering::SeqCst);
        self.meta
            .insert(LOG_SYNCED, &proven.to_be_bytes())
            .map_err(|e| self.err(e))?;
        // Counted before the flush: an entry written meanwhile is counted twice, never not at all.
        let flushed = self.unflushed.load(Ordering::SeqCst);
        // Freed by acknowledgements made before this flush, so durably freed once it returns.
        let segments = self.bodies.take_doomed();
        let photos = std::mem::take(&mut *self.doomed_photos());
        let (files, index) = std::thread::scope(|scope| {
            let files = scope.spawn(|| {
                let not_durable = |what| move |source| SpoolError::NotDurable { what, source };
                self.photos.sync().map_err(not_durable("photos"))?;
                self.bodies.sync().map_err(not_durable("log"))
            });
            let index = match self.db.flush() {
                Err(sled::Error::Io(source)) => Err(SpoolError::NotDurable {
                    what: "index",
                    source,
                }),
                other => other.map_err(|e| self.err(e)),
            }
            .and_then(|_| {
                self.sled_file
                    .sync_data()
                    .map_err(|source| SpoolError::NotDurable {
                        what: "index",
                        source,
                    })
            });
            let files = files.join().unwrap_or_else(|_| {
                Err(self.log_err(std::io::Error::other("the log's sync thread panicked")))
            });
            (files, index)
        });
        files?;
        index?;
        self.log_synced.fetch_max(upto, Ordering::SeqCst);
        sub_saturating(&self.unflushed, flushed);
        // Failures here lose nothing: what is not unlinked now is found again at the next open.
        for first in segments {
            if let Err(e) = self.bodies.remove(first) {
                tracing::warn!("cannot remove a spent segment of the spool's log: {e}");
            }
        }
        for seq in photos {
            if let Err(e) = self.remove_photo(seq) {
                tracing::warn!("cannot remove the photo of a published record: {e}");
            }
        }
        self.measure_sled()
    }

    fn doomed_photos(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.doomed_photos.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether acknowledged entries wait for a flush to give their disk space back.
    pub fn has_doomed(&self) -> bool {
        self.bodies.has_doomed() || !self.doomed_photos().is_empty()
    }

    /// Whether a failed flush stopped the spool (see [`Spool::flush`]).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether the spool fails to take records (a failing disk, not a full one), as the writer
    /// last found, or a failed flush stopped it.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed) || self.is_stopped()
    }

    /// The writer says whether the spool takes records.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Records that the spool stops here, cleanly: the last write of a run, after the last
    /// flush (see [`clean`]). The next open then trusts the count instead of walking the index.
    pub fn close(&self) -> Result<(), SpoolError> {
        clean::mark(
            &self.db,
            &self.meta,
            &self.records,
            self.count.load(Ordering::SeqCst),
        )
        .map_err(|e| self.err(e))
    }

    /// Up to `limit` entries after `after`, oldest first, and those among them that cannot be
    /// decoded (with why): a damaged entry must not stop the queue, so it is reported, not fatal.
    pub fn next_batch(&self, after: Option<u64>, limit: usize) -> Result<Batch, SpoolError> {
        let start = after.map(|s| s.saturating_add(1)).unwrap_or(0);
        let mut batch = Batch::default();
        for item in self.records.range(seq_key(start)..).take(limit) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let seq = key_seq(&k);
            let Some(stored) = self.stored(seq, &v)? else {
                continue;
            };
            match stored.and_then(|b| entry::decode(&b)) {
                Ok(entry) => batch.entries.push((seq, entry)),
                Err(e) => batch.undecodable.push((seq, e)),
            }
        }
        Ok(batch)
    }

    /// Up to `limit` entries after `after` (from the start with `None`), oldest first.
    pub fn next_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Entry)>, SpoolError> {
        let start = after.map(|s| s.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::with_capacity(limit);
        for item in self.records.range(seq_key(start)..).take(limit) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let seq = key_seq(&k);
            let Some(stored) = self.stored(seq, &v)? else {
                continue;
            };
            let entry = stored
                .and_then(|b| entry::decode(&b))
                .map_err(|reason| SpoolError::Corrupt { seq, reason })?;
            out.push((seq, entry));
        }
        Ok(out)
    }

    /// The newest entry's sequence number.
    pub fn last_seq(&self) -> Result<Option<u64>, SpoolError> {
        Ok(self
            .records
            .last()
            .map_err(|e| self.err(e))?
            .map(|(k, _)| key_seq(&k)))
    }

    /// The entry's photo, if it has one that is whole. One that is missing or torn (a power cut
    /// before it reached the disk) is removed with a warning (the one write outside the writer:
    /// a damaged file can never be published, and removing a photo twice is harmless); the
    /// record still goes out.
    pub fn photo(&self, seq: u64, entry: &Entry) -> Result<Option<Vec<u8>>, SpoolError> {
        let Some(want) = entry.photo else {
            return Ok(None);
        };
        let Some(bytes) = self.photos.get(seq).map_err(|e| self.photo_err(e))? else {
            tracing::warn!(event_id = %entry.event_id, "the capture photo of a spooled record is missing (dropped by the size cap, or lost in a power cut)");
            return Ok(None);
        };
        if !want.matches(&bytes) {
            tracing::warn!(event_id = %entry.event_id, "the capture photo of a spooled record is damaged (a power cut before it reached the disk?); the record goes out without it");
            self.remove_photo(seq)?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// The broker acknowledged the entry: it leaves the spool (see [`Spool::ack_all`]).
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        self.ack_all(&[seq])
    }

    /// The broker acknowledged these entries: they leave the spool, each with its `pending` key.
    /// Their frames and photos go with
    /// the next flush, which makes the leaving durable. No flush is needed for the rest: a delete
    /// lost in a crash is a duplicate publish, never a loss.
    pub fn ack_all(&self, seqs: &[u64]) -> Result<(), SpoolError> {
        // Each entry's `pending` key first, then the entry: a crash between leaves an entry
        // without its key (mended at the next open, published again), never a key whose entry
        // is gone (it would keep the count high and pin the low-water mark for good). Plain
        // writes, in order (see `append_checked`).
        let mut left = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let Some(v) = self.records.get(seq_key(seq)).map_err(|e| self.err(e))? else {
                continue;
            };
            let at = bodies::Location::decode(&v);
            if let Some((_, key)) = at {
                self.pending.remove(key).map_err(|e| self.err(e))?;
            }
            self.records.remove(seq_key(seq)).map_err(|e| self.err(e))?;
            left.push(Left {
                seq,
                at: at.map(|(at, _)| at),
            });
        }
        // The count is of entries (what `open` counts).
        let removed = left.len() as u64;
        for l in left {
            match l.at {
                Some(at) => {
                    self.bodies.release(l.seq);
                    if at.photo {
                        self.doomed_photos().push(l.seq);
                    }
                }
                // A damaged value names neither its key nor whether it has a photo: look.
                None => {
                    self.doomed_photos().push(l.seq);
                    if let Some(key) = self.pending_key_of(l.seq)? {
                        self.pending.remove(key).map_err(|e| self.err(e))?;
                    }
                }
            }
        }
        sub_saturating(&self.count, removed);
        self.doom_dead_segments()
    }

    /// Dooms the log's segments that hold no queued entry any more (one seek in the index each:
    /// FIFO order makes it find the segment's next entry at once while it has one).
    fn doom_dead_segments(&self) -> Result<(), SpoolError> {
        for (first, end) in self.bodies.take_dead() {
            let used = self
                .records
                .range(seq_key(first)..seq_key(end))
                .next()
                .is_some();
            if !used {
                self.bodies.doom(first);
            }
        }
        Ok(())
    }

    /// The `pending` key of entry `seq`, found by a walk over the keys.
    pub(super) fn pending_key_of(&self, seq: u64) -> Result<Option<sled::IVec>, SpoolError> {
        for k in self.pending.iter().keys() {
            let k = k.map_err(|e| self.err(e))?;
            if pending_seq(&k) == seq {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Removes the entry's photo file, if any; whether there was one.
    pub(super) fn remove_photo(&self, seq: u64) -> Result<bool, SpoolError> {
        let len = self.photos.remove(seq).map_err(|e| self.photo_err(e))?;
        sub_saturating(&self.photo_disk, photos::allocated(len));
        Ok(len > 0)
    }

    /// How long the oldest queued record has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        let at = self.oldest_ms.load(Ordering::Relaxed);
        (at != 0 && !self.is_empty()).then(|| Duration::from_millis(now_ms().saturating_sub(at)))
    }

    /// Reads when the oldest queued entry was spooled, for [`Spool::oldest_age`]. Blocks: the
    /// writer calls it after its batches.
    pub fn note_oldest(&self) -> Result<(), SpoolError> {
        let at = self
            .next_after(None, 1)?
            .first()
            .map_or(0, |(_, e)| e.spooled_ms.max(1));
        self.oldest_ms.store(at, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn entries_come_out_in_the_order_they_went_in() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        for i in 0..5 {
            s.append("t", &rec(&format!("t-{i}"), 100 + i), None, true)
                .expect("append");
        }
        let ids: Vec<String> = s
            .next_after(None, 10)
            .expect("read")
            .into_iter()
            .map(|(_, e)| e.event_id)
            .collect();
        assert_eq!(ids, ["t-0", "t-1", "t-2", "t-3", "t-4"]);
        let (first, _) = s.next_after(None, 1).expect("read")[0].clone();
        let rest = s.next_after(Some(first), 10).expect("read");
        assert_eq!(rest.len(), 4);
    }

    #[test]
    fn a_record_seen_before_is_a_duplicate() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert!(matches!(
            s.append("t", &rec("t-1", 100), None, true),
            Ok(Appended::Stored(_))
        ));
        assert_eq!(
            s.append("t", &rec("t-1", 100), None, true).expect("append"),
            Appended::Duplicate
        );
        // Still a duplicate after it was published and acknowledged.
        let (seq, _) = s.next_after(None, 1).expect("read")[0].clone();
        s.ack(seq).expect("ack");
        assert_eq!(
            s.append("t", &rec("t-1", 100), None, true).expect("append"),
            Appended::Duplicate
        );
    }

    #[test]
    fn an_acknowledged_entry_leaves_with_its_photo() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let Appended::Stored(seq) = s
            .append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
            .expect("append")
        else {
            panic!("stored")
        };
        let entry = s.next_after(None, 1).expect("read")[0].1.clone();
        assert_eq!(
            s.photo(seq, &entry).expect("photo"),
            Some(vec![0xFF, 0xD8, 1, 2])
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 4096);
        assert!(!s.has_doomed(), "nothing acknowledged yet");
        s.ack(seq).expect("ack");
        assert_eq!(s.len(), 0);
        // The log's segment is still the one appended to: the photo alone waits for the flush.
        assert!(s.has_doomed(), "the photo waits for a flush to leave");
        assert!(
            s.photos.get(seq).expect("read").is_some(),
            "kept until the acknowledgement is durable"
        );
        s.flush().expect("flush");
        assert!(!s.has_doomed(), "the flush took it");
        assert_eq!(
            s.photo_disk.load(Ordering::SeqCst),
            0,
            "the photo's block is free"
        );
        assert_eq!(s.photo(seq, &entry).expect("photo"), None);
        assert!(
            std::fs::read_dir(d.path().join("photos"))
                .expect("photo dir")
                .next()
                .is_none(),
            "the photo file is gone"
        );
    }

    #[test]
    fn a_spool_is_failing_while_the_writer_says_so_and_for_good_once_a_flush_stopped_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert!(
            !s.is_failing() && !s.is_stopped(),
            "a new spool takes records"
        );
        s.set_failing(true);
        assert!(s.is_failing() && !s.is_stopped());
        s.set_failing(false);
        assert!(!s.is_failing());
        // What a failed flush does (a disk that cannot sync is not reached from a unit test).
        s.stopped.store(true, Ordering::SeqCst);
        assert!(s.is_stopped());
        assert!(
            s.is_failing(),
            "stopped counts as failing whatever the writer last said"
        );
        assert!(matches!(s.flush(), Err(SpoolError::Stopped)));
    }

    #[test]
    fn a_torn_photo_is_dropped_and_the_record_still_goes_out() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let photo = vec![0xABu8; 5000];
        let Appended::Stored(seq) = s
            .append("t", &rec("t-1", 1), Some(&photo), true)
            .expect("append")
        else {
            panic!("stored")
        };
        // What a power cut can leave: the file exists, its tail never reached the disk.
        let file = d.path().join("photos").join(format!("{seq:020}.jpg"));
        std::fs::write(&file, &photo[..1000]).expect("tear");
        let entry = s.next_after(None, 1).expect("read")[0].1.clone();
        assert_eq!(s.photo(seq, &entry).expect("photo"), None);
        assert!(!file.exists(), "the torn photo is removed");
        assert_eq!(s.len(), 1, "the record stays to be published");
    }

    #[test]
    fn an_entry_records_when_it_entered_the_spool_and_the_oldest_tells_its_age() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert_eq!(s.oldest_age(), None);
        let before = now_ms();
        let seq = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        let after = now_ms();
        let (_, entry) = s.next_after(None, 1).expect("read")[0].clone();
        assert!(
            before <= entry.spooled_ms && entry.spooled_ms <= after,
            "{before} <= {} <= {after}",
            entry.spooled_ms
        );
        // Another, spooled a minute before it, acknowledged: the oldest is the one before.
        let r = rec("t-0", 1);
        let i = Incoming::of(&r, None);
        let older = Encoded::new("t", &i, entry.spooled_ms - 60_000);
        s.ack(seq).expect("ack");
        s.append_encoded(&older, true).expect("append");
        assert_eq!(s.oldest_age(), None, "read from memory: nothing noted yet");
        s.note_oldest().expect("note");
        let age = s.oldest_age().expect("an entry waits");
        assert!(
            age >= Duration::from_secs(60) && age < Duration::from_secs(3600),
            "{age:?}"
        );
    }

    #[test]
    fn an_empty_queue_has_no_oldest_age_whatever_was_noted() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let seq = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        s.note_oldest().expect("note");
        assert!(s.oldest_age().is_some());
        s.ack(seq).expect("ack");
        assert_eq!(s.oldest_age(), None);
    }

    #[test]
    fn a_damaged_entry_that_leaves_takes_its_index_key_and_its_count_with_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let a = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        let b = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
        s.records
            .insert(seq_key(a), &b"not json"[..])
            .expect("damage");
        s.quarantine(a, "undecodable").expect("quarantine");
        assert_eq!(s.len(), 1);
        let left: Vec<u64> = s
            .pending
            .iter()
            .keys()
            .map(|k| pending_seq(&k.expect("key")))
            .collect();
        assert_eq!(
            left,
            [b],
            "the low-water mark is not held by the damaged entry"
        );
        assert_eq!(s.low_water().expect("marks")["t"], 2);
    }

    #[test]
    fn an_entry_whose_index_key_a_crash_lost_keeps_its_photo_and_leaves_without_a_negative_count() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b);
        {
            let s = open(d.path());
            a = stored(
                s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
                    .expect("append"),
            );
            b = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
            s.pending
                .remove(pending_key("t", 1, a))
                .expect("lose the key");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.len(), 2, "the count is of entries");
        assert_eq!(
            s.low_water().expect("marks"),
            marks(&[("t", 1)]),
            "its key is put back"
        );
        let (_, entry) = s.next_after(None, 1).expect("read").remove(0);
        assert!(
            s.photo(a, &entry).expect("photo").is_some(),
            "not taken for an orphan"
        );
        s.ack(a).expect("ack");
        assert_eq!(s.len(), 1);
        s.ack(b).expect("ack");
        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
    }

    #[test]
    fn an_entry_counts_its_frame_and_its_index_keys_until_sled_measures_them() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.flush().expect("flush");
        let before = s.bytes();
        let r = rec("t-1", 7);
        let value = Encoded::new("t", &Incoming::of(&r, None), now_ms())
            .value
            .len() as u64;
        s.append("t", &r, None, true).expect("append");
        // The frame: a 16-byte header (seq, length, CRC) and the entry.
        assert_eq!(s.bodies.bytes(), 16 + value);
        // The index: location (14) and pending key (18), the pending key, the dedupe key (13).
        assert_eq!(s.unflushed.load(Ordering::SeqCst), 14 + 18 + 18 + 13);
        assert_eq!(s.bytes(), before + 16 + value + 63);
    }

    #[test]
    fn the_log_gives_back_its_space_as_entries_leave_and_keeps_what_is_queued() {
        let d = tempfile::tempdir().expect("tempdir");
        // 1 MiB cap: 64 KiB segments.
        let s = Spool::open(d.path(), 1 << 20).expect("opens");
        let big = |i: u64| padded(&format!("t-{i}"), i, 8000);
        let seqs: Vec<u64> = (0..40)
            .map(|i| stored(s.append("t", &big(i), None, true).expect("append")))
            .collect();
        s.flush().expect("flush");
        let full = (segments(d.path()), s.bytes());
        assert!(full.0 >= 4, "{full:?}");
        for q in &seqs[..30] {
            s.ack(*q).expect("ack");
        }
        assert_eq!(
            segments(d.path()),
            full.0,
            "nothing unlinked before a flush"
        );
        s.flush().expect("flush");
        let drained = (segments(d.path()), s.bytes());
        assert!(
            drained.0 < full.0 && drained.1 < full.1,
            "{full:?} {drained:?}"
        );
        let left = queued(&s);
        assert_eq!(left, seqs[30..], "the queued ones still read");
        drop(s);
        let s = open(d.path());
        assert_eq!(s.len(), 10);
        for q in &seqs[30..] {
            s.ack(*q).expect("ack");
        }
        s.flush().expect("flush");
        assert_eq!(segments(d.path()), 0, "no segment outlives its entries");
        assert_eq!(s.bodies.bytes(), 0);
    }

    #[test]
    fn an_entry_acknowledged_while_a_batch_reads_it_is_skipped_not_taken_for_damage() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(d.path(), 1 << 20).expect("opens");
        let big = padded("t-1", 1, 70_000);
        let a = stored(s.append("t", &big, None, true).expect("append"));
        s.append("t", &rec("t-2", 2), None, true).expect("append");
        // The batch has read `a`'s index entry; then its PUBACK arrives and its segment goes.
        let index = s.records.get(seq_key(a)).expect("get").expect("indexed");
        s.ack(a).expect("ack");
        s.flush().expect("flush");
        assert_eq!(segments(d.path()), 1, "a's segment is gone");
        assert!(s.stored(a, &index).expect("read").is_none());
        // Still in the queue, the same failure is damage.
        s.records
            .insert(seq_key(a), index.clone())
            .expect("put back");
        assert!(matches!(s.stored(a, &index).expect("read"), Some(Err(_))));
    }

    #[test]
    fn a_batch_reports_undecodable_entries_beside_the_good_ones() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let a = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        let b = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
        let c = stored(s.append("t", &rec("t-3", 3), None, true).expect("append"));
        s.records
            .insert(seq_key(b), &b"not json"[..])
            .expect("damage");
        let batch = s.next_batch(None, 10).expect("batch");
        let good: Vec<(u64, String)> = batch
            .entries
            .iter()
            .map(|(q, e)| (*q, e.event_id.clone()))
            .collect();
        assert_eq!(good, [(a, "t-1".to_string()), (c, "t-3".to_string())]);
        assert_eq!(
            batch
                .undecodable
                .iter()
                .map(|(q, _)| *q)
                .collect::<Vec<_>>(),
            [b]
        );
        let later = s.next_batch(Some(a), 1).expect("batch");
        assert!(later.entries.is_empty());
        assert_eq!(later.undecodable.len(), 1);
    }

    #[test]
    fn the_last_sequence_number_is_the_newest_entry_s() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert_eq!(s.last_seq().expect("last"), None);
        assert!(s.is_empty());
        s.append("t", &rec("t-1", 1), None, true).expect("append");
        s.append("t", &rec("t-2", 2), None, true).expect("append");
        let c = stored(s.append("t", &rec("t-3", 3), None, true).expect("append"));
        assert_eq!(s.last_seq().expect("last"), Some(c));
        assert!(c >= 3, "{c}");
        assert!(!s.is_empty());
    }

    #[test]
    fn a_discarded_entry_leaves_with_its_photo() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let seq = stored(
            s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
                .expect("append"),
        );
        s.ack(seq).expect("ack");
        s.flush().expect("flush");
        assert!(s.is_empty());
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 0);
        assert!(s.next_after(None, 10).expect("read").is_empty());
    }

    #[test]
    fn acknowledging_one_entry_frees_exactly_its_photos_blocks() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let a = stored(
            s.append("t", &rec("t-1", 1), Some(&[0xFF; 700]), true)
                .expect("append"),
        );
        s.append("t", &rec("t-2", 2), Some(&[0xFF; 900]), true)
            .expect("append");
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 2 * 4096);
        s.ack(a).expect("ack");
        s.flush().expect("flush");
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 4096);
    }

    #[test]
    fn a_photo_of_the_right_length_but_other_bytes_is_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let seq = stored(
            s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
                .expect("append"),
        );
        let file = d.path().join("photos").join(format!("{seq:020}.jpg"));
        std::fs::write(&file, [0xFF, 0xD8, 9, 9]).expect("damage");
        let entry = s.next_after(None, 1).expect("read")[0].1.clone();
        assert_eq!(s.photo(seq, &entry).expect("photo"), None);
        assert!(!file.exists(), "the damaged photo is removed");
    }

    #[test]
    fn a_flush_syncs_the_photos_written_since_the_last_one() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
            .expect("append");
        s.append("t", &rec("t-2", 2), Some(&[0xFF, 0xD8, 3, 4]), true)
            .expect("append");
        assert_eq!(s.photos.unsynced().len(), 2);
        s.flush().expect("flush");
        assert_eq!(s.photos.unsynced().len(), 0);
    }

    /// A record whose frame takes 16 KiB of the log: four fill a segment of a 1 MiB spool.
    fn big(i: u64) -> Normalized {
        padded(&format!("t-{i}"), i, 16 << 10)
    }

    #[test]
    fn a_segment_whose_entries_were_acknowledged_stays_until_the_index_says_so_durably() {
        let d = tempfile::tempdir().expect("tempdir");
        let snap;
        {
            let s = Spool::open(d.path(), 1 << 20).expect("open");
            for i in 1..=6 {
                stored(s.append("t", &big(i), None, true).expect("append"));
            }
            // Twice: the second makes the first's synced mark durable (the usual state).
            s.flush().expect("flush");
            s.flush().expect("flush");
            assert_eq!(segments(d.path()), 2);
            snap = durable_index(d.path());
            // The first segment's four entries leave; the power goes before the next flush.
            for seq in 1..=4 {
                s.ack(seq).expect("ack");
            }
        }
        power_cut_to(d.path(), &snap);
        let s = open(d.path());
        let batch = s.next_batch(None, 10).expect("read");
        assert!(
            batch.undecodable.is_empty(),
            "acknowledged entries whose removal was lost come back readable, not as damage: {:?}",
            batch.undecodable
        );
        assert_eq!(
            batch.entries.len(),
            6,
            "published again: duplicates, not losses"
        );
    }

    #[test]
    fn a_segment_goes_once_a_flush_made_its_entries_removal_durable() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(d.path(), 1 << 20).expect("open");
        for i in 1..=6 {
            stored(s.append("t", &big(i), None, true).expect("append"));
        }
        s.flush().expect("flush");
        for seq in 1..=4 {
            s.ack(seq).expect("ack");
        }
        s.flush().expect("flush");
        assert_eq!(segments(d.path()), 1, "the first segment is unlinked");
        assert_eq!(queued(&s), [5, 6]);
    }
}
