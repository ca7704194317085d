//! Capture photos as files beside the sled tree, one per spool entry (`<seq>.jpg`).
//!
//! Measured (BENCHMARKS.md): kept inside sled, a ~43 KB photo cost ~160 KiB of disk writes, as
//! sled rewrites its large leaves while entries come and go. A file is written once and unlinked
//! on PUBACK. Photos are synced with the batch they came in (group commit, before sled's flush),
//! and each entry keeps the photo's length and hash: a photo torn by a power cut is detected and
//! dropped (the record still goes out), never published half.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Photos {
    dir: PathBuf,
    /// Files written since the last sync.
    unsynced: Mutex<Vec<PathBuf>>,
}

/// Photo files synced at once (see [`Photos::sync`]); more did not help in the measurement.
const SYNC_THREADS: usize = 8;

fn sync_file(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(f) => f.sync_data(),
        // Published and unlinked before the sync: nothing left to keep.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a photo file of `len` bytes takes on disk: whole file-system blocks (4 KiB on ext4 and
/// f2fs, the SD card's usual file systems), so a 43,000-byte photo takes 45,056.
pub fn allocated(len: u64) -> u64 {
    len.div_ceil(4096).saturating_mul(4096)
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_suffix(".jpg")?.parse().ok()
}

impl Photos {
    pub fn open(dir: &Path) -> io::Result<Photos> {
        fs::create_dir_all(dir)?;
        Ok(Photos {
            dir: dir.into(),
            unsynced: Mutex::new(Vec::new()),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.jpg"))
    }

    /// Writes the photo; durable after the next [`Photos::sync`].
    pub fn put(&self, seq: u64, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(seq);
        let written = File::create(&path).and_then(|mut f| f.write_all(bytes));
        if let Err(e) = written {
            // A full disk leaves a partial file: it must not count, nor be taken for a photo.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.unsynced().push(path);
        Ok(())
    }

    /// Makes every photo written so far durable: their data, then their directory entries.
    ///
    /// Group commit: the files are synced from several threads at once, so the file system
    /// commits its journal once for many of them instead of once per photo. Measured on a
    /// loaded ext4 (batch of 64 photos of 43 KB): one after the other 283 photos/s, in parallel
    /// 1,816/s, with no tail; `syncfs` was as fast at its median but also flushed every other
    /// process's dirty data and took up to 1 s; one segment file per batch was 1.3x faster still,
    /// but gives up what one file per photo buys (unlinked on PUBACK, dropped alone to make room,
    /// orphans found by name). On an SD card fewer journal commits also mean less wear.
    pub fn sync(&self) -> io::Result<()> {
        let files = std::mem::take(&mut *self.unsynced());
        if files.is_empty() {
            return Ok(());
        }
        let per_thread = files.len().div_ceil(SYNC_THREADS);
        let synced = std::thread::scope(|scope| {
            let running: Vec<_> = files
                .chunks(per_thread)
                .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(|p| sync_file(p))))
                .collect();
            running.into_iter().try_for_each(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a photo sync thread panicked")))
            })
        })
        .and_then(|()| File::open(&self.dir)?.sync_all());
        // Not kept for a retry: a second fsync after a failed one reports success for pages the
        // first could not write (see `Bodies::sync`). The spool stops instead.
        synced
    }

    /// Writes photo `seq` again, to be synced by the next [`Photos::sync`] (after a failed
    /// fsync its pages may be in memory only; see `Bodies::renew`). A missing photo is fine.
    pub fn renew(&self, seq: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.path(seq);
        let Some(bytes) = self.get(seq)? else {
            return Ok(());
        };
        fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .write_all_at(&bytes, 0)?;
        self.unsynced().push(path);
        Ok(())
    }

    /// The photos written and not yet synced (tests of the group commit count them).
    pub fn unsynced(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.unsynced.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(seq)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the photo; returns its length (0 when there was none). Needs no sync: a
    /// delete lost in a crash leaves an orphan that the next open removes.
    pub fn remove(&self, seq: u64) -> io::Result<u64> {
        let path = self.path(seq);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Every photo on disk, oldest entry first, with its size.
    pub fn list(&self) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let item = item?;
            let Some(seq) = item.file_name().to_str().and_then(seq_of) else {
                continue;
            };
            out.push((seq, item.metadata()?.len()));
        }
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_is_written_read_listed_and_removed() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = Photos::open(&d.path().join("photos")).expect("open");
        p.put(7, b"jpeg-7").expect("put");
        p.put(3, b"jpeg-three").expect("put");
        p.sync().expect("sync");
        assert_eq!(p.get(7).expect("get"), Some(b"jpeg-7".to_vec()));
        assert_eq!(p.list().expect("list"), vec![(3, 10), (7, 6)]);
        assert_eq!(p.remove(3).expect("remove"), 10);
        assert_eq!(p.remove(3).expect("remove again"), 0);
        assert_eq!(p.get(3).expect("get"), None);
    }

    #[test]
    fn a_photo_removed_before_the_sync_does_not_fail_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = Photos::open(d.path()).expect("open");
        p.put(1, b"x").expect("put");
        p.remove(1).expect("remove");
        p.sync().expect("sync");
    }

    #[test]
    fn photos_whose_sync_failed_are_not_retried_and_a_renewed_one_is_synced_again() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("photos");
        let p = Photos::open(&dir).expect("open");
        p.put(1, b"x").expect("put");
        // The directory cannot be opened to sync it: the sync fails.
        let aside = d.path().join("aside");
        fs::rename(&dir, &aside).expect("move away");
        assert!(p.sync().is_err());
        assert_eq!(
            p.unsynced().len(),
            0,
            "not kept: a retry would report success"
        );
        fs::rename(&aside, &dir).expect("move back");
        p.renew(1).expect("renew");
        p.renew(2).expect("a missing photo is fine");
        assert_eq!(p.unsynced().len(), 1);
        assert_eq!(p.get(1).expect("read"), Some(b"x".to_vec()));
        p.sync().expect("sync");
        assert_eq!(p.unsynced().len(), 0);
    }

    #[test]
    fn other_files_in_the_directory_are_not_photos() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = Photos::open(d.path()).expect("open");
        fs::write(d.path().join("notes.txt"), b"x").expect("write");
        fs::write(d.path().join("12.jpg.tmp"), b"x").expect("write");
        assert!(p.list().expect("list").is_empty());
    }
}
