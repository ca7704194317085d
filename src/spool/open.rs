//! Opening the spool: sled, the log and the photos, and what a crash left to repair.

use super::*;

/// The queue's count and the photo files' disk use, by walking the `pending` index; photos no
/// queued entry names are removed on the way. Walking `pending` materializes its leaves, and sled
/// keeps them: 100,000 small keys took ~16 MiB (heaptrack, BENCHMARKS.md). Only after a crash,
/// then (see [`clean`]).
pub(super) fn count_by_walking(
    pending: &sled::Tree,
    records: &sled::Tree,
    photos: &photos::Photos,
    on_disk: Vec<(u64, u64)>,
) -> sled::Result<(u64, u64)> {
    let mut queued = Vec::new();
    for item in pending.iter().keys() {
        queued.push(pending_seq(&item?));
    }
    queued.sort_unstable();
    // Photos whose entry is gone (a delete lost in a crash, or a write that beat its record to
    // the disk) are orphans. One not in `pending` is looked up in `records` before it goes (an
    // entry whose index key a crash lost still has its photo).
    let mut photo_disk = 0u64;
    for (seq, len) in on_disk {
        if queued.binary_search(&seq).is_ok() || records.contains_key(seq_key(seq))? {
            photo_disk += photos::allocated(len);
        } else if let Err(e) = photos.remove(seq) {
            tracing::warn!("cannot remove an orphaned spool photo: {e}");
        }
    }
    Ok((queued.len() as u64, photo_disk))
}

impl Spool {
    /// Opens (or creates) the spool. A spool sled cannot open is moved aside with a loud log
    /// line and a fresh one started: crash-looping under systemd would lose every new record.
    ///
    /// Backfill is then made to look back at least to the low-water mark kept outside sled, so
    /// whatever a damaged spool lost comes back from the terminal.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let marks = lowwater::read(dir);
        let spool = Spool::open_or_move_aside(dir, max_bytes)?;
        spool.look_back_to(&marks)?;
        Ok(spool)
    }

    pub(super) fn open_or_move_aside(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        match Spool::open_once(dir, max_bytes) {
            Ok(s) => Ok(s),
            Err(SpoolError::Db {
                source: sled::Error::Io(io),
                ..
            }) => {
                // Permissions, missing parent, full disk: moving it aside would not help.
                Err(SpoolError::Db {
                    dir: dir.into(),
                    source: sled::Error::Io(io),
                })
            }
            Err(e) => {
                let aside = dir.with_extension(format!("corrupt-{}", now_ms()));
                tracing::error!(
                    spool = %dir.display(), moved_to = %aside.display(), error = %e,
                    "the spool cannot be opened; moving it aside and starting an empty one (backfill fetches its records again from the terminal, from the low-water mark)"
                );
                std::fs::rename(dir, &aside).map_err(|io| SpoolError::Db {
                    dir: dir.into(),
                    source: sled::Error::Io(io),
                })?;
                Spool::open_once(dir, max_bytes)
            }
        }
    }

    pub(super) fn open_once(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Db {
            dir: dir.into(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(err)?;
        let records = db.open_tree("records").map_err(err)?;
        let seen = db.open_tree("seen").map_err(err)?;
        let meta = db.open_tree("meta").map_err(err)?;
        let quarantine = db.open_tree("quarantine").map_err(err)?;
        let pending = db.open_tree("pending").map_err(err)?;
        let photo_dir = dir.join("photos");
        let photos = photos::Photos::open(&photo_dir).map_err(|source| SpoolError::Photos {
            dir: photo_dir.clone(),
            source,
        })?;
        let log_dir = dir.join("log");
        let log_err = |source| SpoolError::Log {
            dir: log_dir.clone(),
            source,
        };
        let (bodies, log_existed) = bodies::Bodies::open(&log_dir, max_bytes).map_err(log_err)?;
        let synced = match meta.get(LOG_SYNCED).map_err(err)? {
            Some(v) if key_seq(&v) <= MAX_SEQ => Some(key_seq(&v)),
            // Damage: check every entry rather than trust it.
            Some(_) => Some(0),
            // No entry of this spool is in a log yet (it was written by an older bridge, or is
            // new): none needs checking.
            None if !log_existed => None,
            None => Some(0),
        };
        // Taken first: whatever happens below, it must not be read again.
        let mut clean_count = clean::take(&db, &meta, &records).map_err(err)?;
        if let Some(from) = synced {
            let forgotten = recovery::forget_unwritten(
                dir,
                &recovery::Trees {
                    records: &records,
                    pending: &pending,
                    seen: &seen,
                    meta: &meta,
                },
                &bodies,
                from,
            )?;
            if forgotten > 0 {
                // A clean stop loses nothing, but a disk may: the count no longer holds.
                clean_count = None;
            }
            // What is left from there on is whole, but may be in the page cache only (a crash of
            // the process, not of the machine): on disk before the mark moves past it.
            bodies.sync_from(from).map_err(log_err)?;
        }
        // Walking `records` would pull every entry into memory (sled materializes the leaves it
        // reads and keeps them: 100,000 records took 160 MiB); `pending` holds one small key per
        // entry, so it is what is counted and what the photos are checked against.
        // A spool written before the `pending` index existed gets it now, once.
        if pending.is_empty() && !records.is_empty() {
            for item in records.iter() {
                let (k, v) = item.map_err(err)?;
                if let Some(key) = stored_pending_key(key_seq(&k), &v) {
                    pending.insert(key, &[]).map_err(err)?;
                }
            }
        }
        let on_disk = photos.list().map_err(|source| SpoolError::Photos {
            dir: photo_dir.clone(),
            source,
        })?;
        let (count, photo_disk) = match clean_count {
            // The last run stopped cleanly: nothing was lost or left half done, and the count it
            // left is exact. Walking the index would cost what follows.
            Some(count) => (
                count,
                on_disk.iter().map(|(_, len)| photos::allocated(*len)).sum(),
            ),
            None => count_by_walking(&pending, &records, &photos, on_disk).map_err(err)?,
        };
        // A segment the index does not reach is left over: its entries were acknowledged and its
        // removal was lost in a crash (or it held only frames that never reached the disk).
        for (first, end) in bodies.ranges() {
            if records.range(seq_key(first)..seq_key(end)).next().is_none() {
                bodies.remove(first).map_err(log_err)?;
            }
        }
        // Never below where the log was synced: an entry numbered again could be taken for one
        // written before.
        let next = records
            .last()
            .map_err(err)?
            .map(|(k, _)| key_seq(&k).saturating_add(1))
            .unwrap_or(1)
            .max(synced.unwrap_or(0));
        let sled_disk = db.size_on_disk().map_err(err)?;
        let spool = Spool {
            dir: dir.into(),
            db,
            records,
            bodies,
            photos: Arc::new(photos),
            seen,
            meta,
            pending,
            quarantined: AtomicU64::new(quarantine.len() as u64),
            quarantine,
            next_seq: AtomicU64::new(next),
            sled_disk: AtomicU64::new(sled_disk),
            unflushed: AtomicU64::new(0),
            photo_disk: AtomicU64::new(photo_disk),
            count: AtomicU64::new(count),
            log_synced: AtomicU64::new(next),
            oldest_ms: AtomicU64::new(0),
            max_bytes,
        };
        spool.note_oldest()?;
        Ok(spool)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn photos_whose_record_is_gone_are_removed_when_the_spool_opens() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            s.append("t", &rec("t-1", 1), Some(&[1, 2, 3]), true)
                .expect("append");
            s.flush().expect("flush");
        }
        std::fs::write(
            d.path().join("photos").join(format!("{:020}.jpg", 999)),
            b"orphan",
        )
        .expect("orphan");
        let s = open(d.path());
        let names: Vec<_> = std::fs::read_dir(d.path().join("photos"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_spool_survives_a_reopen_and_keeps_counting_up() {
        let d = tempfile::tempdir().expect("tempdir");
        let first_seq;
        {
            let s = open(d.path());
            first_seq = match s
                .append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8]), true)
                .expect("append")
            {
                Appended::Stored(q) => q,
                Appended::Duplicate => panic!("new"),
            };
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.len(), 1);
        assert!(s.bytes() > 0);
        assert_eq!(s.watermark("t").expect("wm"), Some(1));
        let Appended::Stored(next) = s.append("t", &rec("t-2", 2), None, true).expect("append")
        else {
            panic!("new")
        };
        assert!(next > first_seq);
    }

    #[test]
    fn a_reopened_spool_counts_the_same_entries_and_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let (len, bytes) = {
            let s = open(d.path());
            s.append("t", &rec("t-1", 1), Some(&[0xFF; 3000]), true)
                .expect("append");
            s.append("t", &rec("t-2", 2), None, true).expect("append");
            s.append("t", &rec("t-3", 3), Some(&[0xFF; 10]), true)
                .expect("append");
            s.flush().expect("flush");
            (s.len(), s.photo_disk.load(Ordering::SeqCst))
        };
        let s = open(d.path());
        // sled's files are measured again at the open; the photos are counted from their files.
        assert_eq!((s.len(), s.photo_disk.load(Ordering::SeqCst)), (len, bytes));
        assert_eq!((len, bytes), (3, 2 * 4096));
    }

    #[test]
    fn a_spool_written_before_the_pending_index_gets_it_when_opened() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            s.append("a", &rec("a-1", 100), None, true).expect("append");
            s.append("a", &rec("a-2", 200), None, true).expect("append");
            s.append("b", &rec("b-1", 150), None, true).expect("append");
            s.pending.clear().expect("clear");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(
            s.low_water().expect("marks"),
            marks(&[("a", 100), ("b", 150)])
        );
    }

    #[test]
    fn a_record_whose_body_a_power_cut_lost_is_forgotten_so_that_backfill_fetches_it_again() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b, kept_len);
        {
            let s = open(d.path());
            a = stored(s.append("t", &rec("t-1", 100), None, true).expect("append"));
            s.flush().expect("flush");
            kept_len = s.bodies.bytes();
            b = stored(s.append("t", &rec("t-2", 200), None, true).expect("append"));
            // sled's own flush reached the disk, the log's frame did not.
            s.db.flush().expect("sled alone");
            s.bodies.cut(b, kept_len);
        }
        let s = open(d.path());
        assert_eq!(s.len(), 1);
        let left = queued(&s);
        assert_eq!(left, [a]);
        assert_eq!(
            s.watermark("t").expect("watermark"),
            Some(199),
            "backfill looks back past it"
        );
        assert_eq!(
            s.append("t", &rec("t-2", 200), None, true).expect("append"),
            Appended::Stored(b),
            "not a duplicate when it comes back"
        );
    }

    #[test]
    fn a_damaged_synced_mark_is_not_trusted_neither_to_skip_checks_nor_to_number_entries() {
        let d = tempfile::tempdir().expect("tempdir");
        let a;
        {
            let s = open(d.path());
            a = stored(s.append("t", &rec("t-1", 100), None, true).expect("append"));
            s.flush().expect("flush");
            let b = stored(s.append("t", &rec("t-2", 200), None, true).expect("append"));
            s.flush().expect("flush");
            // b's frame is lost and the mark claims everything is synced.
            s.meta
                .insert(LOG_SYNCED, &u64::MAX.to_be_bytes())
                .expect("damage");
            s.db.flush().expect("flush");
            let path = s.bodies.path_of(b).expect("segment");
            let whole = std::fs::metadata(&path).expect("segment").len();
            s.bodies.cut(b, whole - 3);
        }
        let s = open(d.path());
        assert_eq!(s.len(), 1, "b was checked and forgotten");
        assert_eq!(
            s.append("t", &rec("t-3", 300), None, true).expect("append"),
            Appended::Stored(a + 1),
            "numbered on from the entries, not from the damaged mark"
        );
    }

    #[test]
    fn a_power_cut_before_the_first_flush_is_checked_too() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            let a = stored(s.append("t", &rec("t-1", 100), None, true).expect("append"));
            // No flush of ours yet, so no synced mark; sled's own flush wrote the index.
            s.db.flush().expect("sled alone");
            s.bodies.cut(a, 0);
        }
        let s = open(d.path());
        assert!(s.is_empty());
        assert!(s.next_after(None, 10).expect("read").is_empty());
        assert_eq!(segments(d.path()), 0, "its empty segment went too");
    }

    #[test]
    fn a_record_flushed_whole_is_not_checked_again_nor_forgotten() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            s.append("t", &rec("t-1", 100), None, true).expect("append");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.len(), 1);
        assert_eq!(s.watermark("t").expect("watermark"), Some(100));
    }

    #[test]
    fn a_segment_left_over_by_a_crash_goes_when_the_spool_opens() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            let a = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
            s.flush().expect("flush");
            s.ack(a).expect("ack");
            assert_eq!(segments(d.path()), 1, "appended to, so kept while open");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(segments(d.path()), 0);
        assert_eq!(s.bytes(), s.sled_disk.load(Ordering::SeqCst));
    }

    #[test]
    fn a_reopened_spool_numbers_on_from_where_the_log_was_synced_even_when_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            for i in 0..3 {
                let q = stored(
                    s.append("t", &rec(&format!("t-{i}"), i), None, true)
                        .expect("a"),
                );
                s.flush().expect("flush");
                s.ack(q).expect("ack");
            }
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert!(s.is_empty());
        assert_eq!(
            s.append("t", &rec("t-9", 9), None, true).expect("append"),
            Appended::Stored(4)
        );
    }
}
