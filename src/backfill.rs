//! After every link-up, fetch what the terminal recorded while we were not listening.
//!
//! The window runs from the watermark (last signTime spooled or published) minus a safety margin
//! to a little past now. Pages come newest first and are walked in that order, so records that
//! arrive meanwhile only push older ones onto pages not yet read (seen twice, deduped), never past
//! us. The batch is then spooled oldest first. Only the newest record keeps its photo: the
//! snapshot topic shows the latest capture, and older photos would only cost memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::TerminalConfig;
use crate::record::{self, Normalized, Source};
use crate::spool::writer::SpoolCmd;
use crate::spool::Spool;
use crate::terminal::{sign, RecordQuery, TerminalClient, TerminalError};

const PAGE: u64 = 100;
/// Dedupe keys are kept this long before the backfill window's start.
const SEEN_SLACK: u64 = 3600;

pub struct Backfill {
    pub terminal: TerminalConfig,
    pub client: TerminalClient,
    pub spool: Arc<Spool>,
    pub writer: mpsc::Sender<SpoolCmd>,
    /// The link generation; bumped by ingest on every link-up.
    pub trigger: watch::Receiver<u64>,
    /// The newest link generation whose gap is filled.
    pub caught_up: Arc<AtomicU64>,
}

/// The window `[start, end]` in Unix seconds for a backfill now.
pub fn window(watermark: Option<u64>, now: u64, margin: Duration, first: Duration) -> (u64, u64) {
    let start = match watermark {
        Some(w) => w.saturating_sub(margin.as_secs()),
        None => now.saturating_sub(first.as_secs()),
    };
    (start, now + margin.as_secs())
}

impl Backfill {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let t = self.terminal.clone();
        let mut backoff = Backoff::new(t.reconnect_min, t.reconnect_max);
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
                        self.caught_up.fetch_max(generation, Ordering::SeqCst);
                        if n > 0 {
                            tracing::info!(terminal = %t.id, records = n, "backfill fetched records missed during the gap");
                        }
                        if self.trigger.has_changed().unwrap_or(false) {
                            continue;
                        }
                        break;
                    }
                    Ok(None) => return, // shutdown
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(terminal = %t.id, "backfill failed: {e}; retrying in {wait:?}");
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
    async fn pass(&self, shutdown: &CancellationToken) -> Result<Option<usize>, TerminalError> {
        let t = &self.terminal;
        let watermark = self.spool.watermark(&t.id).unwrap_or_else(|e| {
            tracing::error!(terminal = %t.id, "cannot read the backfill watermark: {e}");
            None
        });
        let now = sign::now_ms() / 1000;
        let (start, end) = window(watermark, now, t.backfill_margin, t.backfill_first);
        let mut q = RecordQuery::between(start, end);
        q.size = PAGE;
        let mut newest_first: Vec<Normalized> = Vec::new();
        loop {
            let page = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                p = self.client.records(&q) => p?,
            };
            let n = page.items.len();
            for item in page.items {
                match record::normalize(&t.id, &item, Source::Backfill) {
                    Ok(mut rec) => {
                        if !newest_first.is_empty() {
                            rec.drop_photo();
                        }
                        newest_first.push(rec);
                    }
                    Err(e) => tracing::warn!(terminal = %t.id, "backfill skipped a record: {e}"),
                }
            }
            if n == 0 || q.page >= page.total_pages {
                break;
            }
            q.page += 1;
        }
        let fetched = newest_first.len();
        let high = newest_first.iter().map(|r| r.sign_time).max();
        for rec in newest_first.into_iter().rev() {
            let cmd = SpoolCmd::Record {
                terminal: t.id.clone(),
                record: rec,
                advance_watermark: false,
            };
            if self.writer.send(cmd).await.is_err() {
                return Ok(None);
            }
        }
        // Sent after the records on the same channel, so it lands only once they are spooled.
        if let Some(sign_time) = high {
            if self
                .writer
                .send(SpoolCmd::Watermark {
                    terminal: t.id.clone(),
                    sign_time,
                })
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
        let prune = SpoolCmd::PruneSeen {
            terminal: t.id.clone(),
            before: start.saturating_sub(SEEN_SLACK),
        };
        if self.writer.send(prune).await.is_err() {
            return Ok(None);
        }
        Ok(Some(fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_a_margin_before_the_watermark() {
        assert_eq!(
            window(
                Some(1000),
                5000,
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ),
            (940, 5060)
        );
    }

    #[test]
    fn the_first_window_looks_back_the_configured_first_span() {
        assert_eq!(
            window(
                None,
                5000,
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ),
            (1400, 5060)
        );
    }
}
