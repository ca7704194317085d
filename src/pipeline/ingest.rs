//! One task per terminal: keeps the record WebSocket up and feeds every record to the spool.
//!
//! The link is pinged every `ping_interval` and dropped after `dead_after` with nothing received
//! (half-open TCP is the usual failure on site networks); it reconnects forever with backoff. A
//! frame that is not a record is logged and skipped; nothing a terminal sends ends the task. The
//! reader never waits on MQTT: the spool sits between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::TerminalConfig;
use crate::integrations::terminal::model::lenient_i64;
use crate::integrations::terminal::{lean, push, TerminalClient};
use crate::messages::Outbound;
use crate::pipeline::budget::Budget;
use crate::pipeline::clocks::{self, Seen, TerminalClock};
use crate::pipeline::record::{self, Source};
use crate::pipeline::spool::writer::SpoolCmd;
use crate::pipeline::spool::Incoming;
use crate::throttle::{more, Episode, Throttle};

/// Frames above this are not parsed whole: their record is read without its oversized fields
/// ([`lean`]). The size policy: [`record::size`].
pub use record::size::WHOLE_FRAME as MAX_RECORD_FRAME;

#[derive(Debug, PartialEq)]
pub enum Frame {
    Record(Map<String, Value>),
    /// A record from a frame over [`MAX_RECORD_FRAME`], read without the fields named in
    /// `dropped` (a huge photo or text). It still counts: only those fields are lost.
    Reduced {
        data: Map<String, Value>,
        dropped: Vec<String>,
    },
    /// A frame with another code (20000 again, or something newer firmware sends).
    Other(i64),
    Invalid(String),
    /// A frame over the limit that may have been a record but cannot be read: the record is
    /// to be fetched again by backfill.
    Lost(String),
}

/// What a text or binary frame is. Matches on `code`, never on `message` (whose space is a
/// non-breaking one on real units).
pub fn classify(bytes: &[u8]) -> Frame {
    if bytes.len() > MAX_RECORD_FRAME {
        return classify_oversized(bytes);
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Frame::Invalid(format!("not JSON: {e}")),
    };
    let Value::Object(mut obj) = value else {
        return Frame::Invalid("not a JSON object".into());
    };
    let Some(code) = obj.get("code").and_then(lenient_i64) else {
        return Frame::Invalid("no numeric `code`".into());
    };
    if code != 30000 {
        return Frame::Other(code);
    }
    match obj.remove("data") {
        Some(Value::Object(data)) => Frame::Record(data),
        Some(other) => Frame::Invalid(format!(
            "push whose `data` is {}, not an object",
            kind(&other)
        )),
        None => Frame::Invalid("push without `data`".into()),
    }
}

/// A frame over the limit: read once, keeping `code` and the record's fields that fit.
fn classify_oversized(bytes: &[u8]) -> Frame {
    let over = format!(
        "frame of {} bytes over the {} byte limit",
        bytes.len(),
        MAX_RECORD_FRAME
    );
    let l = match lean::parse(bytes, record::size::LEAN) {
        Ok(l) => l,
        Err(e) => return Frame::Lost(format!("{over}, and not readable: {e}")),
    };
    match l.code.as_ref().and_then(lenient_i64) {
        Some(30000) => {}
        Some(code) => return Frame::Other(code),
        None => return Frame::Lost(format!("{over}, without a numeric `code`")),
    }
    match l.data {
        // Without its time a record cannot be placed (nor found by backfill's window).
        Some(Ok(data)) if data.contains_key("signTime") => {
            if l.dropped.is_empty() {
                Frame::Record(data)
            } else {
                Frame::Reduced {
                    data,
                    dropped: l.dropped,
                }
            }
        }
        Some(Ok(_)) => Frame::Lost(format!("{over}, and its `signTime` could not be kept")),
        Some(Err(what)) => Frame::Lost(format!("{over}: push whose `data` is {what}")),
        None => Frame::Lost(format!("{over}: push without `data`")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The first bytes of a frame, printable, for a log line.
pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Everything one terminal's ingest task needs.
pub struct Ingest {
    pub terminal: TerminalConfig,
    pub client: TerminalClient,
    pub spool: mpsc::Sender<SpoolCmd>,
    /// Shared by every terminal: bytes of records not yet stored.
    pub budget: Budget,
    pub outbound: mpsc::Sender<Outbound>,
    /// The link generation, bumped on every link-up: the backfill task then fetches what the gap
    /// missed.
    pub backfill: watch::Sender<u64>,
    /// The newest link generation whose gap backfill has filled. Until it equals ours, live
    /// records must not move the watermark past a gap that is not yet filled.
    pub caught_up: Arc<AtomicU64>,
    /// The terminal's clock, judged by each live record's date.
    pub clock: Arc<TerminalClock>,
    /// Warnings the terminal's frames can repeat, one line per kind per interval.
    pub noise: std::sync::Mutex<Throttle>,
}

impl Ingest {
    pub async fn run(self, shutdown: CancellationToken) {
        let t = &self.terminal;
        let mut backoff = Backoff::new(t.reconnect_min, t.reconnect_max);
        let mut refused = Episode::default();
        loop {
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = push::connect(&self.client, t.request_timeout) => r,
            };
            match connected {
                Ok(ws) => {
                    backoff.reset();
                    refused.over();
                    tracing::info!(terminal = %t.id, "record push link up");
                    self.backfill.send_modify(|g| *g += 1);
                    let generation = *self.backfill.borrow();
                    if !self.available(true).await {
                        return;
                    }
                    let reason = self.read(ws, generation, &shutdown).await;
                    if !self.available(false).await {
                        return;
                    }
                    match reason {
                        None => return,
                        Some(r) => {
                            if let Some(n) = self.noisy("link losses") {
                                tracing::warn!(terminal = %t.id, "record push link lost: {r}; reconnecting{}", more(n))
                            }
                        }
                    }
                }
                // Once per episode: a wrong password is retried with backoff forever.
                Err(e) if e.is_auth() => {
                    if refused.new_error(&e.to_string()) {
                        tracing::error!(terminal = %t.id, code = e_code(&e), "{e}; check the terminal's password in the config (retrying; said once until it changes)");
                    }
                }
                Err(e) => {
                    if refused.new_error(&e.to_string()) {
                        tracing::warn!(terminal = %t.id, "{e} (retrying; said once until it changes)");
                    } else {
                        tracing::debug!(terminal = %t.id, "{e}");
                    }
                }
            }
            let wait = backoff.next_delay();
            tracing::debug!(terminal = %t.id, ?wait, "reconnecting after backoff");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Reads until the link fails (returns why) or shutdown (returns `None`).
    async fn read(
        &self,
        ws: push::PushStream,
        generation: u64,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let t = &self.terminal;
        let (mut tx, mut rx) = ws.split();
        let mut last_rx = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + t.ping_interval, t.ping_interval);
        loop {
            // Biased: a frame that is already here counts before the dead-link timer is looked at.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(None))).await;
                    return None;
                }
                msg = rx.next() => {
                    match msg {
                        None | Some(Ok(Message::Close(_))) => return Some("closed by the terminal".into()),
                        Some(Err(e)) => return Some(e.to_string()),
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            if let Err(why) = self.frame(&m.into_data(), generation, shutdown).await? {
                                return Some(why);
                            }
                        }
                        Some(Ok(_)) => {} // ping (answered by tungstenite) or pong: liveness only
                    }
                    // Measured from after our own handling: time spent waiting on a busy spool is
                    // not the terminal's silence.
                    last_rx = Instant::now();
                }
                _ = ping.tick() => {
                    self.held_back();
                    match tokio::time::timeout(t.ping_interval, tx.send(Message::Ping(Vec::new().into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Some(format!("ping failed: {e}")),
                        Err(_) => return Some("ping could not be sent (link stalled)".into()),
                    }
                }
                _ = tokio::time::sleep_until(last_rx + t.dead_after) => {
                    return Some(format!("nothing received for {}", humantime::format_duration(t.dead_after)));
                }
            }
        }
    }

    /// Handles one frame. `None` on shutdown (also while waiting for room, which a full spool
    /// may never give); `Err` when the link should be dropped and made again (with why).
    async fn frame(
        &self,
        bytes: &[u8],
        generation: u64,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), String>> {
        let t = &self.terminal;
        let (data, dropped) = match classify(bytes) {
            Frame::Record(data) => (data, Vec::new()),
            Frame::Reduced { data, dropped } => {
                if let Some(n) = self.noisy("push frames over the size limit") {
                    tracing::warn!(terminal = %t.id, size = bytes.len(), fields = ?dropped, "a push frame over the size limit: its record goes on without these fields{}", more(n));
                }
                (data, dropped)
            }
            Frame::Lost(reason) => {
                // A new link generation makes the backfill task fetch the gap, and holds the
                // watermark of live records until it has (see `advance` below).
                if let Some(n) = self.noisy("frames lost") {
                    tracing::warn!(terminal = %t.id, size = bytes.len(), prefix = %preview(bytes), "a frame was lost: {reason}; backfilling{}", more(n));
                }
                self.backfill.send_modify(|g| *g += 1);
                return Some(Ok(()));
            }
            Frame::Other(20000) => return Some(Ok(())),
            Frame::Other(code) => {
                tracing::debug!(terminal = %t.id, code, "frame with code {code} ignored");
                return Some(Ok(()));
            }
            Frame::Invalid(reason) => {
                if let Some(n) = self.noisy("frames skipped") {
                    tracing::warn!(terminal = %t.id, size = bytes.len(), prefix = %preview(bytes), "skipped a frame: {reason}{}", more(n))
                }
                return Some(Ok(()));
            }
        };
        let mut rec = match record::normalize(&t.id, &data, Source::Live) {
            Ok(rec) => rec,
            Err(e) => {
                if let Some(n) = self.noisy("records skipped") {
                    tracing::warn!(terminal = %t.id, size = bytes.len(), prefix = %preview(bytes), "skipped a record: {e}{}", more(n))
                }
                return Some(Ok(()));
            }
        };
        rec.mark_truncated(&dropped);
        if let Some(problem) = &rec.photo_problem {
            if let Some(n) = self.noisy("capture photos dropped") {
                tracing::warn!(terminal = %t.id, event_id = %rec.event_id(), "capture photo dropped: {problem}{}", more(n));
            }
        }
        tracing::debug!(terminal = %t.id, event_id = %rec.event_id(), "record received");
        self.judge_clock(rec.sign_time());
        let current = generation.max(*self.backfill.borrow());
        let advance = self.caught_up.load(Ordering::SeqCst) >= current;
        // Serialized now: what waits is what its bytes say (see `Incoming`). The
        // frame's size stands for it (its photo in base64 is a third larger).
        let rec = Incoming::from(rec);
        let waited = Instant::now();
        let ticket = tokio::select! {
            _ = shutdown.cancelled() => return None,
            ticket = self.budget.take(bytes.len().max(rec.size())) => ticket,
        };
        let cmd = SpoolCmd::Record {
            terminal: t.id.clone(),
            record: rec,
            advance_watermark: advance,
            ticket,
        };
        // Not taken before the stop: still on the terminal, fetched by backfill.
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            sent = self.spool.send(cmd) => if sent.is_err() { return None },
        }
        // The spool held us back (full, or the budget used up): meanwhile the
        // terminal may have given up on pushes. A new link-up makes backfill fetch
        // whatever we missed.
        if waited.elapsed() > t.dead_after {
            return Some(Err(format!(
                "the spool had no room for {}; reconnecting so that backfill covers the gap",
                humantime::format_duration(waited.elapsed())
            )));
        }
        Some(Ok(()))
    }

    /// Says whether the terminal is online; false once the session has ended.
    async fn available(&self, online: bool) -> bool {
        let terminal = self.terminal.id.clone();
        let msg = Outbound::Availability { terminal, online };
        self.outbound.send(msg).await.is_ok()
    }

    /// `Some(held back)` when a warning of `kind` may be written now (see [`Throttle`]).
    fn noisy(&self, kind: &'static str) -> Option<u64> {
        let mut t = self.noise.lock().unwrap_or_else(|p| p.into_inner());
        t.allow(kind, Instant::now())
    }

    /// Says how many warnings of each kind were held back in the last interval.
    fn held_back(&self) {
        let due = {
            let mut t = self.noise.lock().unwrap_or_else(|p| p.into_inner());
            t.due(Instant::now())
        };
        for (kind, n) in due {
            tracing::warn!(terminal = %self.terminal.id, held_back = n, "{kind}: {n} more warnings like the last one, not written one by one");
        }
    }

    /// A live record was made just now: its date says how far off the terminal's clock is.
    /// The record goes on whatever its date; the episode is logged once and the terminal's
    /// clock set (the time-sync task refuses while this machine's own is unsynchronized).
    fn judge_clock(&self, sign_time: u64) {
        let t = &self.terminal;
        let now = crate::integrations::terminal::sign::now_ms() / 1000;
        match self.clock.live(sign_time, now) {
            Seen::Fine => return,
            Seen::WentOff(offset) => {
                tracing::warn!(terminal = %t.id, offset_s = offset, "the terminal's clock is {} this machine's (more than 5 minutes): its records are published with its dates, backfill follows its clock, and its clock is being set", clocks::describe(offset));
            }
            Seen::BackInRange => {
                tracing::info!(terminal = %t.id, "the terminal's clock agrees with this machine's again");
                return;
            }
            Seen::StillOff => {}
        }
        self.clock.ask_resync(now);
    }
}

fn e_code(e: &push::PushError) -> i64 {
    match e {
        push::PushError::Refused { code, .. } => code.code(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_frame_with_an_object_is_a_record() {
        let f = classify(b"{\n\t\"code\":\t30000,\n\t\"message\":\t\"push\xc2\xa0record\",\n\t\"data\":\t{\n\t\t\"id\":\t1\n\t}\n}");
        assert!(matches!(f, Frame::Record(ref m) if m["id"] == 1), "{f:?}");
    }

    #[test]
    fn a_push_is_recognized_by_its_code_not_its_message() {
        assert!(matches!(
            classify(br#"{"code":"30000","message":"whatever","data":{}}"#),
            Frame::Record(_)
        ));
    }

    #[test]
    fn the_connected_answer_is_not_a_record() {
        assert_eq!(
            classify(br#"{"code":20000,"message":"Connected!"}"#),
            Frame::Other(20000)
        );
    }

    #[test]
    fn broken_frames_are_invalid_with_a_reason() {
        assert!(matches!(classify(b"{not json"), Frame::Invalid(r) if r.starts_with("not JSON")));
        assert!(matches!(classify(b"[1,2]"), Frame::Invalid(r) if r.contains("object")));
        assert!(matches!(classify(br#"{"message":"x"}"#), Frame::Invalid(r) if r.contains("code")));
        assert!(
            matches!(classify(br#"{"code":30000,"data":"oops"}"#), Frame::Invalid(r) if r.contains("a string"))
        );
        assert!(
            matches!(classify(br#"{"code":30000}"#), Frame::Invalid(r) if r.contains("without"))
        );
    }

    #[test]
    fn an_oversized_frame_that_cannot_be_read_is_lost_for_backfill() {
        let big = vec![b' '; MAX_RECORD_FRAME + 1];
        assert!(matches!(classify(&big), Frame::Lost(r) if r.contains("over the")));
        let mut junk = b"{\"code\":30000,\"data\":{\"signTime\":1,\"x\":\"".to_vec();
        junk.resize(MAX_RECORD_FRAME + 10, b'a');
        assert!(
            matches!(classify(&junk), Frame::Lost(_)),
            "cut off mid-string"
        );
    }

    /// A real unit's push with a `signAvatar` of `photo_len` base64 characters, cJSON layout.
    fn push_with_photo(photo_len: usize, extra: &str) -> Vec<u8> {
        format!(
            "{{\n\t\"code\":\t30000,\n\t\"message\":\t\"push\u{a0}record\",\n\t\"data\":\t{{\n\t\t\"id\":\t42,\n\t\t\"signTime\":\t1600972860,\n\t\t\"name\":\t\"Ada\",{extra}\n\t\t\"signAvatar\":\t\"/9j/{}\"\n\t}}\n}}",
            "A".repeat(photo_len)
        )
        .into_bytes()
    }

    #[test]
    fn a_record_with_a_five_megabyte_photo_keeps_its_fields_without_the_photo() {
        let frame = push_with_photo(5 << 20, "");
        match classify(&frame) {
            Frame::Reduced { data, dropped } => {
                assert_eq!(dropped, vec!["signAvatar".to_string()]);
                assert_eq!(data["id"], 42);
                assert_eq!(data["name"], "Ada");
                let mut rec = record::normalize("t", &data, Source::Live).expect("normalizes");
                rec.mark_truncated(&dropped);
                assert_eq!(rec.json()["snapshot"], false);
                assert_eq!(rec.json()["truncated"], true);
                assert_eq!(rec.event_id(), "t-1600972860-42");
            }
            other => panic!("expected a reduced record, got {other:?}"),
        }
    }

    #[test]
    fn an_oversized_frame_keeps_a_photo_that_fits_and_drops_the_long_text() {
        let extra = format!("\n\t\t\"description\":\t\"{}\",", "d".repeat(1 << 20));
        let frame = push_with_photo(40_000, &extra);
        match classify(&frame) {
            Frame::Reduced { data, dropped } => {
                assert_eq!(dropped, vec!["description".to_string()]);
                assert!(data["signAvatar"]
                    .as_str()
                    .is_some_and(|p| p.len() > 40_000));
            }
            other => panic!("expected a reduced record, got {other:?}"),
        }
    }

    #[test]
    fn an_oversized_frame_that_is_not_a_push_is_just_another_code() {
        let frame = format!(
            r#"{{"code":20000,"pad":"{}"}}"#,
            "p".repeat(MAX_RECORD_FRAME)
        );
        assert_eq!(classify(frame.as_bytes()), Frame::Other(20000));
    }

    #[test]
    fn a_preview_is_short_and_printable() {
        let p = preview(b"{\n\t\"code\":\t1\x00\x01 and a long tail that goes on and on and on and on and on and on and on and on");
        assert!(p.len() <= 80 && !p.chars().any(char::is_control), "{p}");
    }
}
