//! Spool → broker: turns durable spool entries into publishes, and PUBACKs into deletions.
//!
//! A record leaves the spool only when the broker has acknowledged every publish that carried it
//! (its record and, when it is the newest capture, its photo on the retained snapshot topic).
//! Nothing above the spool writer's durable mark is read, so nothing is published before it is on
//! disk. Deletions go to the spool writer ([`crate::pipeline::spool::writer`]), the one task that writes the
//! spool. Each record that goes out is also handed to the consumers that follow records (the Home
//! Assistant task: the retained last record and the fresh-event rule).

mod plan;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::integrations::mqtt::acks::Tag;
use crate::integrations::mqtt::session::{Feed, Sink};
use crate::integrations::mqtt::{MAX_PACKET, WINDOW};
use crate::messages::topics::{self, MAX_TOPIC_BYTES};
use crate::messages::{Published, RouterMsg};
use crate::pipeline::record::{self, size};
use crate::pipeline::spool::writer::SpoolCmd;
use crate::pipeline::spool::{Entry, Spool};
use plan::{Plan, Room, Snapshots};

pub struct Publisher {
    pub spool: Arc<Spool>,
    pub base: String,
    /// The highest spool sequence that is durable; nothing above it is published.
    pub durable: watch::Receiver<u64>,
    /// The spool writer, which deletes acknowledged entries.
    pub writer: mpsc::Sender<SpoolCmd>,
    /// Told of every record that goes out.
    pub records: mpsc::Sender<Published>,
    /// The command router, told of each stranger's capture on these terminals (those that
    /// allow `admit` or `block`; no other terminal's photos are kept anywhere).
    captures: Option<(mpsc::Sender<RouterMsg>, HashSet<String>)>,
    durable_open: bool,
    /// Last spool sequence submitted on this connection.
    cursor: Option<u64>,
    /// Newest capture time whose photo went to the retained snapshot topic, per terminal.
    snapshots: Snapshots,
    /// Entries read after `cursor` and not yet submitted (see [`READ_AHEAD`]).
    ahead: VecDeque<(u64, Read)>,
    /// Acknowledged entries not yet handed to the writer (see [`Feed::settled`]).
    acks: Vec<u64>,
}

/// Entries read from the spool in one go, and the bytes (record JSON and photos) they may hold.
/// One blocking read fills many window slots: a read per freed slot cost the drain a thread
/// hand-off per record (BENCHMARKS.md, the drain beside 3520978).
const READ_AHEAD: usize = 128;
const READ_AHEAD_BYTES: usize = 1 << 20;

// What the size policy lets into the spool always fits a packet, with the longest topic.
const _: () = assert!(size::MAX_JSON + MAX_TOPIC_BYTES + 16 <= MAX_PACKET);
const _: () = assert!(size::MAX_PHOTO + MAX_TOPIC_BYTES + 16 <= MAX_PACKET);

impl Publisher {
    pub fn new(
        spool: Arc<Spool>,
        base: String,
        durable: watch::Receiver<u64>,
        writer: mpsc::Sender<SpoolCmd>,
        records: mpsc::Sender<Published>,
    ) -> Publisher {
        Publisher {
            spool,
            base,
            durable,
            writer,
            records,
            captures: None,
            durable_open: true,
            cursor: None,
            snapshots: Snapshots::default(),
            ahead: VecDeque::new(),
            acks: Vec::new(),
        }
    }

    /// Hands stranger captures of `terminals` to the command router (for `admit` and `block`).
    pub fn with_captures(
        mut self,
        router: mpsc::Sender<RouterMsg>,
        terminals: HashSet<String>,
    ) -> Publisher {
        if !terminals.is_empty() {
            self.captures = Some((router, terminals));
        }
        self
    }

    /// A stranger's capture, on a terminal that keeps them, to the router.
    fn offer_capture(&self, entry: &Entry, photo: &[u8]) {
        let Some((router, terminals)) = &self.captures else {
            return;
        };
        if !terminals.contains(&entry.terminal) || !record::is_stranger(&entry.json) {
            return;
        }
        let msg = RouterMsg::Captured {
            terminal: entry.terminal.clone(),
            event_id: entry.event_id.clone(),
            jpeg: photo.to_vec(),
        };
        if router.try_send(msg).is_err() {
            tracing::debug!(event_id = %entry.event_id, "the command router is behind; a capture is not kept for admit");
        }
    }

    /// Hands waiting deletions to the writer, all in one command; when it has no room they wait
    /// for the next pass (a deletion lost in a crash is a duplicate, never a loss).
    fn pass_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        if let Err(e) = self.writer.try_send(SpoolCmd::Acks(acks)) {
            if let SpoolCmd::Acks(acks) = e.into_inner() {
                self.acks = acks;
            }
        }
    }

    /// Takes an entry that can never be published out of the queue (the writer moves it to the
    /// spool's quarantine tree, loudly).
    fn quarantine(&mut self, seq: u64, reason: String) {
        if self
            .writer
            .try_send(SpoolCmd::Quarantine { seq, reason })
            .is_err()
        {
            tracing::warn!(
                seq,
                "the spool writer is busy; the entry is quarantined on the next pass"
            );
        }
    }

    /// Publishes one entry's photo (when it is the newest capture) and record.
    fn send_entry(
        &mut self,
        sink: &mut Sink<'_>,
        seq: u64,
        mut entry: Entry,
        photo: Option<Vec<u8>>,
    ) -> bool {
        if let Some(photo) = &photo {
            self.offer_capture(&entry, photo);
        }
        // The snapshot topic only for an entry with a photo: most have none.
        let snapshot_topic = photo
            .is_some()
            .then(|| topics::snapshot(&self.base, &entry.terminal));
        let topic = topics::record(&self.base, &entry.terminal);
        let room = Room {
            snapshot: snapshot_topic
                .as_ref()
                .map_or(0, |t| MAX_PACKET.saturating_sub(t.len() + 16)),
            record: MAX_PACKET.saturating_sub(topic.len() + 16),
        };
        let newest = self.snapshots.is_newest(&entry.terminal, entry.sign_time);
        let Plan {
            snapshot,
            photo_too_large,
            record,
            refitted,
        } = plan::plan(
            std::mem::take(&mut entry.json),
            entry.photo.is_some(),
            photo,
            newest,
            room,
        );
        if photo_too_large {
            tracing::warn!(terminal = %entry.terminal, event_id = %entry.event_id, "capture photo larger than the MQTT packet limit; not published");
        }
        if let (Some(photo), Some(snapshot_topic)) = (snapshot, &snapshot_topic) {
            if !sink.submit(snapshot_topic, photo, true, Tag::Entry(seq)) {
                return false;
            }
            self.snapshots.sent(&entry.terminal, entry.sign_time);
        }
        tracing::trace!(seq, event_id = %entry.event_id, "publishing");
        // Records are fitted to the size policy before they are spooled; an entry an older
        // version spooled over the limit is fitted now, or goes into quarantine, loudly. Either
        // way it never blocks the records behind it.
        let json = match record {
            Ok(json) => json,
            Err(reason) => {
                self.quarantine(seq, reason);
                return true;
            }
        };
        if refitted {
            tracing::warn!(terminal = %entry.terminal, event_id = %entry.event_id, "spooled record larger than the MQTT packet limit; published reduced (\"truncated\": true)");
        }
        if !sink.submit(&topic, json.clone().into_bytes(), false, Tag::Entry(seq)) {
            return false;
        }
        let published = Published {
            terminal: entry.terminal,
            event_id: entry.event_id,
            sign_time: entry.sign_time,
            spooled_ms: entry.spooled_ms,
            json,
        };
        if self.records.try_send(published).is_err() {
            tracing::debug!(
                "the record consumers are behind; last_record/event skipped for one record"
            );
        }
        true
    }
}

/// An entry with its photo, or why it cannot be decoded.
type Read = Result<(Entry, Option<Vec<u8>>), String>;

/// Reads the entries after `cursor` up to `limit` (the durable mark), each with its photo, off
/// the async runtime: at most [`READ_AHEAD`] of them, and no more once they hold
/// [`READ_AHEAD_BYTES`]. Nothing above `limit` is read: an entry being appended may be seen
/// before an older one (sled's range reads are no snapshot), and the cursor must not pass that.
async fn read_ahead(
    spool: Arc<Spool>,
    cursor: Option<u64>,
    limit: u64,
) -> Option<Vec<(u64, Read)>> {
    let read = tokio::task::spawn_blocking(move || {
        let batch = spool.next_batch(cursor, READ_AHEAD)?;
        let mut all: Vec<(u64, Result<Entry, String>)> = batch
            .undecodable
            .into_iter()
            .map(|(seq, why)| (seq, Err(why)))
            .chain(batch.entries.into_iter().map(|(seq, e)| (seq, Ok(e))))
            .filter(|(seq, _)| *seq <= limit)
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        let mut out = Vec::with_capacity(all.len());
        let mut bytes = 0;
        for (seq, entry) in all {
            if bytes >= READ_AHEAD_BYTES {
                break;
            }
            let read = entry.map(|entry| {
                let photo = spool.photo(seq, &entry).unwrap_or_else(|e| {
                    tracing::warn!(event_id = %entry.event_id, "cannot read the photo from the spool: {e}");
                    None
                });
                bytes += entry.json.len() + photo.as_ref().map_or(0, Vec::len);
                (entry, photo)
            });
            out.push((seq, read));
        }
        Ok::<_, crate::pipeline::spool::SpoolError>(out)
    })
    .await;
    match read
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!("cannot read the spool: {e}");
            None
        }
    }
}

impl Feed for Publisher {
    async fn fill(&mut self, sink: &mut Sink<'_>) {
        self.pass_acks();
        while sink.entries_in_flight() < WINDOW {
            let limit = *self.durable.borrow();
            if self.ahead.is_empty() {
                if self.cursor.is_some_and(|c| c >= limit) {
                    return;
                }
                let Some(read) = read_ahead(self.spool.clone(), self.cursor, limit).await else {
                    return;
                };
                if read.is_empty() {
                    // Nothing after the cursor: every entry up to `limit` is out (or acknowledged).
                    self.cursor = Some(self.cursor.unwrap_or(0).max(limit));
                    return;
                }
                self.ahead.extend(read);
            }
            let Some((seq, read)) = self.ahead.pop_front() else {
                return;
            };
            match read {
                Ok((entry, photo)) => {
                    if !self.send_entry(sink, seq, entry, photo) {
                        // rumqttc is gone; the next connection starts from the oldest again.
                        self.ahead.clear();
                        return;
                    }
                }
                Err(why) => self.quarantine(seq, format!("undecodable spool entry: {why}")),
            }
            self.cursor = Some(seq);
        }
    }

    async fn more(&mut self) {
        if !self.durable_open {
            return std::future::pending().await;
        }
        // The writer ends first on shutdown; what is durable then stays as it is.
        if self.durable.changed().await.is_err() {
            self.durable_open = false;
        }
    }

    fn acked(&mut self, seq: u64) {
        self.acks.push(seq);
    }

    fn settled(&mut self) {
        self.pass_acks();
    }

    fn reset(&mut self) {
        self.cursor = None;
        self.ahead.clear();
    }

    fn finish(&mut self) {
        self.pass_acks();
        if !self.acks.is_empty() {
            tracing::warn!(
                entries = self.acks.len(),
                "acknowledged entries could not be removed from the spool; they are published again after the restart"
            );
        }
        tracing::info!(left_in_spool = self.spool.len(), "publisher stopped");
    }
}
