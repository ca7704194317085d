//! The one task that writes the spool: batches what ingest and backfill send, makes each batch
//! durable with one fsync (group commit), then tells the publisher how far it may read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::record::Normalized;
use crate::spool::{Appended, Spool};
use crate::watchdog::{Heartbeat, BEAT};

pub enum SpoolCmd {
    Record {
        terminal: String,
        record: Normalized,
        advance_watermark: bool,
    },
    /// Backfill finished up to here: records up to `sign_time` are spooled or published.
    Watermark { terminal: String, sign_time: u64 },
}

/// Commands taken into one batch at most; bounds the latency of the first one.
const BATCH: usize = 256;

/// Runs until every sender is gone, then flushes one last time.
/// `durable` carries the highest sequence number known to be on disk.
pub async fn run(
    spool: Arc<Spool>,
    mut rx: mpsc::Receiver<SpoolCmd>,
    durable: watch::Sender<u64>,
    heartbeat: Heartbeat,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(BEAT);
    loop {
        heartbeat.beat();
        // `recv_many` is cancel-safe: a tick loses nothing.
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = tick.tick() => continue,
        };
        if n == 0 {
            break;
        }
        let mut high = None;
        for cmd in batch.drain(..) {
            match cmd {
                SpoolCmd::Record {
                    terminal,
                    record,
                    advance_watermark,
                } => {
                    let photo = record.photo.as_deref();
                    match spool.append(&terminal, &record, photo, advance_watermark) {
                        Ok(Appended::Stored(seq)) => high = Some(seq),
                        Ok(Appended::Duplicate) => {
                            tracing::debug!(terminal = %terminal, event_id = %record.event_id, "duplicate record dropped")
                        }
                        Err(e) => {
                            tracing::error!(terminal = %terminal, event_id = %record.event_id, "cannot spool a record: {e}")
                        }
                    }
                }
                SpoolCmd::Watermark {
                    terminal,
                    sign_time,
                } => {
                    if let Err(e) = spool.advance_watermark(&terminal, sign_time) {
                        tracing::error!(terminal = %terminal, "cannot store the backfill watermark: {e}");
                    }
                }
            }
        }
        flush_until_done(&spool).await;
        match spool.enforce_cap() {
            Ok(t) if t.records > 0 => tracing::error!(
                dropped_records = t.records, dropped_photos = t.photos,
                "spool full (spool.max_size): dropped the {} oldest records and {} photos; they will never be published",
                t.records, t.photos
            ),
            Ok(t) if t.photos > 0 => tracing::warn!(dropped_photos = t.photos, "spool full (spool.max_size): dropped photos of the oldest records"),
            Ok(_) => {}
            Err(e) => tracing::error!("cannot enforce the spool size cap: {e}"),
        }
        if let Some(seq) = high {
            durable.send_if_modified(|d| {
                let moved = seq > *d;
                *d = (*d).max(seq);
                moved
            });
        }
    }
    flush_until_done(&spool).await;
}

/// A record only counts once it is on disk; a failing disk is retried, loudly, not skipped.
async fn flush_until_done(spool: &Spool) {
    let mut wait = Duration::from_millis(100);
    loop {
        match spool.flush().await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(
                    "spool flush failed (records are not yet durable): {e}; retrying in {wait:?}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}
