//! Opening the spool: its format, sled, the log and the photos, and what a crash left to repair
//! ([`recovery`]).

use super::*;

impl Spool {
    /// Opens (or creates) the spool. A spool sled cannot open is moved aside with a loud log
    /// line and a fresh one started: crash-looping under systemd would lose every new record.
    ///
    /// Backfill is then made to look back at least to the low-water mark kept outside sled, so
    /// whatever a damaged spool lost comes back from the terminal.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        room::check_place(dir)?;
        room::check_capacity(dir)?;
        let marks = lowwater::read(dir);
        let spool = Spool::open_or_move_aside(dir, max_bytes)?;
        spool.look_back_to(&marks)?;
        // What the open repaired is durable before anything else happens.
        spool.flush()?;
        tracing::debug!(entries = spool.len(), marks = ?spool.low_water()?, low_water_file = ?marks, "spool opened");
        Ok(spool)
    }

    fn open_or_move_aside(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        match Spool::open_once(dir, max_bytes) {
            Ok(s) => Ok(s),
            // Permissions, missing parent, full disk: moving it aside would not help. Nor for a
            // format this bridge does not know: that spool is not damaged, and must stay.
            Err(
                e @ (SpoolError::Db {
                    source: sled::Error::Io(_),
                    ..
                }
                | SpoolError::Format { .. }),
            ) => Err(e),
            Err(e) => {
                let aside = dir.with_extension(format!("corrupt-{}", now_ms()));
                tracing::error!(
                    spool = %dir.display(), moved_to = %aside.display(), error = %e,
                    "the spool cannot be opened; moving it aside and starting an empty one (backfill fetches its records again from the terminal, from the low-water mark)"
                );
                std::fs::rename(dir, &aside).map_err(|io| db_err(dir, sled::Error::Io(io)))?;
                Spool::open_once(dir, max_bytes)
            }
        }
    }

    fn open_once(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let err = |source| db_err(dir, source);
        recovery::renew_index_files(dir).map_err(|e| err(sled::Error::Io(e)))?;
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
        check_format(
            dir,
            &db,
            &meta,
            &[&records, &seen, &meta, &quarantine, &pending],
        )?;
        let sled_file = std::fs::File::open(dir.join("db")).map_err(|e| err(sled::Error::Io(e)))?;
        let photos = photos::Photos::open(&dir.join("photos")).map_err(|e| photo_err(dir, e))?;
        let bodies =
            bodies::Bodies::open(&dir.join("log"), max_bytes).map_err(|e| log_err(dir, e))?;
        // Missing (a new spool) or damaged: every entry is checked rather than any trusted.
        let synced = match meta.get(LOG_SYNCED).map_err(err)? {
            Some(v) if key_seq(&v) <= MAX_SEQ => key_seq(&v),
            _ => 0,
        };
        let trees = recovery::Trees {
            records: &records,
            pending: &pending,
            seen: &seen,
            meta: &meta,
        };
        // Taken first: whatever happens below, it must not be read again.
        let mut clean_count = clean::take(&db, &meta, &records).map_err(err)?;
        let on_disk = photos.list().map_err(|e| photo_err(dir, e))?;
        if recovery::renew_from(dir, &trees, &bodies, &photos, &on_disk, synced)? > 0 {
            // A clean stop loses nothing, but a disk may: the count no longer holds.
            clean_count = None;
        }
        let (count, photo_disk) = match clean_count {
            // The last run stopped cleanly: nothing was lost or left half done, and the count it
            // left is exact. Walking the index would cost what follows.
            Some(count) => (
                count,
                on_disk.iter().map(|(_, len)| photos::allocated(*len)).sum(),
            ),
            None => recovery::count_by_walking(dir, &trees, &photos, on_disk)?,
        };
        // A segment the index does not reach is left over: its entries were acknowledged and its
        // removal was lost in a crash (or it held only frames that never reached the disk).
        for (first, end) in bodies.ranges() {
            if records.range(seq_key(first)..seq_key(end)).next().is_none() {
                bodies.remove(first).map_err(|e| log_err(dir, e))?;
            }
        }
        // Never below where the log was synced: an entry numbered again could be taken for one
        // written before.
        let next = records
            .last()
            .map_err(err)?
            .map(|(k, _)| key_seq(&k).saturating_add(1))
            .unwrap_or(1)
            .max(synced);
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
            sled_file,
            doomed_photos: Default::default(),
            stopped: Default::default(),
            failing: Default::default(),
        };
        spool.note_oldest()?;
        Ok(spool)
    }
}

/// Refuses a spool in a format this bridge does not know, and marks a new one as this format.
fn check_format(
    dir: &Path,
    db: &sled::Db,
    meta: &sled::Tree,
    trees: &[&sled::Tree],
) -> Result<(), SpoolError> {
    let err = |source| db_err(dir, source);
    let refuse = |why: String| {
        Err(SpoolError::Format {
            dir: dir.into(),
            why: format!(
                "{why}; this bridge reads format {FORMAT} only. Run the bridge that wrote it until its spool is empty, or move the directory aside (backfill then fetches what the terminal still holds)"
            ),
        })
    };
    match meta.get(FORMAT_KEY).map_err(err)? {
        Some(v) => match <[u8; 4]>::try_from(&*v).map(u32::from_be_bytes) {
            Ok(FORMAT) => Ok(()),
            Ok(other) => refuse(format!("it is in spool format {other}")),
            Err(_) => refuse("its format number is damaged".into()),
        },
        // What sled's `open` creates on its own, before anything is written: a new spool.
        None if trees.iter().all(|t| t.is_empty()) => {
            meta.insert(FORMAT_KEY, &FORMAT.to_be_bytes())
                .map_err(err)?;
            db.flush().map_err(err)?;
            Ok(())
        }
        None => {
            refuse("it was written by a development build of face2mqtt (it names no format)".into())
        }
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

    #[test]
    fn an_index_key_whose_entry_is_gone_is_dropped_when_the_spool_opens() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            stored(s.append("t", &rec("t-1", 100), None, true).expect("append"));
            stored(s.append("t", &rec("t-2", 200), None, true).expect("append"));
            s.flush().expect("flush");
            // What a crash between removing entry 1 and its `pending` key leaves: the key.
            s.records.remove(seq_key(1)).expect("remove");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.len(), 1, "counted by its entries");
        assert_eq!(
            s.low_water().expect("marks"),
            marks(&[("t", 200)]),
            "the low-water mark is not pinned by a key nothing removes"
        );
        s.ack(2).expect("ack");
        assert!(s.is_empty(), "the queue empties");
        assert!(
            s.make_room(100 << 20).expect("room").room,
            "an empty queue takes a record over the cap"
        );
    }

    #[test]
    fn a_new_spool_is_marked_with_its_format_and_opens_again() {
        let d = tempfile::tempdir().expect("tempdir");
        drop(open(d.path()));
        let db = sled_waiting(d.path());
        let meta = db.open_tree("meta").expect("meta");
        assert_eq!(
            meta.get(FORMAT_KEY).expect("read").as_deref(),
            Some(&FORMAT.to_be_bytes()[..])
        );
        drop((meta, db));
        drop(open(d.path()));
    }

    #[test]
    fn a_spool_held_open_is_locked_and_worth_waiting_for_and_a_stopped_one_is_not_permanent() {
        let d = tempfile::tempdir().expect("tempdir");
        let _held = open(d.path());
        let e = Spool::open(d.path(), 64 << 20)
            .err()
            .expect("the first spool holds the lock");
        assert!(e.is_locked(), "{e}");
        assert!(!e.is_permanent(), "a lock is let go: {e}");
        let format = SpoolError::Format {
            dir: d.path().into(),
            why: "format 2".into(),
        };
        assert!(format.is_permanent() && !format.is_locked());
        assert!(!SpoolError::Stopped.is_permanent() && !SpoolError::Stopped.is_locked());
    }

    #[test]
    fn an_open_writes_again_the_photos_written_after_the_last_good_flush_and_no_older_one() {
        let d = tempfile::tempdir().expect("tempdir");
        let jpeg = |s: &Spool, id, t| {
            stored(
                s.append("t", &rec(id, t), Some(&[0xFF, 0xD8, 7]), true)
                    .expect("append"),
            )
        };
        let (old, new) = {
            let s = open(d.path());
            let old = jpeg(&s, "t-1", 1);
            // The mark a flush carries is the one the flush before it proved: two make it pass
            // `old`.
            s.flush().expect("flush");
            s.flush().expect("flush");
            (old, jpeg(&s, "t-2", 2))
        };
        let file = |seq: u64| d.path().join("photos").join(format!("{seq:020}.jpg"));
        let long_ago = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for seq in [old, new] {
            let f = std::fs::File::options().write(true).open(file(seq));
            f.and_then(|f| f.set_modified(long_ago)).expect("date");
        }
        let _s = open(d.path());
        let modified = |seq| std::fs::metadata(file(seq)).and_then(|m| m.modified());
        assert!(modified(new).expect("mtime") > long_ago, "written again");
        assert_eq!(modified(old).expect("mtime"), long_ago, "left alone");
    }

    /// A spool in `dir`, then changed by `write` behind its back (sled's lock waited for).
    fn planted(dir: &Path, write: impl Fn(&sled::Db)) {
        drop(open(dir));
        let db = sled_waiting(dir);
        write(&db);
        db.flush().expect("flush");
    }

    fn refused(dir: &Path) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Spool::open(dir, 64 << 20) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => {
                    assert!(e.is_permanent(), "{e}");
                    return e.to_string();
                }
                Ok(_) => panic!("opened"),
            }
        }
    }

    #[test]
    fn a_spool_in_another_format_is_refused_clearly_and_left_as_it_is() {
        let d = tempfile::tempdir().expect("tempdir");
        planted(d.path(), |db| {
            let meta = db.open_tree("meta").expect("meta");
            meta.insert(FORMAT_KEY, &2u32.to_be_bytes())
                .expect("insert");
        });
        let why = refused(d.path());
        assert!(
            why.contains("spool format 2") && why.contains("format 1 only"),
            "{why}"
        );
        assert!(d.path().join("db").exists(), "not moved aside");
        let d = tempfile::tempdir().expect("tempdir");
        planted(d.path(), |db| {
            let meta = db.open_tree("meta").expect("meta");
            meta.insert(FORMAT_KEY, &b"x"[..]).expect("insert");
        });
        assert!(refused(d.path()).contains("damaged"));
    }

    #[test]
    fn a_spool_that_names_no_format_is_refused_unless_it_is_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        planted(d.path(), |db| {
            let meta = db.open_tree("meta").expect("meta");
            meta.remove(FORMAT_KEY).expect("remove");
            db.open_tree("records")
                .expect("records")
                .insert(seq_key(1), &b"{}"[..])
                .expect("insert");
        });
        assert!(refused(d.path()).contains("development build"));
    }
}
