//! After every link-up, fetch what the terminal recorded while we were not listening.
//!
//! The window runs from the watermark (last signTime spooled or published) minus a safety margin
//! to a little past now. It is walked in slices, oldest first, small enough to hold: within a
//! slice pages come newest first and are walked in that order, so records that arrive meanwhile
//! only push older ones onto pages not yet read (seen twice, deduped), never past us; the slice
//! is then spooled oldest first. Only the newest record keeps its photo: the snapshot topic shows
//! the latest capture, and older photos would only cost memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::TerminalConfig;
use crate::integrations::terminal::model::Page;
use crate::integrations::terminal::{sign, RecordQuery, TerminalClient, TerminalError};
use crate::pipeline::budget::Budget;
use crate::pipeline::clocks::{self, TerminalClock};
use crate::pipeline::record::{self, Source};
use crate::pipeline::spool::writer::SpoolCmd;
use crate::pipeline::spool::{Incoming, Spool};
use crate::throttle::{more, Episode, Throttle};

/// Records asked per page. A page of photo records is ~60 KB each as the terminal sends it, and is
/// held twice while it is parsed (the answer and its tree): side by side, 10 took 2.3 MiB less
/// at a backfill's peak than 20 (five runs each, BENCHMARKS.md), at the same speed.
const PAGE: u64 = 10;
/// A slice of the backfill window holds at most this many records in memory...
const SLICE_RECORDS: u64 = 500;
/// ... and this many bytes (records of a hostile terminal can be large).
const SLICE_BYTES: usize = 2 << 20;
/// Dedupe keys are kept this long before the backfill window's start.
const SEEN_SLACK: u64 = 3600;

pub struct Backfill {
    pub terminal: TerminalConfig,
    pub client: TerminalClient,
    pub spool: Arc<Spool>,
    pub writer: mpsc::Sender<SpoolCmd>,
    /// Shared with ingest: bytes of records not yet stored.
    pub budget: Budget,
    /// The link generation; bumped by ingest on every link-up.
    pub trigger: watch::Receiver<u64>,
    /// The newest link generation whose gap is filled.
    pub caught_up: Arc<AtomicU64>,
    /// The terminal's clock as ingest last saw it: the windows follow it when it is off.
    pub clock: Arc<TerminalClock>,
    /// Warnings the terminal's records can repeat, one line per kind per interval.
    pub noise: std::sync::Mutex<Throttle>,
}

impl Backfill {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let t = self.terminal.clone();
        let mut backoff = Backoff::new(t.reconnect_min, t.reconnect_max);
        let mut failing = Episode::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.trigger.changed() => if changed.is_err() { return },
            }
            // Retry until it works; a link-up during a pass means a new gap: pass again.
            loop {
                let generation = *self.trigger.borrow_and_update();
                match self.pass(&shutdown).await {
                    Ok(Some(n)) => {
                        backoff.reset();
                        failing.over();
                        self.caught_up.fetch_max(generation, Ordering::SeqCst);
                        if n > 0 {
                            tracing::info!(terminal = %t.id, records = n, "backfill fetched records missed during the gap");
                        }
                        if !self.trigger.has_changed().unwrap_or(false) {
                            break;
                        }
                    }
                    Ok(None) => return, // shutdown
                    Err(e) => {
                        let wait = backoff.next_delay();
                        if failing.new_error(&e.to_string()) {
                            tracing::warn!(terminal = %t.id, "backfill failed: {e}; retrying with backoff (said once until it changes)");
                        } else {
                            tracing::debug!(terminal = %t.id, "backfill failed: {e}; retrying in {wait:?}");
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }

    /// One backfill. `Ok(None)` on shutdown, else how many records were handed to the spool.
    ///
    /// The window is walked in slices, oldest first, each small enough to hold in memory: a
    /// slice the terminal says holds more than [`SLICE_RECORDS`] (or whose records turn out to
    /// be over [`SLICE_BYTES`]) is halved. Each slice is spooled oldest first and moves the
    /// watermark, so a long gap neither takes the Pi's memory nor starts over after a restart.
    async fn pass(&self, shutdown: &CancellationToken) -> Result<Option<usize>, TerminalError> {
        let t = &self.terminal;
        let watermark = self.spool.watermark(&t.id).unwrap_or_else(|e| {
            tracing::error!(terminal = %t.id, "cannot read the backfill watermark: {e}");
            None
        });
        let now = sign::now_ms() / 1000;
        if let Some(w) = watermark.filter(|&w| w > clocks::watermark_limit(now)) {
            tracing::warn!(terminal = %t.id, watermark = w, "the backfill watermark is past this machine's now (a terminal clock that jumped, or this machine's was wrong): looking back from now instead");
        }
        let windows = clocks::windows(
            watermark,
            self.clock.last_live(),
            now,
            t.backfill_margin,
            t.backfill_first,
        );
        let start = windows.iter().map(|w| w.0).min().unwrap_or(now);
        let end = windows.iter().map(|w| w.1).max().unwrap_or(now);
        // Oldest first: the stack pops its last.
        let mut todo: Vec<(u64, u64)> = windows.into_iter().rev().collect();
        let mut fetched = 0;
        while let Some((a, b)) = todo.pop() {
            let newest = b == end;
            let slice = match self.gather(a, b, newest, shutdown).await? {
                None => return Ok(None),
                Some(Slice::TooBig) => {
                    if let Some((older, newer)) = halve(a, b) {
                        tracing::debug!(terminal = %t.id, from = a, to = b, "backfill: a slice too large to hold, halved");
                        todo.push(newer);
                        todo.push(older);
                        continue;
                    }
                    // One second holds more than a slice: read it page by page and spool each
                    // page as it comes (newest first within that second, the only disorder).
                    match self.stream(a, b, newest, shutdown).await? {
                        None => return Ok(None),
                        Some(n) => fetched += n,
                    }
                    continue;
                }
                Some(Slice::Records(newest_first)) => newest_first,
            };
            fetched += slice.len();
            if !self.spool_oldest_first(slice, shutdown).await {
                return Ok(None);
            }
        }
        let prune = SpoolCmd::PruneSeen {
            terminal: t.id.clone(),
            before: start.saturating_sub(SEEN_SLACK),
        };
        if !send(&self.writer, prune, shutdown).await {
            return Ok(None);
        }
        Ok(Some(fetched))
    }

    /// Reads every page of `[a, b]` (newest first, so records arriving meanwhile only push older
    /// ones onto pages not yet read: seen twice and deduped, never missed). Only the newest
    /// record of the whole window keeps its photo: the snapshot topic shows the latest capture.
    async fn gather(
        &self,
        a: u64,
        b: u64,
        newest: bool,
        shutdown: &CancellationToken,
    ) -> Result<Option<Slice>, TerminalError> {
        let splittable = halve(a, b).is_some();
        let mut q = RecordQuery::between(a, b);
        q.size = PAGE;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        loop {
            let Some(page) = self.page(&q, shutdown).await? else {
                return Ok(None);
            };
            if splittable && page.total > SLICE_RECORDS {
                return Ok(Some(Slice::TooBig));
            }
            let n = page.items.len();
            for rec in self.normalize(page.items, newest && out.is_empty()) {
                bytes = bytes.saturating_add(rec.size());
                out.push(rec);
            }
            if splittable && (bytes > SLICE_BYTES || out.len() as u64 > SLICE_RECORDS) {
                return Ok(Some(Slice::TooBig));
            }
            if n == 0 || q.page >= page.total_pages {
                return Ok(Some(Slice::Records(out)));
            }
            q.page += 1;
        }
    }

    /// Reads `[a, b]` page by page, spooling each page before the next is asked.
    async fn stream(
        &self,
        a: u64,
        b: u64,
        newest: bool,
        shutdown: &CancellationToken,
    ) -> Result<Option<usize>, TerminalError> {
        let mut q = RecordQuery::between(a, b);
        q.size = PAGE;
        let mut fetched = 0;
        loop {
            let Some(page) = self.page(&q, shutdown).await? else {
                return Ok(None);
            };
            let n = page.items.len();
            let recs = self.normalize(page.items, newest && fetched == 0);
            fetched += recs.len();
            if !self.spool_oldest_first(recs, shutdown).await {
                return Ok(None);
            }
            if n == 0 || q.page >= page.total_pages {
                return Ok(Some(fetched));
            }
            q.page += 1;
        }
    }

    /// One page; `None` on shutdown.
    async fn page(
        &self,
        q: &RecordQuery,
        shutdown: &CancellationToken,
    ) -> Result<Option<Page<Map<String, Value>>>, TerminalError> {
        tokio::select! {
            _ = shutdown.cancelled() => Ok(None),
            p = self.client.records(q) => p.map(Some),
        }
    }

    /// The page's records the bridge can read (their size bounds the slice and is each one's
    /// ticket); `keep_first_photo` keeps the first one's photo.
    fn normalize(&self, items: Vec<Map<String, Value>>, keep_first_photo: bool) -> Vec<Incoming> {
        let t = &self.terminal;
        let now = sign::now_ms() / 1000;
        let mut out = Vec::with_capacity(items.len());
        let mut ahead = 0;
        for item in items {
            match record::normalize(&t.id, &item, Source::Backfill) {
                Ok(mut rec) => {
                    if self.clock.fetched(rec.sign_time(), now) {
                        ahead += 1;
                    }
                    if !(keep_first_photo && out.is_empty()) {
                        rec.drop_photo();
                    }
                    out.push(Incoming::from(rec));
                }
                Err(e) => {
                    let mut noise = self.noise.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(n) = noise.allow("record", tokio::time::Instant::now()) {
                        tracing::warn!(terminal = %t.id, "backfill skipped a record: {e}{}", more(n));
                    }
                }
            }
        }
        let mut noise = self.noise.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        if let Some(n) = (ahead > 0).then(|| noise.allow("ahead", now)).flatten() {
            tracing::warn!(terminal = %t.id, records = ahead, "backfill fetched records dated more than 5 minutes past this machine's now (the terminal's clock); published with their dates, the watermark not moved by them{}", more(n));
        }
        out
    }

    /// Hands newest-first records to the spool oldest first, then the watermark (on the same
    /// channel, so it lands only once they are spooled). False on shutdown.
    async fn spool_oldest_first(
        &self,
        newest_first: Vec<Incoming>,
        shutdown: &CancellationToken,
    ) -> bool {
        let t = &self.terminal;
        let high = newest_first.iter().map(|rec| rec.sign_time).max();
        for rec in newest_first.into_iter().rev() {
            // A full spool may never give room: the stop must not wait for it.
            let ticket = tokio::select! {
                _ = shutdown.cancelled() => return false,
                ticket = self.budget.take(rec.size()) => ticket,
            };
            let cmd = SpoolCmd::Record {
                terminal: t.id.clone(),
                record: rec,
                advance_watermark: false,
                ticket,
            };
            if !send(&self.writer, cmd, shutdown).await {
                return false;
            }
        }
        let Some(sign_time) = high else {
            return true;
        };
        let mark = SpoolCmd::Watermark {
            terminal: t.id.clone(),
            sign_time,
        };
        send(&self.writer, mark, shutdown).await
    }
}

/// Sends to the spool writer unless the stop comes first; false when it did (or the writer is
/// gone). What was not sent is still on the terminal: the next start fetches it again.
async fn send(
    writer: &mpsc::Sender<SpoolCmd>,
    cmd: SpoolCmd,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        sent = writer.send(cmd) => sent.is_ok(),
    }
}

/// What [`Backfill::gather`] found in a slice.
enum Slice {
    Records(Vec<Incoming>),
    TooBig,
}

/// `[a, b]` as two slices that overlap on their middle second, or `None` when it cannot shrink.
/// The overlap makes the split exact whether the terminal's bounds are inclusive or not (the
/// API document says inclusive); a record in that second is deduped.
pub fn halve(a: u64, b: u64) -> Option<((u64, u64), (u64, u64))> {
    if b.saturating_sub(a) < 2 {
        return None;
    }
    let mid = a + (b - a) / 2;
    Some(((a, mid), (mid, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_is_halved_into_two_that_overlap_on_the_middle_second() {
        assert_eq!(halve(100, 200), Some(((100, 150), (150, 200))));
        assert_eq!(halve(100, 103), Some(((100, 101), (101, 103))));
        assert_eq!(halve(100, 102), Some(((100, 101), (101, 102))));
    }

    #[test]
    fn a_slice_of_two_seconds_or_less_is_not_halved() {
        assert_eq!(halve(100, 101), None);
        assert_eq!(halve(100, 100), None);
        assert_eq!(halve(200, 100), None);
    }

    #[test]
    fn halving_always_shrinks_so_the_walk_ends() {
        for (a, b) in [
            (0, 2),
            (0, u64::MAX),
            (u64::MAX - 2, u64::MAX),
            (7, 1_000_003),
        ] {
            let ((a1, b1), (a2, b2)) = halve(a, b).expect("splittable");
            assert!(b1 - a1 < b - a && b2 - a2 < b - a);
            assert_eq!((a1, b2), (a, b));
        }
    }
}
