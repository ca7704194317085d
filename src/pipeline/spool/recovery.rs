//! What opening the spool repairs after a crash or a power cut: frames past the last good mark
//! that never reached the disk (or may not have: after a failed fsync), and an index that lost
//! half of a change (a `pending` key without its entry, or the reverse).

use std::path::Path;

use super::SpoolError;
use super::{bodies, key_seq, pending_parts, pending_seq, photos, seen_prefix, seq_key, wm_key};

/// A file a failed flush leaves in the spool's directory (not synced: it is for the next process
/// of the same boot).
pub(super) const NOT_DURABLE: &str = "not-durable";

/// After a failed flush (its mark is there), writes sled's files again and syncs them, before
/// sled opens them: the pages that fsync could not write are clean in the page cache, so sled
/// would read them back whole and a later fsync would never write them; a power cut then would
/// tear sled's log. Written again, they are dirty and synced. (A reboot in between takes both
/// the pages and the mark, and sled reads what the card has.)
pub(super) fn renew_index_files(dir: &Path) -> std::io::Result<()> {
    let mark = dir.join(NOT_DURABLE);
    if !mark.exists() {
        return Ok(());
    }
    // Under sled's own lock: never while another process has the spool open.
    let db = std::fs::File::open(dir.join("db"))?;
    if !try_lock(&db) {
        return Ok(());
    }
    tracing::warn!(spool = %dir.display(), "the last run of the bridge stopped after the spool's disk failed to make writes durable: writing the spool's index again before opening it");
    renew_files_in(dir)?;
    std::fs::File::open(dir)?.sync_all()?;
    std::fs::remove_file(&mark)?;
    drop(db);
    Ok(())
}

/// Takes sled's lock on its `db` file without waiting (flock, as sled does); false while another
/// holds it. Released when the file is closed.
fn try_lock(db: &std::fs::File) -> bool {
    // SAFETY: flock on a descriptor the caller owns.
    unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(db),
            libc::LOCK_EX | libc::LOCK_NB,
        ) == 0
    }
}

/// Writes every regular file in `dir` (and its subdirectories, but the log and the photos,
/// which the open renews entry by entry) again and syncs it.
fn renew_files_in(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let name = item.file_name();
        if name == "log" || name == "photos" || name == NOT_DURABLE {
            continue;
        }
        let kind = item.file_type()?;
        if kind.is_dir() {
            renew_files_in(&path)?;
            std::fs::File::open(&path)?.sync_all()?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&path)?;
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_data()?;
        }
    }
    Ok(())
}

/// The trees that repair touches.
pub(super) struct Trees<'a> {
    pub records: &'a sled::Tree,
    pub pending: &'a sled::Tree,
    pub seen: &'a sled::Tree,
    pub meta: &'a sled::Tree,
}

/// Checks the entries numbered `synced` and up (written after the last flush known good) and
/// writes each whole one again, with its photo, then syncs them: they may be in memory only (a
/// process that died, or an fsync that failed and left its pages clean but unwritten; see
/// `Bodies::renew`). The entries whose frames are not whole are forgotten: sled's index reached
/// the disk (sled also flushes on its own, every 500 ms) and the frame did not. Such a record
/// was never reported durable, so the terminal still has it: its index and dedupe keys go and
/// its terminal's watermark is lowered below it, so that backfill fetches it again. Returns how
/// many were forgotten.
pub(super) fn renew_from(
    dir: &Path,
    t: &Trees<'_>,
    bodies: &bodies::Bodies,
    photos: &photos::Photos,
    on_disk: &[(u64, u64)],
    synced: u64,
) -> Result<usize, SpoolError> {
    let err = |source| super::db_err(dir, source);
    let log_err = |source| super::log_err(dir, source);
    let photo_err = |source| super::photo_err(dir, source);
    let mut lost = Vec::new();
    for item in t.records.range(seq_key(synced)..) {
        let (k, v) = item.map_err(err)?;
        let seq = key_seq(&k);
        let Some((at, key)) = bodies::Location::decode(&v) else {
            continue;
        };
        if let Err(why) = bodies.renew(seq, at).map_err(log_err)? {
            lost.push((seq, key.to_vec(), why));
        }
    }
    for (seq, _) in on_disk.iter().filter(|(seq, _)| *seq >= synced) {
        photos.renew(*seq).map_err(photo_err)?;
    }
    photos.sync().map_err(photo_err)?;
    bodies.sync().map_err(log_err)?;
    let forgotten = lost.len();
    // Per second of a lost record: its dedupe keys (every record of that second loses them: the
    // others come again as duplicates) and the watermark below it.
    let mut seconds: Vec<(String, u64)> = Vec::new();
    for (seq, key, why) in &lost {
        let Some((terminal, sign_time)) = pending_parts(key) else {
            continue;
        };
        let terminal = String::from_utf8_lossy(terminal).into_owned();
        tracing::warn!(
            seq, terminal = %terminal, sign_time, reason = %why,
            "a spooled record did not reach the disk before a power cut (it was never reported received): backfill fetches it again from the terminal"
        );
        if !seconds.contains(&(terminal.clone(), sign_time)) {
            seconds.push((terminal, sign_time));
        }
    }
    let mut seen_keys = Vec::new();
    for (terminal, sign_time) in &seconds {
        for k in t.seen.scan_prefix(seen_prefix(terminal, *sign_time)).keys() {
            seen_keys.push(k.map_err(err)?);
        }
    }
    // One transaction: a power cut during the repair must not keep the entries' removal and lose
    // the watermark's lowering (backfill would then never fetch them again).
    use sled::Transactional;
    (t.records, t.pending, t.seen, t.meta)
        .transaction(|(records, pending, seen, meta)| {
            for (seq, key, _) in &lost {
                records.remove(&seq_key(*seq)[..])?;
                pending.remove(key.as_slice())?;
            }
            for k in &seen_keys {
                seen.remove(k)?;
            }
            for (terminal, sign_time) in &seconds {
                let below = sign_time.saturating_sub(1);
                if let Some(old) = meta.get(wm_key(terminal))? {
                    let lowered = key_seq(&old).min(below);
                    meta.insert(wm_key(terminal), &lowered.to_be_bytes())?;
                }
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => err(e),
            sled::transaction::TransactionError::Abort(()) => err(sled::Error::ReportableBug(
                "the spool's repair aborted".into(),
            )),
        })?;
    Ok(forgotten)
}

/// The queue's count and the photo files' disk use, by walking the index (only after a crash:
/// a clean stop leaves the count, see `clean`). On the way it mends what a crash left half done
/// by a spool older than its transactions, or by a damaged disk: a `pending` key whose entry is
/// gone is removed (it would keep the count high and pin the low-water mark for good), one
/// missing is put back; photos no entry names are removed.
///
/// Walking materializes sled's leaves, and sled keeps them: 100,000 small keys took ~16 MiB
/// (heaptrack, BENCHMARKS.md).
pub(super) fn count_by_walking(
    dir: &Path,
    t: &Trees<'_>,
    photos: &photos::Photos,
    on_disk: Vec<(u64, u64)>,
) -> Result<(u64, u64), SpoolError> {
    let err = |source| super::db_err(dir, source);
    let mut keyed = Vec::new();
    for item in t.pending.iter().keys() {
        let key = item.map_err(err)?;
        keyed.push((pending_seq(&key), key));
    }
    keyed.sort_unstable_by_key(|(seq, _)| *seq);
    let mut queued = Vec::with_capacity(keyed.len());
    for item in t.records.iter() {
        let (k, v) = item.map_err(err)?;
        let seq = key_seq(&k);
        queued.push(seq);
        if keyed.binary_search_by_key(&seq, |(s, _)| *s).is_err() {
            if let Some((_, key)) = bodies::Location::decode(&v) {
                tracing::warn!(seq, "a spool entry had lost its index key; put back");
                t.pending.insert(key, &[]).map_err(err)?;
            }
        }
    }
    for (seq, key) in &keyed {
        if queued.binary_search(seq).is_err() {
            tracing::warn!(
                seq,
                "the spool's index named an entry that is gone; key removed"
            );
            t.pending.remove(key).map_err(err)?;
        }
    }
    // Photos whose entry is gone (a delete lost in a crash, or a write that beat its record to
    // the disk) are orphans.
    let mut photo_disk = 0u64;
    for (seq, len) in on_disk {
        if queued.binary_search(&seq).is_ok() {
            photo_disk += photos::allocated(len);
        } else if let Err(e) = photos.remove(seq) {
            tracing::warn!("cannot remove an orphaned spool photo: {e}");
        }
    }
    Ok((queued.len() as u64, photo_disk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// Long before any test ran: a file written again has a newer modification time.
    const LONG_AGO: Duration = Duration::from_secs(1_000_000);

    /// A spool's directory as a failed flush leaves it: sled's files (one in a subdirectory),
    /// a log segment, a photo and the mark; each file dated long ago.
    fn stopped_spool(dir: &Path) {
        for sub in ["blobs", "log", "photos"] {
            std::fs::create_dir(dir.join(sub)).expect("mkdir");
        }
        for file in ["db", "conf", "blobs/1", "log/0000", "photos/1", NOT_DURABLE] {
            let path = dir.join(file);
            std::fs::write(&path, file.as_bytes()).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(SystemTime::UNIX_EPOCH + LONG_AGO)
                .expect("date");
        }
    }

    fn written_again(dir: &Path, file: &str) -> bool {
        let path = dir.join(file);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            file.as_bytes(),
            "{file}"
        );
        let modified = std::fs::metadata(&path).and_then(|m| m.modified());
        modified.expect("mtime") > SystemTime::UNIX_EPOCH + LONG_AGO
    }

    #[test]
    fn after_a_failed_flush_sleds_files_are_written_again_the_log_and_photos_are_not() {
        let d = tempfile::tempdir().expect("tempdir");
        stopped_spool(d.path());
        renew_index_files(d.path()).expect("renew");
        for file in ["db", "conf", "blobs/1"] {
            assert!(written_again(d.path(), file), "{file} written again");
        }
        for file in ["log/0000", "photos/1"] {
            assert!(!written_again(d.path(), file), "{file} left to the open");
        }
        assert!(!d.path().join(NOT_DURABLE).exists(), "the mark is gone");
    }

    #[test]
    fn without_the_mark_nothing_is_written_again() {
        let d = tempfile::tempdir().expect("tempdir");
        stopped_spool(d.path());
        std::fs::remove_file(d.path().join(NOT_DURABLE)).expect("rm");
        renew_index_files(d.path()).expect("renew");
        assert!(!written_again(d.path(), "db"));
    }

    #[test]
    fn while_another_process_holds_sleds_lock_nothing_is_written_and_the_mark_stays() {
        let d = tempfile::tempdir().expect("tempdir");
        stopped_spool(d.path());
        let other = std::fs::File::open(d.path().join("db")).expect("open");
        assert!(try_lock(&other), "the test holds the lock");
        renew_index_files(d.path()).expect("renew");
        assert!(!written_again(d.path(), "db"));
        assert!(d.path().join(NOT_DURABLE).exists(), "the mark stays");
    }
}
