//! Queued entries' bodies (head and record JSON) in an append-only log of segment files
//! (`log/<first seq>.log`); sled keeps only where each one is ([`Location`], 13 bytes).
//!
//! Why not in sled: sled rewrites a leaf, values and all, on every insert and remove near it,
//! and keeps the leaves it touched in memory. With ~1.7 KB entries a FIFO cost 13x its bytes in
//! disk writes and tens of MiB of heap while a backlog drained (BENCHMARKS.md). Here a body is
//! written once, read back with one `pread`, and its space comes back when every entry of its
//! segment has left (a FIFO empties its segments oldest first): the file is unlinked.
//!
//! A frame is `seq (u64 BE) | len (u32 BE) | CRC-32 of the body (u32 BE) | body` (the photos'
//! checksum too: one checksum in the spool, and crc32fast uses the CPU's CRC instructions). Reading checks
//! all three, so a frame a power cut tore, or one that never reached the disk while sled's index
//! did, reads as damaged rather than as another record. [`Bodies::sync`] makes every frame written
//! so far durable (group commit, with the batch's photos, before sled's flush).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const HEADER: usize = 8 + 4 + 4;

/// A segment is closed and a new one started once it holds this many bytes (fewer for a small
/// `spool.max_size`, see [`Bodies::open`]): the space of a segment comes back only when all of
/// it has been acknowledged.
pub const SEGMENT_BYTES: u64 = 1 << 20;

/// Tag of a `records` value (so that other bytes read as damage, not as a location).
const TAG: u8 = 0x01;
/// Bit of a location's flags: the entry has a photo file.
const HAS_PHOTO: u8 = 0x01;
/// Tag, flags, offset, length.
const LOCATION: usize = 1 + 1 + 8 + 4;

/// Where an entry's body is: its frame's offset in its segment, and the body's length; and
/// whether a photo file goes with it (so that an acknowledgement of one without does not look).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub offset: u64,
    pub len: u32,
    pub photo: bool,
}

impl Location {
    /// The `records` value: the location, then the entry's `pending` key (so that an
    /// acknowledgement removes it without reading the body).
    pub fn encode(&self, pending: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(LOCATION + pending.len());
        v.push(TAG);
        v.push(if self.photo { HAS_PHOTO } else { 0 });
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(pending);
        v
    }

    /// The location and the `pending` key; `None` for a value that is not one (damage).
    pub fn decode(v: &[u8]) -> Option<(Location, &[u8])> {
        if v.len() < LOCATION || v[0] != TAG || v[1] & !HAS_PHOTO != 0 {
            return None;
        }
        let offset = u64::from_be_bytes(v[2..10].try_into().ok()?);
        let len = u32::from_be_bytes(v[10..14].try_into().ok()?);
        let photo = v[1] & HAS_PHOTO != 0;
        Some((Location { offset, len, photo }, &v[LOCATION..]))
    }
}

/// A frame read back, header and body, with the file it is in.
type Frame = (Arc<File>, Vec<u8>);

struct Segment {
    file: Arc<File>,
    /// Bytes written (what it takes on disk, give or take its last block).
    len: u64,
}

#[derive(Default)]
struct Inner {
    /// By the sequence number of their first entry: entry `seq` is in the last one at or below.
    segments: BTreeMap<u64, Segment>,
    /// The segment appended to; `None` until the first append after opening (a segment written
    /// by an earlier process may end in a torn frame: it is never appended to again).
    active: Option<u64>,
    /// Segments written since the last sync, and whether a file was created since.
    unsynced: BTreeSet<u64>,
    created: bool,
    /// Segments that may have no queued entry left, for the spool to check against its index
    /// (which knows what is queued; a count kept here could not know of an entry whose index key
    /// a crash lost) and remove.
    dead: Vec<u64>,
    /// Segments found dead, to unlink once the index change that freed them is durable: unlinked
    /// before, a power cut could leave an index naming entries whose frames are gone.
    doomed: Vec<u64>,
    bytes: u64,
}

impl Inner {
    /// The segment entry `seq` is in (the last one starting at or below it).
    fn holding(&self, seq: u64) -> Option<(u64, &Segment)> {
        self.segments
            .range(..=seq)
            .next_back()
            .map(|(first, s)| (*first, s))
    }

    /// The end of segment `first`'s range: the next segment's first entry.
    fn end_of(&self, first: u64) -> u64 {
        self.segments
            .range(first.saturating_add(1)..)
            .next()
            .map_or(u64::MAX, |(k, _)| *k)
    }
}

pub struct Bodies {
    dir: PathBuf,
    roll_at: u64,
    inner: Mutex<Inner>,
}

fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

fn first_of(name: &str) -> Option<u64> {
    name.strip_suffix(".log")?.parse().ok()
}

impl Bodies {
    /// Opens the log in `dir` (created if missing). `max_bytes` is the spool's size cap: segments
    /// are a sixteenth of it at most, so the space held by a half-acknowledged segment stays small
    /// beside the cap.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Bodies> {
        fs::create_dir_all(dir)?;
        let mut inner = Inner::default();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let Some(first) = item.file_name().to_str().and_then(first_of) else {
                continue;
            };
            // Writable: frames past the last good mark are written again (see `renew`).
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(item.path())?;
            let len = file.metadata()?.len();
            inner.bytes = inner.bytes.saturating_add(len);
            inner.segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    len,
                },
            );
        }
        Ok(Bodies {
            dir: dir.into(),
            roll_at: (max_bytes / 16).clamp(64 << 10, SEGMENT_BYTES),
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The segments on disk: first sequence number, and the first of the next one (the end of
    /// its range).
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let inner = self.lock();
        inner
            .segments
            .keys()
            .map(|first| (*first, inner.end_of(*first)))
            .collect()
    }

    /// Appends entry `seq`'s body. Written to the file before it returns (a process that dies
    /// next leaves it in the page cache); durable after [`Bodies::sync`].
    pub fn append(&self, seq: u64, body: &[u8], photo: bool) -> io::Result<Location> {
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "entry over 4 GiB"))?;
        let mut inner = self.lock();
        let active = inner.active.and_then(|a| inner.segments.get(&a));
        if active.is_none_or(|s| s.len >= self.roll_at) {
            if let Some(old) = inner.active.take() {
                inner.dead.push(old);
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(self.dir.join(file_name(seq)))?;
            inner.segments.insert(
                seq,
                Segment {
                    file: Arc::new(file),
                    len: 0,
                },
            );
            inner.active = Some(seq);
            inner.created = true;
        }
        let active = inner.active.unwrap_or(seq);
        let Some(seg) = inner.segments.get_mut(&active) else {
            return Err(io::Error::other("the active log segment is gone"));
        };
        let mut frame = Vec::with_capacity(HEADER + body.len());
        frame.extend_from_slice(&seq.to_be_bytes());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
        frame.extend_from_slice(body);
        let offset = seg.len;
        // At our own offset: a write that failed half-way (a full disk) is overwritten by the next.
        seg.file.write_all_at(&frame, offset)?;
        seg.len += frame.len() as u64;
        inner.bytes = inner.bytes.saturating_add(frame.len() as u64);
        inner.unsynced.insert(active);
        Ok(Location { offset, len, photo })
    }

    /// Entry `seq`'s body; `Ok(Err(why))` when what is there is not it (torn, never written,
    /// or its segment is gone).
    pub fn read(&self, seq: u64, at: Location) -> io::Result<Result<Vec<u8>, String>> {
        Ok(self.frame(seq, at)?.map(|(_, mut frame)| {
            frame.drain(..HEADER);
            frame
        }))
    }

    /// Writes entry `seq`'s frame again where it is, to be synced by the next [`Bodies::sync`];
    /// `Ok(Err(why))` when it is damaged. After a failed fsync, Linux marks the pages it could not
    /// write clean: they read back whole until evicted, but a later fsync does not write them.
    /// Written again, they are dirty once more (and one that was evicted reads as damage).
    pub fn renew(&self, seq: u64, at: Location) -> io::Result<Result<(), String>> {
        let (file, frame) = match self.frame(seq, at)? {
            Ok(found) => found,
            Err(why) => return Ok(Err(why)),
        };
        file.write_all_at(&frame, at.offset)?;
        let mut inner = self.lock();
        if let Some((first, _)) = inner.holding(seq) {
            inner.unsynced.insert(first);
        }
        Ok(Ok(()))
    }

    /// Entry `seq`'s whole frame, checked, and the file it is in.
    fn frame(&self, seq: u64, at: Location) -> io::Result<Result<Frame, String>> {
        let (file, end) = {
            let inner = self.lock();
            match inner.holding(seq) {
                Some((_, s)) => (Arc::clone(&s.file), s.len),
                None => return Ok(Err("its log segment is gone".into())),
            }
        };
        // A damaged index must not make us allocate what it says: the frame lies in the segment.
        let size = (HEADER as u64).saturating_add(u64::from(at.len));
        if at.offset.saturating_add(size) > end {
            return Ok(Err("its frame would end past its log segment".into()));
        }
        let mut frame = vec![0u8; HEADER + at.len as usize];
        match file.read_exact_at(&mut frame, at.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Err("its frame is cut short in the log".into()))
            }
            Err(e) => return Err(e),
        }
        let (head, body) = frame.split_at(HEADER);
        let stored_seq = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let stored_len = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default());
        let crc = u32::from_be_bytes(head[12..].try_into().unwrap_or_default());
        if stored_seq != seq || stored_len != at.len || crc32fast::hash(body) != crc {
            return Ok(Err(
                "its frame in the log is damaged (a power cut before it reached the disk?)".into(),
            ));
        }
        Ok(Ok((file, frame)))
    }

    /// Entry `seq` left the queue: its segment may now hold none (see [`Bodies::take_dead`]).
    pub fn release(&self, seq: u64) {
        let mut inner = self.lock();
        if let Some((first, _)) = inner.holding(seq) {
            inner.dead.push(first);
        }
    }

    /// Segments that may hold no queued entry, with the end of their range, once each: not the
    /// one being appended to. The spool checks its index before it calls [`Bodies::remove`].
    pub fn take_dead(&self) -> Vec<(u64, u64)> {
        let mut inner = self.lock();
        let mut dead = std::mem::take(&mut inner.dead);
        dead.sort_unstable();
        dead.dedup();
        dead.into_iter()
            .filter(|first| inner.active != Some(*first) && inner.segments.contains_key(first))
            .map(|first| (first, inner.end_of(first)))
            .collect()
    }

    /// Segment `first` holds no queued entry: unlinked (by the spool) once that is durable.
    pub fn doom(&self, first: u64) {
        self.lock().doomed.push(first);
    }

    /// The segments doomed so far, taken: a flush that starts now makes their freeing durable.
    pub fn take_doomed(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().doomed)
    }

    /// Whether a segment waits for a flush to be unlinked.
    pub fn has_doomed(&self) -> bool {
        !self.lock().doomed.is_empty()
    }

    /// Unlinks segment `first` (no sync needed: one a crash brings back is removed again at the
    /// next open, as it holds no queued entry).
    pub fn remove(&self, first: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let Some(seg) = inner.segments.remove(&first) else {
            return Ok(());
        };
        inner.bytes = inner.bytes.saturating_sub(seg.len);
        inner.unsynced.remove(&first);
        drop(inner);
        match fs::remove_file(self.dir.join(file_name(first))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes every frame written so far durable: the segments' data, then the directory when a
    /// segment was created. A sync that fails is not retried by the next: after a failed
    /// fsync, Linux marks the pages it could not write clean, so a second fsync reports success
    /// for data that is not on the disk. The spool stops instead (see `Spool::flush`).
    pub fn sync(&self) -> io::Result<()> {
        let (files, created) = {
            let mut inner = self.lock();
            let firsts = std::mem::take(&mut inner.unsynced);
            let files: Vec<Arc<File>> = firsts
                .iter()
                .filter_map(|f| inner.segments.get(f).map(|s| Arc::clone(&s.file)))
                .collect();
            (files, std::mem::take(&mut inner.created))
        };
        files.iter().try_for_each(|f| f.sync_data())?;
        if created {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// What the segments take on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The segment file holding entry `seq`, for tests that damage it.
    #[cfg(test)]
    pub fn path_of(&self, seq: u64) -> Option<PathBuf> {
        let (first, _) = self.lock().holding(seq)?;
        Some(self.dir.join(file_name(first)))
    }

    /// Cuts the segment file holding entry `seq` to `len` bytes behind the log's back: what a
    /// power cut leaves of frames that never reached the disk.
    #[cfg(test)]
    pub fn cut(&self, seq: u64, len: u64) {
        let path = self.path_of(seq).expect("a segment holds it");
        OpenOptions::new()
            .write(true)
            .open(path)
            .expect("segment")
            .set_len(len)
            .expect("cut");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_round_trips_and_other_bytes_are_not_one() {
        for photo in [false, true] {
            let at = Location {
                offset: 1 << 40,
                len: 1700,
                photo,
            };
            assert_eq!(
                Location::decode(&at.encode(b"door\0key")),
                Some((at, &b"door\0key"[..]))
            );
            assert_eq!(Location::decode(&at.encode(b"")), Some((at, &b""[..])));
            assert_eq!(Location::decode(&at.encode(b"")[..LOCATION - 1]), None);
        }
        assert_eq!(
            Location::decode(br#"{"terminal":"t","event_id":"e"}"#),
            None
        );
        let at = Location {
            offset: 7,
            len: 9,
            photo: false,
        };
        let mut other = at.encode(b"k");
        other[1] = 0x80;
        assert_eq!(Location::decode(&other), None, "an unknown flag is damage");
    }

    #[test]
    fn a_body_reads_back_as_written_and_a_damaged_frame_reads_as_damaged() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(d.path(), 512 << 20).expect("open");
        let one = b.append(7, b"first body", false).expect("append");
        let two = b.append(8, b"second", false).expect("append");
        assert_eq!(b.read(7, one).expect("read"), Ok(b"first body".to_vec()));
        assert_eq!(b.read(8, two).expect("read"), Ok(b"second".to_vec()));
        assert!(
            b.read(8, one).expect("read").is_err(),
            "another entry's frame"
        );
        let long = Location { len: 11, ..one };
        assert!(b.read(7, long).expect("read").is_err(), "wrong length");
        let past = Location {
            offset: 1 << 20,
            len: 4,
            photo: false,
        };
        assert!(b.read(8, past).expect("read").is_err(), "past the end");
        let huge = Location {
            offset: u64::MAX - 3,
            len: u32::MAX,
            photo: false,
        };
        assert!(b.read(8, huge).expect("read").is_err(), "no 4 GiB buffer");
        let last_byte_short = Location {
            len: two.len + 1,
            ..two
        };
        assert!(b.read(8, last_byte_short).expect("read").is_err());
        // One flipped byte of the body.
        let path = b.path_of(7).expect("segment");
        let f = OpenOptions::new().write(true).open(path).expect("open");
        f.write_all_at(b"F", one.offset + HEADER as u64)
            .expect("damage");
        assert!(b.read(7, one).expect("read").is_err(), "checksum mismatch");
        assert_eq!(b.read(8, two).expect("read"), Ok(b"second".to_vec()));
    }

    #[test]
    fn a_segment_is_closed_at_its_size_and_offered_for_removal_when_an_entry_of_it_leaves() {
        let d = tempfile::tempdir().expect("tempdir");
        // The smallest roll size: 64 KiB.
        let b = Bodies::open(d.path(), 1 << 20).expect("open");
        let body = vec![b'x'; 16 << 10];
        for seq in 1..=5 {
            b.append(seq, &body, false).expect("append");
        }
        assert_eq!(b.segment_count(), 2, "four frames of 16 KiB fill 64 KiB");
        assert_eq!(b.ranges(), [(1, 5), (5, u64::MAX)]);
        b.release(2);
        b.release(3);
        assert_eq!(b.take_dead(), [(1, 5)], "once, with the end of its range");
        assert!(b.take_dead().is_empty(), "taken");
        b.remove(1).expect("remove");
        assert_eq!(b.segment_count(), 1);
        assert_eq!(b.bytes(), (HEADER + body.len()) as u64);
        b.release(5);
        assert!(b.take_dead().is_empty(), "the segment appended to stays");
        b.release(4);
        assert!(
            b.take_dead().is_empty(),
            "a removed segment is not offered again"
        );
    }

    #[test]
    fn a_failing_read_is_an_error_and_a_frame_cut_short_is_damage() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(d.path(), 512 << 20).expect("open");
        let at = b.append(1, b"body", false).expect("append");
        let path = b.path_of(1).expect("segment");
        // The file shorter than the log believes (cut behind its back): damage.
        b.cut(1, HEADER as u64 + 2);
        assert!(b.read(1, at).expect("read").is_err());
        // A handle that cannot read (EBADF standing in for EIO): an error, not damage, so
        // that the caller does not quarantine a whole entry for a failing disk.
        let write_only = OpenOptions::new().write(true).open(&path).expect("open");
        b.lock().segments.get_mut(&1).expect("segment").file = Arc::new(write_only);
        assert!(b.read(1, at).is_err());
    }

    #[test]
    fn removing_a_segment_already_gone_is_fine_and_a_failing_removal_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(d.path(), 1 << 20).expect("open");
        let body = vec![b'x'; 64 << 10];
        for seq in 1..=3 {
            b.append(seq, &body, false).expect("append");
        }
        fs::remove_file(b.path_of(1).expect("segment")).expect("gone behind our back");
        b.remove(1).expect("already gone is fine");
        let second = b.path_of(2).expect("segment");
        fs::remove_file(&second).expect("remove");
        fs::create_dir(&second).expect("a directory where the segment was");
        assert!(b.remove(2).is_err());
    }

    #[test]
    fn a_frame_written_again_reads_the_same_and_waits_for_the_next_sync() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("log");
        let at;
        {
            let b = Bodies::open(&dir, 1 << 20).expect("open");
            at = b.append(5, b"body", false).expect("append");
            b.sync().expect("sync");
        }
        let b = Bodies::open(&dir, 1 << 20).expect("reopen");
        assert!(b.lock().unsynced.is_empty());
        assert_eq!(b.renew(5, at).expect("renew"), Ok(()));
        assert_eq!(
            b.lock().unsynced.len(),
            1,
            "written again: synced by the next sync"
        );
        assert_eq!(b.read(5, at).expect("read"), Ok(b"body".to_vec()));
        b.cut(5, HEADER as u64 + 1);
        assert!(
            b.renew(5, at).expect("renew").is_err(),
            "a torn frame is damage"
        );
    }

    #[test]
    fn segments_are_a_sixteenth_of_the_cap_between_64_kib_and_1_mib() {
        let d = tempfile::tempdir().expect("tempdir");
        for (cap, roll) in [
            (512 << 10, 64 << 10),
            (4 << 20, 256 << 10),
            (512 << 20, SEGMENT_BYTES),
        ] {
            let b = Bodies::open(d.path(), cap).expect("open");
            assert_eq!(b.roll_at, roll, "cap {cap}");
        }
    }

    #[test]
    fn the_segment_appended_to_is_offered_for_removal_once_the_next_one_starts() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(d.path(), 1 << 20).expect("open");
        let body = vec![b'x'; 64 << 10];
        b.append(1, &body, false).expect("append");
        b.release(1);
        assert!(b.take_dead().is_empty());
        b.append(2, &body, false).expect("append");
        assert_eq!(b.take_dead(), [(1, 2)]);
    }

    #[test]
    fn a_reopened_log_appends_to_a_new_segment_and_counts_the_old_ones_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let at;
        {
            let b = Bodies::open(d.path(), 512 << 20).expect("open");
            at = b.append(1, b"kept", false).expect("append");
            b.sync().expect("sync");
        }
        let b = Bodies::open(d.path(), 512 << 20).expect("open");
        assert_eq!(b.bytes(), (HEADER + 4) as u64);
        b.append(2, b"new", false).expect("append");
        assert_eq!(b.ranges(), [(1, 2), (2, u64::MAX)]);
        assert_eq!(b.read(1, at).expect("read"), Ok(b"kept".to_vec()));
    }

    #[test]
    fn a_sync_that_failed_is_not_retried_by_the_next_one() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(&d.path().join("log"), 512 << 20).expect("open");
        b.append(1, b"body", false).expect("append");
        fs::remove_dir_all(d.path().join("log")).expect("pull the directory away");
        assert!(b.sync().is_err(), "the directory cannot be synced");
        let inner = b.lock();
        assert!(
            inner.unsynced.is_empty() && !inner.created,
            "a second fsync would report success for pages the first could not write"
        );
    }

    #[test]
    fn a_doomed_segment_waits_to_be_taken() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = Bodies::open(d.path(), 1 << 20).expect("open");
        assert!(!b.has_doomed());
        b.doom(1);
        b.doom(9);
        assert!(b.has_doomed());
        assert_eq!(b.take_doomed(), [1, 9]);
        assert!(!b.has_doomed() && b.take_doomed().is_empty());
    }
}
