// Over 450 lines: one type, the spool, whose methods share its trees and counters (queue, room,
// quarantine, low-water mark); more than half of it is unit tests.
//! The durable FIFO every record passes through (a log of frames, indexed by sled). The store
//! of record: an entry leaves only when the broker has acknowledged the publish that carried it.
//!
//! Trees:
//! - `records`: seq (u64 BE) → where the entry is in the log ([`bodies`]) and its `pending` key.
//!   One global sequence, so per-terminal order holds. An older bridge stored the [`Entry`]
//!   itself here; such entries are still read, so a spool drains after an upgrade.
//! - the entries themselves (head and record JSON) are frames in an append-only log of segment
//!   files in `log/` ([`bodies`]): written once, a segment unlinked once all of it is
//!   acknowledged.
//! - photos are files in `photos/` ([`photos`]), not in sled: written once, unlinked on PUBACK,
//!   dropped before records when the cap is reached.
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
//! Every method is synchronous and may touch the disk (photo files, sled's pages): call them
//! from a blocking thread, never from an async task. Writes come from one place, the spool
//! writer ([`writer`]), which runs on a thread of its own; other tasks read (the publisher, on a
//! blocking thread; diagnostics and backfill read in-memory counters and small keys) and ask the
//! writer for changes through its channel. The one exception: a damaged photo file found while
//! reading is removed on the spot ([`Spool::photo`]). [`Spool::flush`] is the only thing that makes writes
//! durable (sled otherwise flushes every 500 ms).

mod bodies;
mod clean;
mod entry;
pub mod lowwater;
mod photos;
mod recovery;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::Normalized;

pub use entry::{Encoded, Entry, Incoming, PhotoRef};

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
}

impl SpoolError {
    /// sled's file lock is held: by another process, or for a moment by the background threads
    /// of a spool this process just closed (a reload).
    pub fn is_locked(&self) -> bool {
        matches!(self, SpoolError::Db { source: sled::Error::Io(e), .. } if e.to_string().contains("could not acquire lock"))
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `incoming` more bytes fit beside the `queued` ones: under the size cap (an `empty`
/// queue always takes one, see [`Spool::make_room`]), and leaving [`DISK_RESERVE`] free on the
/// disk (`disk_free` is `None` when that cannot be told).
fn fits(queued: u64, incoming: u64, max_bytes: u64, empty: bool, disk_free: Option<u64>) -> bool {
    (empty || queued.saturating_add(incoming) <= max_bytes)
        && disk_free.is_none_or(|free| free >= incoming.saturating_add(DISK_RESERVE))
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn key_seq(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

fn seen_prefix(terminal: &str, sign_time: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(terminal.len() + 9 + 48);
    k.extend_from_slice(terminal.as_bytes());
    k.push(0);
    k.extend_from_slice(&sign_time.to_be_bytes());
    k
}

fn seen_key(terminal: &str, sign_time: u64, event_id: &str) -> Vec<u8> {
    let mut k = seen_prefix(terminal, sign_time);
    k.extend_from_slice(event_id.as_bytes());
    k
}

fn pending_key(terminal: &str, sign_time: u64, seq: u64) -> Vec<u8> {
    let mut k = seen_prefix(terminal, sign_time);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number at the end of a `pending` key.
fn pending_seq(key: &[u8]) -> u64 {
    key_seq(&key[key.len().saturating_sub(8)..])
}

/// The `pending` key of entry `seq` from its `records` value: carried by a location, or made from
/// the head of an entry an older bridge stored whole (`None` when that is damaged). A location is
/// not parsed as JSON: this runs on every acknowledgement.
fn stored_pending_key(seq: u64, v: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if let Some((_, key)) = bodies::Location::decode(v) {
        return Some(std::borrow::Cow::Borrowed(key));
    }
    let h = entry::head(v).ok()?;
    Some(std::borrow::Cow::Owned(pending_key(
        &h.terminal,
        h.sign_time,
        seq,
    )))
}

/// The terminal and signTime a `pending` key names.
fn pending_parts(key: &[u8]) -> Option<(&[u8], u64)> {
    let end = key.iter().position(|b| *b == 0)?;
    let time = key.get(end + 1..end + 9)?;
    Some((&key[..end], key_seq(time)))
}

fn wm_key(terminal: &str) -> Vec<u8> {
    format!("wm/{terminal}").into_bytes()
}

/// The queue's count and the photo files' disk use, by walking the `pending` index; photos no
/// queued entry names are removed on the way. Walking `pending` materializes its leaves, and sled
/// keeps them: 100,000 small keys took ~16 MiB (heaptrack, BENCHMARKS.md). Only after a crash,
/// then (see [`clean`]).
fn count_by_walking(
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

/// `meta` key: the sequence number the log was synced up to (every entry below it has its body
/// on disk), written by each flush before sled's own.
const LOG_SYNCED: &[u8] = b"log/synced";

/// No sequence number gets near this (at 10,000 records/s, in millions of years): a mark above
/// it is damage.
const MAX_SEQ: u64 = 1 << 62;

/// An entry as stored, or why it cannot be read.
type Stored<'v> = Result<std::borrow::Cow<'v, [u8]>, String>;

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

    fn open_or_move_aside(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
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

    fn open_once(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
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

    fn err(&self, source: sled::Error) -> SpoolError {
        SpoolError::Db {
            dir: self.dir.clone(),
            source,
        }
    }

    fn log_err(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Log {
            dir: self.dir.join("log"),
            source,
        }
    }

    /// The stored entry of `records` value `v`: read from the log, or the value itself when an
    /// older bridge stored it whole. `Some(Err(why))` when its body in the log is damaged; `None`
    /// when it was acknowledged while being read (the writer may have unlinked its segment).
    fn stored<'v>(&self, seq: u64, v: &'v [u8]) -> Result<Option<Stored<'v>>, SpoolError> {
        let Some((at, _)) = bodies::Location::decode(v) else {
            return Ok(Some(Ok(std::borrow::Cow::Borrowed(v))));
        };
        match self.bodies.read(seq, at).map_err(|e| self.log_err(e))? {
            Ok(body) => Ok(Some(Ok(std::borrow::Cow::Owned(body)))),
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

    fn photo_err(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Photos {
            dir: self.dir.join("photos"),
            source,
        }
    }

    /// Queues a record unless it was seen before. Not durable until [`Spool::flush`] returns.
    /// With `advance_watermark`, the terminal's watermark moves up to its signTime (written after
    /// the record, so a crash can never keep the watermark and lose the record).
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
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        // The photo first: a record on disk whose photo is not is caught by its PhotoRef.
        if let Some(p) = rec.photo {
            self.photos.put(seq, p).map_err(|e| self.photo_err(e))?;
        }
        // The body before its index: an index entry whose body is missing is a loss.
        let at = match self.bodies.append(seq, &rec.value) {
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
        self.records
            .insert(seq_key(seq), index)
            .map_err(|e| self.err(e))?;
        self.pending.insert(pending, &[]).map_err(|e| self.err(e))?;
        self.seen.insert(seen, &[]).map_err(|e| self.err(e))?;
        if advance_watermark {
            self.advance_watermark(rec.terminal, rec.sign_time)?;
        }
        self.unflushed.fetch_add(indexed, Ordering::SeqCst);
        if let Some(p) = rec.photo {
            self.photo_disk
                .fetch_add(photos::allocated(p.len() as u64), Ordering::SeqCst);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(Appended::Stored(seq))
    }

    /// Moves the terminal's watermark up (never down), and never past this machine's now plus
    /// the allowed skew: a record dated 2040 by a clock that jumped is published, but must not
    /// make every later backfill window end before it starts.
    pub fn advance_watermark(&self, terminal: &str, sign_time: u64) -> Result<(), SpoolError> {
        let limit = crate::clocks::watermark_limit(now_ms() / 1000);
        if sign_time > limit {
            return Ok(());
        }
        let key = wm_key(terminal);
        self.meta
            .fetch_and_update(&key, |old| {
                // One stored past the limit (before this rule, or while this machine's clock
                // was wrong) gives way to the first date that is not.
                let old = old.map(key_seq).filter(|&o| o <= limit).unwrap_or(0);
                Some(old.max(sign_time).to_be_bytes().to_vec())
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The last signTime known to be spooled or published for this terminal.
    pub fn watermark(&self, terminal: &str) -> Result<Option<u64>, SpoolError> {
        Ok(self
            .meta
            .get(wm_key(terminal))
            .map_err(|e| self.err(e))?
            .map(|v| key_seq(&v)))
    }

    /// Makes every earlier write durable (fsync): the batch's photos and log frames on a thread
    /// of their own, sled beside them (two fsyncs one after the other cost half a millisecond
    /// more per batch, measured). Group commit: call once per batch. Blocks.
    pub fn flush(&self) -> Result<(), SpoolError> {
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
        let (files, index) = std::thread::scope(|scope| {
            let files = scope.spawn(|| {
                self.photos.sync().map_err(|e| self.photo_err(e))?;
                self.bodies.sync().map_err(|e| self.log_err(e))
            });
            let index = self.db.flush().map_err(|e| self.err(e));
            let files = files.join().unwrap_or_else(|_| {
                Err(self.log_err(std::io::Error::other("the log's sync thread panicked")))
            });
            (files, index)
        });
        files?;
        index?;
        self.log_synced.fetch_max(upto, Ordering::SeqCst);
        self.measure_sled()?;
        let _ = self
            .unflushed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(flushed))
            });
        Ok(())
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

    /// Moves an entry that can never be published into the `quarantine` tree (with the reason),
    /// out of the queue. Its photo goes.
    pub fn quarantine(&self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let Some(v) = self.records.get(seq_key(seq)).map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let mut kept = reason.as_bytes().to_vec();
        kept.push(0);
        // The entry as stored, for a person to look at; what is left of it when it is damaged.
        match self.stored(seq, &v)? {
            None => return Ok(()),
            Some(Ok(body)) => kept.extend_from_slice(&body),
            Some(Err(why)) => {
                kept.extend_from_slice(format!("(unreadable: {why}) ").as_bytes());
                kept.extend_from_slice(&v);
            }
        }
        self.quarantine
            .insert(seq_key(seq), kept)
            .map_err(|e| self.err(e))?;
        self.quarantined.fetch_add(1, Ordering::SeqCst);
        self.ack(seq)
    }

    /// Entries in the quarantine tree.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::SeqCst)
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

    /// The broker acknowledged the entry: it leaves the spool. No flush needed: a delete lost in a
    /// crash is a duplicate publish, never a loss.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        if let Some(v) = self.records.remove(seq_key(seq)).map_err(|e| self.err(e))? {
            // The count is of `pending` keys (that is what `open` counts): an entry whose key a
            // crash lost leaves without taking the count below zero.
            if bodies::Location::decode(&v).is_some() {
                self.bodies.release(seq);
                self.remove_dead_segments()?;
            }
            let key = match stored_pending_key(seq, &v) {
                Some(key) => Some(sled::IVec::from(&*key)),
                // A damaged entry (rare: it is quarantined) names no key; look for it.
                None => self.pending_key_of(seq)?,
            };
            if let Some(key) = key {
                if self.pending.remove(key).map_err(|e| self.err(e))?.is_some() {
                    let _ = self
                        .count
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                            Some(c.saturating_sub(1))
                        });
                }
            }
        }
        self.remove_photo(seq)?;
        Ok(())
    }

    /// Unlinks the log's segments that hold no queued entry any more (one seek in the index each:
    /// FIFO order makes it find the segment's next entry at once while it has one).
    fn remove_dead_segments(&self) -> Result<(), SpoolError> {
        for (first, end) in self.bodies.take_dead() {
            let used = self
                .records
                .range(seq_key(first)..seq_key(end))
                .next()
                .is_some();
            if !used {
                self.bodies.remove(first).map_err(|e| self.log_err(e))?;
            }
        }
        Ok(())
    }

    /// The `pending` key of entry `seq`, found by a walk over the keys.
    fn pending_key_of(&self, seq: u64) -> Result<Option<sled::IVec>, SpoolError> {
        for k in self.pending.iter().keys() {
            let k = k.map_err(|e| self.err(e))?;
            if pending_seq(&k) == seq {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Drops an entry that can never be published (unreadable); counted like a trimmed record.
    pub fn discard(&self, seq: u64) -> Result<(), SpoolError> {
        self.ack(seq)
    }

    /// Removes the entry's photo file, if any; whether there was one.
    fn remove_photo(&self, seq: u64) -> Result<bool, SpoolError> {
        let len = self.photos.remove(seq).map_err(|e| self.photo_err(e))?;
        let freed = photos::allocated(len);
        let _ = self
            .photo_disk
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(freed))
            });
        Ok(len > 0)
    }

    /// Reads sled's size on disk again (deletions shrink it only as sled frees and truncates
    /// its segments, which it does on its own schedule).
    fn measure_sled(&self) -> Result<(), SpoolError> {
        let size = self.db.size_on_disk().map_err(|e| self.err(e))?;
        self.sled_disk.store(size, Ordering::SeqCst);
        Ok(())
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

    /// How long the oldest queued record has waited.
    pub fn oldest_age(&self) -> Result<Option<Duration>, SpoolError> {
        let at = self.oldest_ms.load(Ordering::Relaxed);
        Ok((at != 0 && !self.is_empty())
            .then(|| Duration::from_millis(now_ms().saturating_sub(at))))
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
            t.photos += self.shed_photo(seq)?;
        }
        t.room = fits_now(self);
        Ok(t)
    }

    /// Bytes free for us on the spool's file system (`None` when it cannot be told).
    pub fn disk_free(&self) -> Option<u64> {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: statvfs writes into the zeroed struct we own and reads the NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            return None;
        }
        // u32 on 32-bit targets, u64 here.
        #[allow(clippy::useless_conversion)]
        let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
        blocks.checked_mul(size)
    }

    /// Removes photos of the oldest records until `count` are gone (the disk is full: a record
    /// without its photo beats a record not taken). Returns how many went.
    pub fn shed_photos(&self, count: u64) -> Result<u64, SpoolError> {
        let mut shed = 0;
        for (seq, _) in self.photos.list().map_err(|e| self.photo_err(e))? {
            if shed >= count {
                break;
            }
            shed += self.shed_photo(seq)?;
        }
        Ok(shed)
    }

    fn shed_photo(&self, seq: u64) -> Result<u64, SpoolError> {
        Ok(u64::from(self.remove_photo(seq)?))
    }

    /// Per terminal, the oldest record not yet acknowledged, or the watermark when none waits.
    pub fn low_water(&self) -> Result<lowwater::Marks, SpoolError> {
        let mut marks = lowwater::Marks::new();
        for item in self.meta.scan_prefix(b"wm/") {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let terminal = String::from_utf8_lossy(&k[3..]).into_owned();
            marks.insert(terminal, key_seq(&v));
        }
        // One seek per terminal: its first pending key is its oldest.
        let mut from: Vec<u8> = Vec::new();
        while let Some(item) = self.pending.range(from.clone()..).next() {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let Some(end) = k.iter().position(|b| *b == 0) else {
                break;
            };
            let terminal = String::from_utf8_lossy(&k[..end]).into_owned();
            let oldest = key_seq(&k[end + 1..]);
            marks.insert(terminal, oldest);
            from = k[..end].to_vec();
            from.push(1);
        }
        Ok(marks)
    }

    /// Writes the low-water file (outside sled) when the marks changed since `last`.
    pub fn save_low_water(&self, last: &mut lowwater::Marks) -> Result<(), SpoolError> {
        let marks = self.low_water()?;
        if &marks != last {
            lowwater::write(&self.dir, &marks).map_err(|e| SpoolError::Photos {
                dir: lowwater::path(&self.dir),
                source: e,
            })?;
            *last = marks;
        }
        Ok(())
    }

    /// Lowers each terminal's watermark to the mark written when the bridge last ran, where the
    /// spool now starts later (it lost records, or is new after being moved aside).
    fn look_back_to(&self, marks: &lowwater::Marks) -> Result<(), SpoolError> {
        let now = self.low_water()?;
        for (terminal, &mark) in marks {
            if now.get(terminal).is_some_and(|&n| n <= mark) {
                continue;
            }
            tracing::warn!(
                terminal = %terminal, since = mark,
                "the spool holds less than when the bridge last ran (damaged, or acknowledged just before a crash): backfill looks back to the oldest record then unacknowledged"
            );
            self.meta
                .insert(wm_key(terminal), &mark.to_be_bytes())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Forgets dedupe keys of records older than `before` (signTime): backfill never looks back
    /// that far again.
    pub fn prune_seen(&self, terminal: &str, before: u64) -> Result<u64, SpoolError> {
        let mut n = 0;
        for item in self
            .seen
            .range(seen_prefix(terminal, 0)..seen_prefix(terminal, before))
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            self.seen.remove(k).map_err(|e| self.err(e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn rec(id: &str, t: u64) -> Normalized {
        Normalized {
            event_id: id.into(),
            sign_time: t,
            json: json!({"event_id": id}),
            photo: None,
            photo_problem: None,
        }
    }

    /// Opens the spool in `dir`, also again after a `Spool` on it was dropped. sled lets go of
    /// its file lock when its background threads drop their handles, which can be a moment after
    /// the `Spool` is dropped: a reopen waits for that (up to a deadline) instead of failing.
    pub(super) fn open(dir: &Path) -> Spool {
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
        let with_photo = s.bytes();
        s.ack(seq).expect("ack");
        assert_eq!(s.len(), 0);
        assert_eq!(s.bytes(), with_photo - 4096, "the photo's block is free");
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
    fn a_record_dated_past_now_and_the_skew_does_not_move_the_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), 1 << 30).expect("open");
        let now = now_ms() / 1000;
        s.append("t", &rec("a", now - 10), None, true)
            .expect("append");
        s.append("t", &rec("b", 2_208_988_800), None, true)
            .expect("a record from 2040 is still spooled");
        assert_eq!(s.watermark("t").expect("wm"), Some(now - 10));
        s.advance_watermark("t", now + 200).expect("advance");
        assert_eq!(
            s.watermark("t").expect("wm"),
            Some(now + 200),
            "within the skew it moves"
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_watermark_stored_in_the_future_gives_way_to_the_next_sane_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), 1 << 30).expect("open");
        s.meta
            .insert(wm_key("t"), &2_208_988_800u64.to_be_bytes())
            .expect("plant");
        let now = now_ms() / 1000;
        s.advance_watermark("t", now - 5).expect("advance");
        assert_eq!(s.watermark("t").expect("wm"), Some(now - 5));
    }

    #[test]
    fn the_watermark_only_moves_forward_and_only_when_asked() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("t", &rec("a", 200), None, true).expect("append");
        s.append("t", &rec("b", 100), None, true).expect("append");
        assert_eq!(s.watermark("t").expect("wm"), Some(200));
        s.append("t", &rec("c", 300), None, false).expect("append");
        assert_eq!(s.watermark("t").expect("wm"), Some(200));
        assert_eq!(s.watermark("other").expect("wm"), None);
    }

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

    #[test]
    fn pruning_forgets_only_old_dedupe_keys_of_that_terminal() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("a", &rec("a-old", 100), None, true)
            .expect("append");
        s.append("a", &rec("a-new", 500), None, true)
            .expect("append");
        s.append("b", &rec("b-old", 100), None, true)
            .expect("append");
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 1);
        assert!(matches!(
            s.append("a", &rec("a-old", 100), None, true),
            Ok(Appended::Stored(_))
        ));
        assert_eq!(
            s.append("a", &rec("a-new", 500), None, true)
                .expect("append"),
            Appended::Duplicate
        );
        assert_eq!(
            s.append("b", &rec("b-old", 100), None, true)
                .expect("append"),
            Appended::Duplicate
        );
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

    pub(super) fn stored(a: Appended) -> u64 {
        match a {
            Appended::Stored(seq) => seq,
            Appended::Duplicate => panic!("expected a new entry"),
        }
    }

    fn marks(pairs: &[(&str, u64)]) -> lowwater::Marks {
        pairs.iter().map(|(t, m)| (t.to_string(), *m)).collect()
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
    fn an_entry_records_when_it_entered_the_spool_and_the_oldest_tells_its_age() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert_eq!(s.oldest_age().expect("age"), None);
        let before = now_ms();
        let seq = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        let after = now_ms();
        let (_, entry) = s.next_after(None, 1).expect("read")[0].clone();
        assert!(
            before <= entry.spooled_ms && entry.spooled_ms <= after,
            "{before} <= {} <= {after}",
            entry.spooled_ms
        );
        // The same entry, spooled a minute ago.
        let r = rec("t-1", 1);
        let i = Incoming::of(&r, None);
        let older = Encoded::new("t", &i, entry.spooled_ms - 60_000);
        s.records
            .insert(seq_key(seq), older.value.as_slice())
            .expect("rewrite");
        assert_eq!(
            s.oldest_age().expect("age"),
            None,
            "read from memory: nothing noted yet"
        );
        s.note_oldest().expect("note");
        let age = s.oldest_age().expect("age").expect("an entry waits");
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
        assert!(s.oldest_age().expect("age").is_some());
        s.ack(seq).expect("ack");
        assert_eq!(s.oldest_age().expect("age"), None);
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
    fn the_low_water_mark_is_the_oldest_unacknowledged_record_or_else_the_watermark() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert_eq!(s.low_water().expect("marks"), marks(&[]));
        s.append("a", &rec("a-1", 300), None, true).expect("append");
        s.append("a", &rec("a-2", 100), None, true).expect("append");
        let b1 = stored(s.append("b", &rec("b-1", 500), None, true).expect("append"));
        let b2 = stored(s.append("b", &rec("b-2", 400), None, true).expect("append"));
        s.append("c", &rec("c-1", 50), None, false).expect("append");
        assert_eq!(
            s.low_water().expect("marks"),
            marks(&[("a", 100), ("b", 400), ("c", 50)])
        );
        s.ack(b2).expect("ack");
        assert_eq!(s.low_water().expect("marks")["b"], 500);
        s.ack(b1).expect("ack");
        assert_eq!(
            s.low_water().expect("marks")["b"],
            500,
            "none waits: the watermark"
        );
    }

    #[test]
    fn the_low_water_file_is_written_when_the_marks_change() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("a", &rec("a-1", 100), None, true).expect("append");
        let mut last = lowwater::Marks::new();
        s.save_low_water(&mut last).expect("save");
        assert_eq!(last, marks(&[("a", 100)]));
        assert_eq!(lowwater::read(d.path()), marks(&[("a", 100)]));
        std::fs::remove_file(lowwater::path(d.path())).expect("remove");
        s.save_low_water(&mut last).expect("save");
        assert_eq!(
            lowwater::read(d.path()),
            marks(&[]),
            "unchanged: not written again"
        );
    }

    #[test]
    fn a_spool_that_lost_records_makes_backfill_look_back_to_the_last_low_water_mark() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            let old = stored(s.append("a", &rec("a-1", 100), None, true).expect("append"));
            s.append("a", &rec("a-2", 300), None, true).expect("append");
            s.save_low_water(&mut lowwater::Marks::new()).expect("save");
            // Acknowledged (or lost) after the marks were written.
            s.ack(old).expect("ack");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.watermark("a").expect("wm"), Some(100));

        let fresh = tempfile::tempdir().expect("tempdir");
        lowwater::write(fresh.path(), &marks(&[("b", 40)])).expect("marks");
        let s = open(fresh.path());
        assert_eq!(
            s.watermark("b").expect("wm"),
            Some(40),
            "an empty spool looks back too"
        );
    }

    #[test]
    fn a_spool_that_still_holds_the_low_water_record_keeps_its_watermark() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            s.append("a", &rec("a-1", 100), None, true).expect("append");
            s.append("a", &rec("a-2", 300), None, true).expect("append");
            s.save_low_water(&mut lowwater::Marks::new()).expect("save");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.watermark("a").expect("wm"), Some(300));
    }

    #[test]
    fn a_quarantined_entry_leaves_the_queue_with_its_reason_and_is_counted_across_a_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let first;
        {
            let s = open(d.path());
            assert_eq!(s.quarantined(), 0);
            first = stored(
                s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
                    .expect("append"),
            );
            let second = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
            s.quarantine(first, "undecodable").expect("quarantine");
            assert_eq!((s.len(), s.quarantined()), (1, 1));
            let left = queued(&s);
            assert_eq!(left, [second]);
            let kept = s
                .quarantine
                .get(seq_key(first))
                .expect("get")
                .expect("kept");
            assert!(kept.starts_with(b"undecodable\0{"), "{kept:?}");
            s.quarantine(second, "too large").expect("quarantine");
            assert_eq!((s.len(), s.quarantined()), (0, 2));
            s.quarantine(999, "gone").expect("nothing to quarantine");
            assert_eq!(s.quarantined(), 2);
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.quarantined(), 2);
        assert!(s.is_empty());
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 0, "the photo went too");
    }

    #[test]
    fn an_index_key_gives_back_its_sequence_number_and_a_short_damaged_one_does_not_panic() {
        assert_eq!(pending_seq(&pending_key("door", 1_700_000_000, 42)), 42);
        assert_eq!(pending_seq(&pending_key("", 0, u64::MAX)), u64::MAX);
        assert_eq!(pending_seq(b""), 0);
        assert_eq!(pending_seq(&[1]), 1 << 56);
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
        assert_eq!(s.len(), 1, "the count is of index keys");
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

    /// Sequence numbers of the queued entries, oldest first.
    fn queued(s: &Spool) -> Vec<u64> {
        s.next_after(None, 1000)
            .expect("read")
            .into_iter()
            .map(|(q, _)| q)
            .collect()
    }

    /// Files in the spool's log.
    fn segments(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("log")).expect("log").count()
    }

    /// What an older bridge left: entry 1 (terminal `t`, signTime 7) stored whole in `records`,
    /// with no log, and its `pending` key.
    fn spooled_by_an_older_bridge(dir: &Path, value: &[u8]) {
        let db = sled::open(dir).expect("sled");
        db.open_tree("records")
            .expect("tree")
            .insert(seq_key(1), value)
            .expect("insert");
        db.open_tree("pending")
            .expect("tree")
            .insert(pending_key("t", 7, 1), &[])
            .expect("insert");
        db.flush().expect("flush");
    }

    #[test]
    fn an_entry_stored_whole_by_an_older_bridge_is_read_and_leaves_after_an_upgrade() {
        let d = tempfile::tempdir().expect("tempdir");
        let incoming = Incoming::of(&rec("t-1", 7), None);
        spooled_by_an_older_bridge(d.path(), &Encoded::new("t", &incoming, 1).value);
        let s = open(d.path());
        assert_eq!(s.len(), 1);
        let new = stored(s.append("t", &rec("t-2", 8), None, true).expect("append"));
        assert_eq!(new, 2, "numbered after the old entries");
        let ids: Vec<String> = s
            .next_after(None, 10)
            .expect("read")
            .into_iter()
            .map(|(_, e)| e.event_id)
            .collect();
        assert_eq!(ids, ["t-1", "t-2"]);
        s.ack(1).expect("ack");
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.low_water().expect("marks")["t"],
            8,
            "its index key left too"
        );
        s.ack(new).expect("ack");
        assert!(s.is_empty());
    }

    #[test]
    fn a_photo_spooled_by_an_older_bridge_is_checked_by_its_fnv_hash_after_an_upgrade() {
        let d = tempfile::tempdir().expect("tempdir");
        let photo = b"\xff\xd8 a photo spooled before the crc \xff\xd9".to_vec();
        let head = format!(
            "{{\"terminal\":\"t\",\"event_id\":\"t-1\",\"sign_time\":7,\"spooled_ms\":1,\"photo\":{{\"len\":{},\"hash\":{}}}}}\n{{}}",
            photo.len(),
            crate::record::stable_hash(&photo)
        );
        spooled_by_an_older_bridge(d.path(), head.as_bytes());
        let dir = d.path().join("photos");
        std::fs::create_dir_all(&dir).expect("photos");
        std::fs::write(dir.join(format!("{:020}.jpg", 1)), &photo).expect("photo");
        let s = open(d.path());
        let (seq, entry) = s.next_after(None, 1).expect("read").remove(0);
        assert_eq!(entry.photo.and_then(|p| p.crc32), None);
        assert_eq!(s.photo(seq, &entry).expect("photo"), Some(photo.clone()));
        let mut torn = photo;
        torn[3] ^= 1;
        std::fs::write(
            d.path().join("photos").join(format!("{:020}.jpg", 1)),
            &torn,
        )
        .expect("photo");
        assert_eq!(s.photo(seq, &entry).expect("photo"), None, "damaged");
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
        // The frame: a 20-byte header (seq, length, hash) and the entry.
        assert_eq!(s.bodies.bytes(), 20 + value);
        // The index: location (13) and pending key (18), the pending key, the dedupe key (13).
        assert_eq!(s.unflushed.load(Ordering::SeqCst), 13 + 18 + 18 + 13);
        assert_eq!(s.bytes(), before + 20 + value + 62);
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
    fn the_log_gives_back_its_space_as_entries_leave_and_keeps_what_is_queued() {
        let d = tempfile::tempdir().expect("tempdir");
        // 1 MiB cap: 64 KiB segments.
        let s = Spool::open(d.path(), 1 << 20).expect("opens");
        let big = |i: u64| Normalized {
            json: json!({"event_id": format!("t-{i}"), "pad": "x".repeat(8000)}),
            ..rec(&format!("t-{i}"), i)
        };
        let seqs: Vec<u64> = (0..40)
            .map(|i| stored(s.append("t", &big(i), None, true).expect("append")))
            .collect();
        s.flush().expect("flush");
        let full = (segments(d.path()), s.bytes());
        assert!(full.0 >= 4, "{full:?}");
        for q in &seqs[..30] {
            s.ack(*q).expect("ack");
        }
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
        assert_eq!(segments(d.path()), 0, "no segment outlives its entries");
        assert_eq!(s.bodies.bytes(), 0);
    }

    #[test]
    fn an_entry_acknowledged_while_a_batch_reads_it_is_skipped_not_taken_for_damage() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(d.path(), 1 << 20).expect("opens");
        let big = Normalized {
            json: json!({"pad": "x".repeat(70_000)}),
            ..rec("t-1", 1)
        };
        let a = stored(s.append("t", &big, None, true).expect("append"));
        s.append("t", &rec("t-2", 2), None, true).expect("append");
        // The batch has read `a`'s index entry; then its PUBACK arrives and its segment goes.
        let index = s.records.get(seq_key(a)).expect("get").expect("indexed");
        s.ack(a).expect("ack");
        assert_eq!(segments(d.path()), 1, "a's segment is gone");
        assert!(s.stored(a, &index).expect("read").is_none());
        // Still in the queue, the same failure is damage.
        s.records
            .insert(seq_key(a), index.clone())
            .expect("put back");
        assert!(matches!(s.stored(a, &index).expect("read"), Some(Err(_))));
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
        s.discard(seq).expect("discard");
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
        let after_a = s.bytes();
        s.append("t", &rec("t-2", 2), Some(&[0xFF; 900]), true)
            .expect("append");
        let after_b = s.bytes();
        assert!(after_a > 4096, "{after_a}");
        s.ack(a).expect("ack");
        // Its entry's bytes in sled come back only as sled reuses or truncates its log.
        assert_eq!(s.bytes(), after_b - 4096);
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
    fn the_spool_s_disk_has_more_than_the_reserve_free() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let free = s
            .disk_free()
            .expect("statvfs answers for the spool's directory");
        assert!(free > DISK_RESERVE, "{free}");
    }

    #[test]
    fn pruning_counts_every_dedupe_key_it_forgets() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        for (id, t) in [("a-1", 100), ("a-2", 200), ("a-3", 300)] {
            s.append("a", &rec(id, t), None, true).expect("append");
        }
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 2);
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 0);
    }

    #[test]
    fn a_flush_syncs_the_photos_written_since_the_last_one() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
            .expect("append");
        s.append("t", &rec("t-2", 2), Some(&[0xFF, 0xD8, 3, 4]), true)
            .expect("append");
        assert_eq!(s.photos.unsynced(), 2);
        s.flush().expect("flush");
        assert_eq!(s.photos.unsynced(), 0);
    }
}
