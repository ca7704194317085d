//! The durable FIFO every record passes through (a log of frames, indexed by sled). The store
//! of record: an entry leaves only when the broker has acknowledged the publish that carried it.
//!
//! Trees:
//! One format ([`keys::FORMAT`], named in `meta`); a spool in another is refused, never guessed at.
//!
//! - `records`: seq (u64 BE) → where the entry is in the log ([`bodies`]), whether it has a
//!   photo, and its `pending` key. One global sequence, so per-terminal order holds.
//! - the entries themselves (head and record JSON) are frames in an append-only log of segment
//!   files in `log/` ([`bodies`]): written once, a segment unlinked once all of it is
//!   acknowledged and that is durable.
//! - photos are files in `photos/` ([`photos`]), not in sled: written once, unlinked once their
//!   entry's acknowledgement is durable, dropped before records when the cap is reached.
//! - `seen`: `<terminal> 0x00 <signTime BE> <event_id>` → empty. Dedupes live vs backfill, kept
//!   for the backfill window, pruned by time with a range scan.
//! - `meta`: `wm/<terminal>` → signTime BE, the backfill watermark.
//!   Also how far the log is synced (`log/synced`) and, between a clean stop and the next
//!   open, the queue's count ([`clean`]).
//! - `pending`: `<terminal> 0x00 <signTime BE> <seq BE>` → empty, one per queued entry: the oldest
//!   record not yet acknowledged per terminal, for the low-water mark ([`lowwater`]), which is
//!   also kept in a file outside sled so that a damaged spool can be refilled by backfill.
//! - `quarantine`: seq → reason, 0x00, entry: entries that can never be published.
//!
//! One type, [`Spool`], whose methods share its trees and counters, in a file per concern:
//! [`open`] (opening, and repairing what a crash left), [`queue`] (records in, batches out,
//! acknowledgements, durability), [`room`] (the size cap and the disk's reserve), [`marks`]
//! (watermarks, the low-water mark, dedupe keys), [`quarantine`]; the key layout is [`keys`].
//!
//! Every method is synchronous and may touch the disk (photo files, sled's pages): call them
//! from a blocking thread, never from an async task. Writes come from one place, the spool
//! writer ([`writer`]), which runs on a thread of its own; other tasks read (the publisher, on a
//! blocking thread; diagnostics and backfill read in-memory counters and small keys) and ask the
//! writer for changes through its channel. The one exception: a damaged photo file found while
//! reading is removed on the spot ([`Spool::photo`]).
//!
//! What a power cut may leave, and why nothing is lost (tests/powercut.rs cuts the power on a
//! model of an SD card; tests/failing_card.rs makes it fail):
//! - [`Spool::flush`] is the only thing that makes writes durable (photos, frames, then sled's
//!   index and an fdatasync of sled's log, which sled itself only `sync_file_range`s). An entry is
//!   published only once a flush covered it. A flush that fails stops the spool: a failed fsync
//!   is never retried (Linux would report the next one a success), the bridge starts again and
//!   [`recovery`] writes again what came after the last good flush.
//! - Each entry's keys are written in order (records, pending, seen, the watermark), each once
//!   the ones before it are: sled replays its log in order, so a crash keeps a prefix, never a
//!   `seen` key without its entry, and the open mends the rest. sled may keep an entry whose frame the card lost: the open
//!   forgets it and lowers the watermark below it, so backfill fetches it again.
//! - Files an acknowledgement frees (segments, photos) are unlinked only after the flush that
//!   makes the acknowledgement durable: never an index naming a frame that is gone.

mod bodies;
mod clean;
mod entry;
mod keys;
pub mod lowwater;
mod marks;
mod open;
mod photos;
mod quarantine;
mod queue;
mod recovery;
mod room;
mod status;
#[cfg(test)]
mod testing;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pipeline::record::Normalized;

pub use entry::{Encoded, Entry, Incoming, PhotoRef};
use keys::*;
pub use quarantine::Quarantined;
pub use room::{check_capacity, check_place, file_system};
pub use status::Status;

/// Free disk space the spool leaves alone: sled's errors are sticky until it is opened again,
/// so it must never be the one to find the disk full. Photos and held records give way first.
pub const DISK_RESERVE: u64 = 4 * 1024 * 1024;

/// sled's default page cache is 1 GiB and ignores cgroup limits. sled holds only small index keys
/// (the entries are in the log), and counts its cache in serialized bytes while a leaf of many
/// small keys takes several times that in memory: measured side by side (BENCHMARKS.md), 4 MiB
/// cost 12 MiB more resident than 1 MiB while a backlog was spooled, and 1 MiB drained as fast.
const CACHE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {source}")]
    Db { dir: PathBuf, source: sled::Error },
    #[error("spool: corrupt entry {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("spool photos in {dir}: {source}")]
    Photos {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("spool log in {dir}: {source}")]
    Log {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// An fsync failed: what was written since the last good flush may not be on the disk, and
    /// no later fsync can tell (see `Bodies::sync`). The spool takes nothing more; opened again
    /// (a new process), it starts from the last good mark.
    #[error("the spool's disk did not take what was written to it ({what}: {source}); records since the last good flush may not be on it")]
    NotDurable {
        what: &'static str,
        source: std::io::Error,
    },
    /// A flush failed earlier: see [`SpoolError::NotDurable`].
    #[error(
        "the spool stopped after its disk failed to make records durable; it must be opened again"
    )]
    Stopped,
    #[error("spool {dir}: {why}")]
    Format { dir: PathBuf, why: String },
    #[error("spool {dir}: its file system holds {total} bytes in all; the spool leaves {reserve} of them free and needs at least {least} more to take a record: put spool.dir on a larger one", reserve = DISK_RESERVE, least = room::LEAST_ROOM)]
    TooSmall { dir: PathBuf, total: u64 },
    #[error("spool.dir {dir}: {why}")]
    Unusable { dir: PathBuf, why: String },
}

impl SpoolError {
    /// sled's file lock is held: by another process, or for a moment by the background threads
    /// of a spool this process just closed (a reload).
    pub fn is_locked(&self) -> bool {
        matches!(self, SpoolError::Db { source: sled::Error::Io(e), .. } if e.to_string().contains("could not acquire lock"))
    }

    /// The spool can never be opened as it is, whatever a restart does: a format this bridge
    /// does not read, or a file system too small to take a record. Not worth a restart loop.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SpoolError::Format { .. } | SpoolError::TooSmall { .. } | SpoolError::Unusable { .. }
        )
    }

    /// The disk (or the file system's quota) is full: room may come back as entries leave.
    pub fn is_full(&self) -> bool {
        let io = match self {
            SpoolError::Photos { source, .. } | SpoolError::Log { source, .. } => Some(source),
            SpoolError::Db {
                source: sled::Error::Io(e),
                ..
            } => Some(e),
            _ => None,
        };
        // ENOSPC (28) and EDQUOT (122) on Linux.
        io.is_some_and(|e| {
            e.kind() == std::io::ErrorKind::StorageFull
                || matches!(e.raw_os_error(), Some(28) | Some(122))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(u64),
    /// Already seen (live and backfill overlap, or a repeat after a crash).
    Duplicate,
}

/// Entries read for publishing.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<(u64, Entry)>,
    /// Sequence numbers of entries that cannot be decoded, and why.
    pub undecodable: Vec<(u64, String)>,
}

/// What making room did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Photos of the oldest records removed.
    pub photos: u64,
    /// Whether the record fits now.
    pub room: bool,
}

pub struct Spool {
    dir: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    bodies: bodies::Bodies,
    photos: Arc<photos::Photos>,
    seen: sled::Tree,
    meta: sled::Tree,
    pending: sled::Tree,
    /// Entries that can never be published as they are (undecodable), kept for a person.
    quarantine: sled::Tree,
    next_seq: AtomicU64,
    /// What the spool takes on disk, kept in memory (`spool.max_size` is checked per record):
    /// sled's files as last measured, entries written since the last flush (sled's files grow
    /// only as it writes them out), and the photo files' blocks.
    sled_disk: AtomicU64,
    unflushed: AtomicU64,
    photo_disk: AtomicU64,
    count: AtomicU64,
    /// Every entry below it has its frame synced to disk.
    log_synced: AtomicU64,
    quarantined: AtomicU64,
    /// When the oldest queued entry was spooled (Unix ms; 0: none), as last read by
    /// [`Spool::note_oldest`]: the LED and diagnostics read it from async code, where a sled
    /// read, a log read and a JSON decode must not run.
    oldest_ms: AtomicU64,
    max_bytes: u64,
    /// sled's log file, to fsync after sled's flush: sled writes it with `sync_file_range`,
    /// which neither commits the file's metadata nor flushes the card's cache.
    sled_file: std::fs::File,
    /// Photos of acknowledged entries, to unlink once the acknowledgement is durable (else a
    /// power cut brings the entry back without its photo).
    doomed_photos: std::sync::Mutex<Vec<u64>>,
    /// Set by a failed flush: nothing is taken or flushed any more (see [`SpoolError::NotDurable`]).
    stopped: std::sync::atomic::AtomicBool,
    /// Set by the writer while the spool fails to take records (for diagnostics and the LED).
    failing: std::sync::atomic::AtomicBool,
}

/// Takes `n` off a counter, stopping at zero.
fn sub_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
        Some(c.saturating_sub(n))
    });
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An error of the spool in `dir`'s index (sled).
fn db_err(dir: &Path, source: sled::Error) -> SpoolError {
    SpoolError::Db {
        dir: dir.into(),
        source,
    }
}

/// An error of the spool in `dir`'s log (`<dir>/log`).
fn log_err(dir: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Log {
        dir: dir.join("log"),
        source,
    }
}

/// An error of the spool in `dir`'s photos (`<dir>/photos`).
fn photo_err(dir: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Photos {
        dir: dir.join("photos"),
        source,
    }
}

impl Spool {
    fn err(&self, source: sled::Error) -> SpoolError {
        db_err(&self.dir, source)
    }

    fn log_err(&self, source: std::io::Error) -> SpoolError {
        log_err(&self.dir, source)
    }

    fn photo_err(&self, source: std::io::Error) -> SpoolError {
        photo_err(&self.dir, source)
    }

    pub fn len(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the spool takes on disk (what `spool.max_size` limits): sled's files, the log and the photos.
    pub fn bytes(&self) -> u64 {
        self.sled_disk
            .load(Ordering::SeqCst)
            .saturating_add(self.unflushed.load(Ordering::SeqCst))
            .saturating_add(self.photo_disk.load(Ordering::SeqCst))
            .saturating_add(self.bodies.bytes())
    }
}
