//! The spool writer: the one path by which the spool changes.
//!
//! It runs on a thread of its own (sled and the photo files block) and takes two channels:
//! `inputs` from ingest and backfill (records, watermarks, dedupe pruning) and `acks` from the
//! publisher (deletions on PUBACK, quarantine). Records of a batch are made durable with one fsync
//! (group commit) before the publisher is told how far it may read. Deletions need no fsync of
//! their own (a lost delete is a duplicate, never a loss), but the files they free are unlinked
//! only after a flush: one follows a batch of deletions that freed any. A flush that fails ends
//! the writer at once (see `Spool::flush`).
//!
//! A record is never dropped. When the spool has no room (`spool.max_size`, or the disk is full),
//! photos of the oldest records go first; if that is not enough the writer holds the record and
//! stops taking inputs: ingest then stops reading, TCP pushes back on the terminal, which keeps
//! its records, and nothing later passes the held record (so the backfill watermark cannot move
//! past it). Deletions keep flowing meanwhile and make room. A spool that keeps failing for
//! another reason ends the writer, which fails the daemon: systemd restarts it, the spool is
//! opened afresh, and backfill fetches whatever was held.
//!
//! It ends once every sender is gone, after a last flush.

mod state;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{Appended, Encoded, Incoming, Spool, SpoolError};
use crate::pipeline::budget::Ticket;
use crate::runtime::watchdog::{Heartbeat, BEAT};
use state::{Got, Health, Pace};

pub enum SpoolCmd {
    Record {
        terminal: String,
        record: Incoming,
        advance_watermark: bool,
        /// Its bytes against the budget, given back once it is stored (or dropped at shutdown).
        ticket: Ticket,
    },
    /// Backfill finished up to here: records up to `sign_time` are spooled or published.
    Watermark { terminal: String, sign_time: u64 },
    /// Dedupe keys older than `before` (signTime) are no longer needed.
    PruneSeen { terminal: String, before: u64 },
    /// The broker acknowledged these entries: they leave the spool.
    Acks(Vec<u64>),
    /// This entry can never be published as it is: out of the queue, into the quarantine tree.
    Quarantine { seq: u64, reason: String },
}

/// Commands taken into one batch at most; bounds the latency of the first one.
const BATCH: usize = 256;

/// The writer's two inboxes.
pub struct Inbox {
    pub inputs: mpsc::Receiver<SpoolCmd>,
    pub acks: mpsc::Receiver<SpoolCmd>,
}

/// Why the writer ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every sender is gone (shutdown).
    Done,
    /// The spool keeps failing; a fresh process has to open it again.
    Failing(String),
}

struct Writer {
    spool: Arc<Spool>,
    durable: watch::Sender<u64>,
    /// Records (in order) the spool had no room for yet; while any is held, inputs wait.
    held: VecDeque<SpoolCmd>,
    health: Health,
    /// The low-water marks last written, and when.
    marks: super::lowwater::Marks,
    marks_at: Instant,
    /// Records backfill brought that the spool did not have, since the last log line.
    recovered: u64,
    /// Photos dropped to make room, since the last log line.
    shed: u64,
}

/// How often at most the low-water file is rewritten (one small fsync).
const MARKS_EVERY: Duration = Duration::from_secs(1);

/// Returns the heap's free pages to the system. glibc keeps what a burst freed in its arenas (two:
/// see `service::tune_malloc`), so without this the resident set stays at the burst's peak for
/// good (measured: tests/memory.rs prints it). The writer calls it when the pipeline falls
/// quiet after work: every record and every acknowledgement passes through it.
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: takes no pointers; glibc locks each arena while it trims it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs the writer on the calling thread (a blocking one) until every sender is gone.
/// `durable` carries the highest sequence number known to be on disk.
pub fn run(
    spool: Arc<Spool>,
    mut inbox: Inbox,
    durable: watch::Sender<u64>,
    heartbeat: Heartbeat,
    runtime: tokio::runtime::Handle,
) -> End {
    let mut w = Writer {
        spool,
        durable,
        held: VecDeque::new(),
        health: Health::default(),
        marks: super::lowwater::Marks::new(),
        marks_at: Instant::now(),
        recovered: 0,
        shed: 0,
    };
    let (mut batch, mut acks) = (Vec::with_capacity(BATCH), Vec::new());
    let mut pace = Pace::new(Instant::now());
    loop {
        heartbeat.beat();
        if pace.ended() {
            break;
        }
        let (taking, acks_open) = (pace.taking(!w.held.is_empty()), pace.acks_open());
        // Wait for work, but wake up to beat (and to retry held records) while idle.
        let got = runtime.block_on(async {
            tokio::time::timeout(BEAT, async {
                tokio::select! {
                    biased;
                    n = inbox.acks.recv_many(&mut acks, BATCH), if acks_open => Got::Acks(n),
                    n = inbox.inputs.recv_many(&mut batch, BATCH), if taking => Got::Inputs(n),
                    else => {
                        // Only held records are left to do: retry them after a beat.
                        tokio::time::sleep(BEAT).await;
                        Got::Nothing
                    }
                }
            })
            .await
            .unwrap_or(Got::Nothing)
        });
        let step = pace.got(got, w.spool.is_empty());
        if step.trim {
            give_back_memory();
            tracing::debug!("quiet after work: freed memory given back to the system");
        }
        if pace.ended() && !w.held.is_empty() {
            tracing::error!(
                held = w.held.len(),
                "stopping with records the spool had no room for; the terminal keeps them and backfill fetches them after the restart"
            );
            w.held.clear();
        }
        let changed = !acks.is_empty() || !batch.is_empty();
        w.apply(acks.drain(..).chain(batch.drain(..)));
        if changed && w.marks_at.elapsed() >= MARKS_EVERY {
            w.save_marks();
        }
        // The oldest entry's age, for the LED and diagnostics, read here off the runtime.
        if pace.read_oldest(changed, step.quiet, Instant::now()) {
            if let Err(e) = w.spool.note_oldest() {
                tracing::debug!("cannot read the oldest queued entry: {e}");
            }
        }
        if let Some(why) = w.health.given_up(Instant::now()) {
            return End::Failing(why);
        }
    }
    let flushed = w.flush();
    w.save_marks();
    if flushed {
        // Last: nothing writes to the spool after this (every sender is gone).
        match w.spool.close() {
            Ok(()) => tracing::info!(records = w.spool.len(), "spool flushed and closed cleanly"),
            Err(e) => tracing::warn!(
                records = w.spool.len(),
                "spool flushed, but cannot be marked as stopped cleanly (the next start counts its queue): {e}"
            ),
        }
    }
    End::Done
}

impl Writer {
    fn apply(&mut self, cmds: impl Iterator<Item = SpoolCmd>) {
        let mut high = None;
        let mut stored = false;
        let mut acked = Vec::new();
        for cmd in cmds {
            match cmd {
                // Together, in one transaction: acknowledgements come in runs.
                SpoolCmd::Acks(seqs) => acked.extend(seqs),
                SpoolCmd::Quarantine { seq, reason } => {
                    self.ack_all(&mut acked);
                    tracing::error!(seq, reason = %reason, "a spool entry can never be published; moved to the spool's quarantine (diagnostics: spool_quarantined)");
                    if let Err(e) = self.spool.quarantine(seq, &reason) {
                        tracing::error!(seq, "cannot quarantine a spool entry: {e}");
                    }
                }
                SpoolCmd::PruneSeen { terminal, before } => {
                    if let Err(e) = self.spool.prune_seen(&terminal, before) {
                        tracing::warn!(terminal = %terminal, "cannot prune old dedupe keys: {e}");
                    }
                }
                other => self.held.push_back(other),
            }
        }
        self.ack_all(&mut acked);
        // Held records first, in order; a record that still finds no room stops the rest.
        while let Some(cmd) = self.held.pop_front() {
            match self.store(&cmd) {
                Ok(seq) => {
                    stored = true;
                    high = seq.or(high);
                }
                Err(()) => {
                    self.held.push_front(cmd);
                    break;
                }
            }
        }
        if self.shed > 0 {
            tracing::warn!(
                dropped_photos = self.shed,
                "spool full (spool.max_size, or the disk): dropped photos of the oldest records to make room"
            );
            self.shed = 0;
        }
        if self.recovered > 0 {
            tracing::info!(
                records = self.recovered,
                "backfill fetched records the live link had not delivered (made while the bridge or its link was down, or lost from the spool)"
            );
            self.recovered = 0;
        }
        // Acknowledged entries give their disk space back only after a flush (see
        // `Spool::flush`): one for them too, unless records bring one anyway.
        if (stored || self.spool.has_doomed()) && self.flush() {
            if let Some(seq) = high {
                self.durable.send_if_modified(|d| {
                    let moved = seq > *d;
                    *d = (*d).max(seq);
                    moved
                });
            }
        }
    }

    fn ack_all(&mut self, acked: &mut Vec<u64>) {
        if acked.is_empty() {
            return;
        }
        if let Err(e) = self.spool.ack_all(acked) {
            tracing::error!(
                records = acked.len(),
                "cannot remove published records from the spool (they are published again after a restart): {e}"
            );
        }
        acked.clear();
    }

    /// Stores one record or watermark. `Err` when it must wait (no room, or a failing spool).
    fn store(&mut self, cmd: &SpoolCmd) -> Result<Option<u64>, ()> {
        match cmd {
            SpoolCmd::Record {
                terminal,
                record,
                advance_watermark,
                ..
            } => {
                // Encoded once: its size decides whether there is room, its bytes are stored.
                let encoded = Encoded::new(terminal, record, super::now_ms());
                if !self.room_for(encoded.size()) {
                    return Err(());
                }
                let mut result = self.spool.append_encoded(&encoded, *advance_watermark);
                if matches!(&result, Err(e) if e.is_full()) {
                    // The disk is full before the cap: a few photos of the oldest records make
                    // room for many records.
                    match self.spool.shed_photos(16) {
                        Ok(n) if n > 0 => {
                            self.shed += n;
                            result = self.spool.append_encoded(&encoded, *advance_watermark);
                        }
                        _ => {}
                    }
                }
                match result {
                    Ok(Appended::Stored(seq)) => {
                        tracing::trace!(seq, event_id = %record.event_id, watermark = *advance_watermark, "spooled");
                        if record.backfill {
                            self.recovered += 1;
                        }
                        self.ok(Some(seq))
                    }
                    Ok(Appended::Duplicate) => {
                        tracing::debug!(terminal = %terminal, event_id = %record.event_id, "duplicate record dropped");
                        self.ok(None)
                    }
                    Err(e) => self.wait(terminal, &record.event_id, e),
                }
            }
            SpoolCmd::Watermark {
                terminal,
                sign_time,
            } => match self.spool.advance_watermark(terminal, *sign_time) {
                Ok(()) => {
                    tracing::trace!(terminal = %terminal, sign_time, "backfill watermark");
                    self.ok(None)
                }
                Err(e) => self.wait(terminal, "watermark", e),
            },
            _ => Ok(None),
        }
    }

    fn save_marks(&mut self) {
        self.marks_at = Instant::now();
        if let Err(e) = self.spool.save_low_water(&mut self.marks) {
            tracing::warn!("cannot write the spool's low-water file: {e}");
        }
    }

    /// Whether the record fits under `spool.max_size`, after dropping photos of the oldest.
    fn room_for(&mut self, size: u64) -> bool {
        let mut trimmed = self.spool.make_room(size);
        // Acknowledged entries whose space waits for a flush: that flush first.
        if matches!(trimmed, Ok(t) if !t.room) && self.spool.has_doomed() && self.flush() {
            trimmed = self.spool.make_room(size);
        }
        match trimmed {
            Ok(t) => {
                self.shed += t.photos;
                if !t.room && self.held.is_empty() {
                    tracing::error!(
                        spooled_bytes = self.spool.bytes(),
                        "spool full (spool.max_size, or the disk): holding new records until the broker takes some (the terminal keeps them meanwhile; nothing is dropped)"
                    );
                }
                t.room
            }
            Err(e) => {
                tracing::error!("cannot make room in the spool: {e}");
                false
            }
        }
    }

    fn ok(&mut self, seq: Option<u64>) -> Result<Option<u64>, ()> {
        if self.health.stored() {
            self.spool.set_failing(false);
            tracing::info!("the spool takes records again");
        }
        Ok(seq)
    }

    fn wait(&mut self, terminal: &str, what: &str, e: SpoolError) -> Result<Option<u64>, ()> {
        let text = e.to_string();
        if self
            .health
            .failed(text.clone(), e.is_full(), Instant::now())
        {
            tracing::error!(terminal, what, "cannot spool: {text}; holding it and new records (nothing is dropped; the terminal keeps them meanwhile)");
        }
        if !e.is_full() {
            self.spool.set_failing(true);
        }
        Err(())
    }

    /// A record only counts once it is on disk. A flush that fails is not retried: after a failed
    /// fsync, Linux marks the pages it could not write clean, and the next fsync reports success
    /// for data that is not on the disk. `false` then: nothing is published past what is durable,
    /// and the writer ends so that a fresh process opens the spool again from the last good mark
    /// (checking, and writing again, what came after; backfill fetches what did not survive).
    fn flush(&mut self) -> bool {
        match self.spool.flush() {
            Ok(()) => true,
            Err(e) => {
                // Said once, by the supervisor, as it stops the bridge with this reason.
                self.health.fatal(|| {
                    format!("{e}: the spool takes no more records, and the bridge stops so that a fresh start opens it again from the last good flush (the terminal keeps its records meanwhile; backfill fetches them)")
                });
                false
            }
        }
    }
}
