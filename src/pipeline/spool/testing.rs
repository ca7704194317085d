//! Helpers the spool's unit tests share.

use super::*;
use serde_json::json;

pub fn rec(id: &str, t: u64) -> Normalized {
    Normalized::of(crate::pipeline::record::Record::bare("t", id, t))
}

/// `rec(id, t)` with `pad` bytes of text under `extra`.
pub fn padded(id: &str, t: u64, pad: usize) -> Normalized {
    let mut r = rec(id, t);
    r.record.extra.insert("pad".into(), json!("x".repeat(pad)));
    r
}

/// Opens the spool in `dir`, also again after a `Spool` on it was dropped. sled lets go of
/// its file lock when its background threads drop their handles, which can be a moment after
/// the `Spool` is dropped: a reopen waits for that (up to a deadline) instead of failing.
pub fn open(dir: &Path) -> Spool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Spool::open(dir, 64 << 20) {
            Ok(s) => return s,
            Err(SpoolError::Db {
                source: sled::Error::Io(e),
                ..
            }) if e.to_string().contains("could not acquire lock")
                && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opens: {e}"),
        }
    }
}

/// sled itself opened on `dir`, to change a spool behind its back, once a dropped spool's
/// background threads have let go of the lock (see [`open`]).
pub fn sled_waiting(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
}

pub fn stored(a: Appended) -> u64 {
    match a {
        Appended::Stored(seq) => seq,
        Appended::Duplicate => panic!("expected a new entry"),
    }
}

/// Sequence numbers of the queued entries, oldest first.
pub fn queued(s: &Spool) -> Vec<u64> {
    s.next_after(None, 1000)
        .expect("read")
        .into_iter()
        .map(|(q, _)| q)
        .collect()
}

/// Files in the spool's log.
pub fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("log")).expect("log").count()
}

pub fn marks(pairs: &[(&str, u64)]) -> lowwater::Marks {
    pairs.iter().map(|(t, m)| (t.to_string(), *m)).collect()
}

/// sled's files in `dir` as they are now (not the log, the photos or the low-water file), to
/// put back with [`power_cut_to`]: what sled's index holds on the card after a flush.
pub struct IndexSnapshot(tempfile::TempDir);

/// Takes the snapshot. Call it right after a flush: that is what a power cut leaves of sled.
pub fn durable_index(dir: &Path) -> IndexSnapshot {
    let snap = tempfile::tempdir().expect("tempdir");
    copy_sled_files(dir, snap.path());
    IndexSnapshot(snap)
}

/// The power went: sled's writes since `snap` are lost, while the files beside it (log segments,
/// photos) are as the last process left them. Waits for sled's lock first (its background
/// threads let go a moment after the spool is dropped), and holds it while it writes.
pub fn power_cut_to(dir: &Path, snap: &IndexSnapshot) {
    use std::os::fd::AsRawFd;
    let db = std::fs::File::open(dir.join("db")).expect("sled's db file");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // SAFETY: flock on a descriptor we own; sled takes the same lock on this file.
    while unsafe { libc::flock(db.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "sled let go of its lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for item in std::fs::read_dir(dir).expect("spool dir") {
        let path = item.expect("entry").path();
        if is_sled_file(&path) {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove");
            } else if path.file_name() != Some("db".as_ref()) {
                std::fs::remove_file(&path).expect("remove");
            }
        }
    }
    copy_sled_files(snap.0.path(), dir);
}

fn is_sled_file(path: &Path) -> bool {
    !matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("log" | "photos" | "lowwater.json")
    )
}

fn copy_sled_files(from: &Path, to: &Path) {
    for item in std::fs::read_dir(from).expect("read dir") {
        let path = item.expect("entry").path();
        if !is_sled_file(&path) {
            continue;
        }
        let dest = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_sled_files(&path, &dest);
        } else {
            // Written into the file in place: `db` keeps its inode (and the lock on it).
            let bytes = std::fs::read(&path).expect("read");
            std::fs::write(&dest, bytes).expect("write");
        }
    }
}
