//! Room: the size cap, the disk's free-space reserve, and photos shed to make room.

use super::*;

/// Room a spool needs beside [`DISK_RESERVE`] to take records at all: sled's files when new
/// (~100 KiB), a log segment, a few photos.
pub const LEAST_ROOM: u64 = 1024 * 1024;

/// Whether a file system of `total` bytes can ever hold a record beside the reserve.
pub fn can_ever_fit(total: u64) -> bool {
    total >= DISK_RESERVE.saturating_add(LEAST_ROOM)
}

/// Size and free space (for us) of the file system holding `path`, or its nearest existing
/// parent (a spool directory not made yet): `None` when that cannot be told.
pub fn file_system(path: &Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own and reads the NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // u32 on 32-bit targets, u64 here.
    #[allow(clippy::useless_conversion)]
    let (blocks, free, size) = (
        u64::from(st.f_blocks),
        u64::from(st.f_bavail),
        u64::from(st.f_frsize),
    );
    Some((blocks.checked_mul(size)?, free.checked_mul(size)?))
}

/// Refuses a spool directory this process could never use: a path that is not a directory (or
/// lies under a file), or one it cannot write to (or, not made yet, cannot be made). A restart
/// changes none of these, so they are said at start and by `check`, not met at the first record.
pub fn check_place(dir: &Path) -> Result<(), SpoolError> {
    let unusable = |why: String| SpoolError::Unusable {
        dir: dir.into(),
        why,
    };
    let Some(existing) = dir.ancestors().find(|p| p.symlink_metadata().is_ok()) else {
        return Ok(());
    };
    if !existing.is_dir() {
        return Err(unusable(if existing == dir {
            "is not a directory".into()
        } else {
            format!("{} is not a directory", existing.display())
        }));
    }
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| unusable("has a NUL byte in it".into()))?;
    // SAFETY: access reads the NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        return Err(unusable(if existing == dir {
            format!("this user (uid {uid}) cannot write to it: {e}")
        } else {
            format!(
                "it does not exist, and this user (uid {uid}) cannot make it in {}: {e}",
                existing.display()
            )
        }));
    }
    Ok(())
}

/// Refuses a spool directory on a file system too small to ever take a record: the bridge would
/// hold every record and say "spool full" forever.
pub fn check_capacity(dir: &Path) -> Result<(), SpoolError> {
    match file_system(dir) {
        Some((total, _)) if !can_ever_fit(total) => Err(SpoolError::TooSmall {
            dir: dir.into(),
            total,
        }),
        _ => Ok(()),
    }
}

/// Whether `incoming` more bytes fit beside the `queued` ones: under the size cap (an `empty`
/// queue always takes one, see [`Spool::make_room`]), and leaving [`DISK_RESERVE`] free on the
/// disk (`disk_free` is `None` when that cannot be told).
pub(super) fn fits(
    queued: u64,
    incoming: u64,
    max_bytes: u64,
    empty: bool,
    disk_free: Option<u64>,
) -> bool {
    (empty || queued.saturating_add(incoming) <= max_bytes)
        && disk_free.is_none_or(|free| free >= incoming.saturating_add(DISK_RESERVE))
}

impl Spool {
    /// Reads sled's size on disk again (deletions shrink it only as sled frees and truncates
    /// its segments, which it does on its own schedule).
    pub(super) fn measure_sled(&self) -> Result<(), SpoolError> {
        let size = self.db.size_on_disk().map_err(|e| self.err(e))?;
        self.sled_disk.store(size, Ordering::SeqCst);
        Ok(())
    }

    /// Makes room for `incoming` more bytes on disk under `max_size`: photos of the oldest
    /// records go first. `room` is false when even that is not enough: the caller then holds the
    /// record (backpressure). Records themselves are never dropped to make room.
    ///
    /// An empty queue always takes a record, whatever sled's files measure: sled reuses the
    /// space of deleted entries but gives it back to the file system only from the end of its
    /// file, so its size can stay above the cap after a drain, and nothing else could lower it.
    pub fn make_room(&self, incoming: u64) -> Result<Trimmed, SpoolError> {
        let mut t = Trimmed {
            photos: 0,
            room: true,
        };
        let fits_now = |s: &Spool| {
            fits(
                s.bytes(),
                incoming,
                s.max_bytes,
                s.is_empty(),
                s.disk_free(),
            )
        };
        if fits_now(self) {
            return Ok(t);
        }
        // Deletions since the last flush may have let sled give space back.
        self.measure_sled()?;
        if fits_now(self) {
            return Ok(t);
        }
        for (seq, _) in self.photos.list().map_err(|e| self.photo_err(e))? {
            if fits_now(self) {
                return Ok(t);
            }
            t.photos += u64::from(self.remove_photo(seq)?);
        }
        t.room = fits_now(self);
        Ok(t)
    }

    /// Bytes free for us on the spool's file system (`None` when it cannot be told).
    pub fn disk_free(&self) -> Option<u64> {
        file_system(&self.dir).map(|(_, free)| free)
    }

    /// Removes photos of the oldest records until `count` are gone (the disk is full: a record
    /// without its photo beats a record not taken). Returns how many went.
    pub fn shed_photos(&self, count: u64) -> Result<u64, SpoolError> {
        let mut shed = 0;
        for (seq, _) in self.photos.list().map_err(|e| self.photo_err(e))? {
            if shed >= count {
                break;
            }
            shed += u64::from(self.remove_photo(seq)?);
        }
        Ok(shed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// What an empty spool takes on disk (sled's files): caps in tests are counted above it.
    fn empty_size() -> u64 {
        let d = tempfile::tempdir().expect("tempdir");
        open(d.path()).bytes()
    }

    #[test]
    fn over_the_cap_photos_of_the_oldest_go_first_and_records_are_never_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        // Three photos of one block each and their entries (log frames and index keys, a few
        // hundred bytes each) fit; a fourth block does not.
        let s = Spool::open(d.path(), empty_size() + 3 * 4096 + 2000).expect("opens");
        let photo = vec![0xFFu8; 3000];
        for i in 0..3 {
            s.append("t", &rec(&format!("t-{i}"), i), Some(&photo), true)
                .expect("append");
        }
        let t = s.make_room(4096).expect("room");
        assert_eq!(
            t,
            Trimmed {
                photos: 1,
                room: true
            },
            "one photo frees enough"
        );
        let entries = s.next_after(None, 10).expect("read");
        assert_eq!(
            s.photo(entries[0].0, &entries[0].1).expect("photo"),
            None,
            "the oldest lost its photo"
        );
        assert!(
            s.photo(entries[2].0, &entries[2].1)
                .expect("photo")
                .is_some(),
            "the newest kept its photo"
        );

        let s2dir = tempfile::tempdir().expect("tempdir");
        let s2 = Spool::open(s2dir.path(), empty_size() + 200).expect("opens");
        for i in 0..10 {
            s2.append("t", &rec(&format!("t-{i}"), i), None, true)
                .expect("append");
        }
        let t = s2.make_room(50).expect("room");
        assert!(!t.room, "no photo to shed: no room, and the caller holds");
        assert_eq!(s2.len(), 10, "no record was dropped to make room");
    }

    /// What a directory takes on disk, as `du` counts it.
    fn du(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0;
        for item in std::fs::read_dir(dir).expect("read dir") {
            let m = item.expect("entry").metadata().expect("metadata");
            total += m.blocks() * 512;
        }
        let photos = dir.join("photos");
        if photos.is_dir() {
            total += du(&photos);
        }
        total
    }

    /// Records with photos stored the writer's way: room made first, then appended.
    fn fill(s: &Spool, n: u64, photo: &[u8]) -> u64 {
        let mut shed = 0;
        for i in 0..n {
            let r = rec(&format!("t-{i}"), i);
            let incoming = Incoming::of(&r, Some(photo));
            let e = Encoded::new("t", &incoming, 0);
            let t = s.make_room(e.size()).expect("room");
            shed += t.photos;
            assert!(t.room, "photos can always make room here");
            s.append_encoded(&e, true).expect("append");
            if i % 16 == 15 {
                s.flush().expect("flush");
            }
        }
        s.flush().expect("flush");
        shed
    }

    #[test]
    fn the_cap_is_what_the_spool_takes_on_disk() {
        let d = tempfile::tempdir().expect("tempdir");
        let cap = empty_size() + (2 << 20);
        let s = Spool::open(d.path(), cap).expect("opens");
        let photo = vec![0xA5u8; 43_000];
        // 200 photos of 43 KB are 8.6 MB, four times the cap above sled's own files.
        let shed = fill(&s, 200, &photo);
        assert!(shed >= 150, "photos of the oldest made room: {shed}");
        assert_eq!(s.len(), 200, "no record was dropped");
        let on_disk = du(d.path());
        // Directory blocks and sled's small files beside its log are the slack.
        assert!(
            on_disk <= cap + (64 << 10),
            "{on_disk} bytes on disk for a cap of {cap}"
        );
        assert!(
            s.bytes() + (64 << 10) >= on_disk,
            "counted {} bytes, {on_disk} on disk",
            s.bytes()
        );
    }

    #[test]
    fn a_record_fits_under_the_cap_with_the_four_mib_disk_reserve_left_free() {
        const MIB: u64 = 1 << 20;
        assert!(fits(900, 100, 1000, false, None), "exactly at the cap");
        assert!(!fits(901, 100, 1000, false, None), "one byte over the cap");
        assert!(
            fits(0, 100, 1000, false, Some(100 + 4 * MIB)),
            "exactly the reserve left"
        );
        assert!(
            !fits(0, 100, 1000, false, Some(100 + 4 * MIB - 1)),
            "one byte into the reserve"
        );
        assert!(
            !fits(901, 100, 1000, false, Some(u64::MAX)),
            "a free disk does not lift the cap"
        );
        assert!(
            !fits(0, 100, 1000, false, Some(0)),
            "room under the cap does not fill a full disk"
        );
        assert!(
            fits(5000, 100, 1000, true, None),
            "an empty queue takes a record over the cap"
        );
        assert!(
            !fits(5000, 100, 1000, true, Some(0)),
            "but not on a full disk"
        );
    }

    #[test]
    fn an_empty_queue_takes_a_record_whatever_sleds_files_measure() {
        let d = tempfile::tempdir().expect("tempdir");
        // A cap below what sled's own files take.
        let s = Spool::open(d.path(), empty_size() / 2).expect("opens");
        assert!(s.make_room(1000).expect("room").room, "the queue is empty");
        s.append("t", &rec("t-1", 1), None, true).expect("append");
        assert!(
            !s.make_room(1000).expect("room").room,
            "with one queued, the cap holds"
        );
        let (seq, _) = s.next_after(None, 1).expect("read")[0].clone();
        s.ack(seq).expect("ack");
        assert!(s.make_room(1000).expect("room").room, "empty again");
    }

    #[test]
    fn a_full_disk_or_quota_is_told_from_other_errors() {
        use std::io::{Error, ErrorKind};
        let photos = |e: Error| SpoolError::Photos {
            dir: "p".into(),
            source: e,
        };
        let db = |e: Error| SpoolError::Db {
            dir: "d".into(),
            source: sled::Error::Io(e),
        };
        assert!(photos(Error::from_raw_os_error(28)).is_full(), "ENOSPC");
        assert!(photos(Error::from_raw_os_error(122)).is_full(), "EDQUOT");
        assert!(photos(Error::new(ErrorKind::StorageFull, "full")).is_full());
        assert!(db(Error::from_raw_os_error(28)).is_full());
        assert!(db(Error::from_raw_os_error(122)).is_full());
        assert!(!photos(Error::from_raw_os_error(13)).is_full(), "EACCES");
        assert!(!db(Error::from_raw_os_error(5)).is_full(), "EIO");
        assert!(!SpoolError::Corrupt {
            seq: 1,
            reason: "x".into()
        }
        .is_full());
        assert!(!SpoolError::Db {
            dir: "d".into(),
            source: sled::Error::Unsupported("x".into())
        }
        .is_full());
    }

    #[test]
    fn shedding_photos_takes_the_oldest_and_counts_only_photos_that_freed_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let seqs: Vec<u64> = (0..4)
            .map(|i| {
                stored(
                    s.append("t", &rec(&format!("t-{i}"), i), Some(&[0xFF; 100]), true)
                        .expect("append"),
                )
            })
            .collect();
        // A power cut can leave a photo file empty: removing it frees nothing.
        std::fs::write(
            d.path().join("photos").join(format!("{:020}.jpg", seqs[0])),
            b"",
        )
        .expect("empty");
        assert_eq!(s.shed_photos(0).expect("shed"), 0);
        assert_eq!(s.shed_photos(2).expect("shed"), 2);
        let left: Vec<bool> = s
            .next_after(None, 10)
            .expect("read")
            .iter()
            .map(|(q, e)| s.photo(*q, e).expect("photo").is_some())
            .collect();
        assert_eq!(left, [false, false, false, true]);
        assert_eq!(s.len(), 4, "records stay");
    }

    #[test]
    fn a_spool_dir_that_is_a_file_or_under_one_is_refused_for_good() {
        let d = tempfile::tempdir().expect("tempdir");
        let file = d.path().join("afile");
        std::fs::write(&file, b"x").expect("write");
        for dir in [file.clone(), file.join("sub")] {
            let e = check_place(&dir).expect_err("not a directory");
            assert!(e.is_permanent(), "{e}");
            assert!(e.to_string().contains("is not a directory"), "{e}");
        }
        assert!(check_place(d.path()).is_ok());
        assert!(
            check_place(&d.path().join("new/deeper")).is_ok(),
            "made at start"
        );
    }

    #[test]
    fn the_spool_s_disk_has_more_than_the_reserve_free() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let free = s
            .disk_free()
            .expect("statvfs answers for the spool's directory");
        assert!(free > DISK_RESERVE, "{free}");
    }
}
