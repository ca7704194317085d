//! The terminals' clocks as this machine sees them.
//!
//! A terminal dates each record by its own clock, and cheap terminals' clocks jump (a bad NTP
//! answer, a reset RTC). Every record is published whatever its date; what a wrong date must
//! never do is steer the bridge: move the backfill watermark past this machine's now, make a
//! backfill window that ends before it starts, or decide whether a recognition is fresh.
//!
//! - **Watermark.** A record dated more than [`ALLOWED_SKEW`] past this machine's now does not
//!   move it ([`watermark_limit`]); one already stored past that is not trusted.
//! - **Windows.** Backfill asks this machine's span (watermark to now, plus the skew and the
//!   margin) and, when the last live record showed the terminal's clock off, the gap as the
//!   terminal's clock counts it ([`windows`]).
//! - **Offset.** Each live record gives the terminal's offset (its date minus when it arrived);
//!   beyond the skew, the episode is logged once, counted, shown in diagnostics, and the
//!   terminal's clock is set at once (when this machine's clock is synchronized).
//!
//! While this machine's own clock is not synchronized (a Pi has no RTC: it boots with the time
//! it last saved), the same rules hold with its wrong now. That errs on the safe side: the
//! watermark moves less (a later backfill fetches more, deduped), the window from the terminal's
//! clock covers the gap, and the terminal's clock is never set from ours (`sync_time` waits for
//! synchronization). The log says which clock is suspect.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How far a terminal's clock may be from ours before it counts as wrong: the terminal's own
/// window for signed requests (the API document's 5 minutes).
pub const ALLOWED_SKEW: u64 = 300;

/// The shortest time between two syncs asked because the terminal's clock was seen off: a
/// terminal that refuses the sync must not be asked for every record.
pub const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// The terminal's date minus this machine's, in seconds (positive: the terminal is ahead).
pub fn offset(sign_time: u64, now: u64) -> i64 {
    let d = i128::from(sign_time) - i128::from(now);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// True when an offset is beyond what a terminal's clock may be off by.
pub fn is_off(offset: i64) -> bool {
    offset.unsigned_abs() > ALLOWED_SKEW
}

/// The newest record date that may move a backfill watermark now.
pub fn watermark_limit(now: u64) -> u64 {
    now.saturating_add(ALLOWED_SKEW)
}

/// A live record's date and when it arrived (both Unix seconds): the terminal's clock as last
/// seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub sign_time: u64,
    pub received: u64,
}

impl Sample {
    pub fn offset(&self) -> i64 {
        offset(self.sign_time, self.received)
    }
}

/// The backfill windows `[start, end]` (Unix seconds, terminal dates) for a backfill `now`,
/// oldest first, not overlapping.
///
/// This machine's span runs from the watermark less the margin (or `first` back, without a
/// watermark or with one past [`watermark_limit`]) to now plus the skew and the margin. When the
/// terminal's last live record showed its clock off, the gap as that clock counts it is asked
/// too: from that record's date, as long as the time since it arrived.
pub fn windows(
    watermark: Option<u64>,
    last_live: Option<Sample>,
    now: u64,
    margin: Duration,
    first: Duration,
) -> Vec<(u64, u64)> {
    let margin = margin.as_secs();
    let end = watermark_limit(now).saturating_add(margin);
    let start = match watermark.filter(|&w| w <= watermark_limit(now)) {
        Some(w) => w.saturating_sub(margin),
        None => now.saturating_sub(first.as_secs()),
    };
    let mut out = vec![(start.min(end), end)];
    if let Some(s) = last_live.filter(|s| is_off(s.offset())) {
        let since = now.saturating_sub(s.received);
        let theirs = (
            s.sign_time.saturating_sub(margin),
            s.sign_time
                .saturating_add(since)
                .saturating_add(ALLOWED_SKEW)
                .saturating_add(margin),
        );
        out.push(theirs);
    }
    merge(out)
}

/// Sorts windows and joins those that overlap or touch.
fn merge(mut ws: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ws.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ws.len());
    for (a, b) in ws {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// What a live record says about its terminal's clock, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Within the skew, as before.
    Fine,
    /// Off, as before: counted, not logged again.
    StillOff,
    /// Off now, fine before (or first seen): log once, sync the terminal.
    WentOff(i64),
    /// Fine now, off before.
    BackInRange,
}

/// One terminal's clock: the last live sample, the episode, the counts diagnostics show.
#[derive(Default)]
pub struct TerminalClock {
    last_live: Mutex<Option<Sample>>,
    /// The last live record's offset (seconds); 0 before the first.
    offset: AtomicI64,
    /// Records dated outside the skew (live ones off, any dated past now plus the skew).
    out_of_range: AtomicU64,
    /// Whether the clock is off now (the episode's state).
    off: AtomicBool,
    /// When (Unix seconds) a sync was last asked because the clock was off.
    last_resync: AtomicU64,
    /// Wakes the terminal's time-sync task: its clock was seen off.
    resync: tokio::sync::Notify,
}

impl TerminalClock {
    /// Takes a live record's date, `now` being when it arrived.
    pub fn live(&self, sign_time: u64, now: u64) -> Seen {
        let sample = Sample {
            sign_time,
            received: now,
        };
        if let Ok(mut last) = self.last_live.lock() {
            *last = Some(sample);
        }
        let o = sample.offset();
        self.offset.store(o, Ordering::Relaxed);
        let off_now = is_off(o);
        if off_now {
            self.out_of_range.fetch_add(1, Ordering::Relaxed);
        }
        match (self.off.swap(off_now, Ordering::Relaxed), off_now) {
            (false, false) => Seen::Fine,
            (true, true) => Seen::StillOff,
            (false, true) => Seen::WentOff(o),
            (true, false) => Seen::BackInRange,
        }
    }

    /// Takes a fetched record's date: only a date past now plus the skew says anything (a
    /// fetched record may be old). True for the first one of a backfill pass the caller logs.
    pub fn fetched(&self, sign_time: u64, now: u64) -> bool {
        let ahead = sign_time > watermark_limit(now);
        if ahead {
            self.out_of_range.fetch_add(1, Ordering::Relaxed);
        }
        ahead
    }

    /// The last live sample, for the backfill windows.
    pub fn last_live(&self) -> Option<Sample> {
        self.last_live.lock().ok().and_then(|s| *s)
    }

    /// True when a sync may be asked now for a clock seen off (at most every
    /// [`RESYNC_EVERY`]); marks it asked.
    pub fn resync_due(&self, now: u64) -> bool {
        let last = self.last_resync.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < RESYNC_EVERY.as_secs() {
            return false;
        }
        self.last_resync.store(now.max(1), Ordering::Relaxed);
        true
    }

    /// Asks the time-sync task to set the terminal's clock now, if [`Self::resync_due`].
    pub fn ask_resync(&self, now: u64) {
        if self.resync_due(now) {
            // A permit is kept when the task is busy: it syncs once it looks again.
            self.resync.notify_one();
        }
    }

    /// Resolves when a sync was asked by [`Self::ask_resync`].
    pub async fn resync_asked(&self) {
        self.resync.notified().await
    }

    pub fn offset_s(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    pub fn out_of_range(&self) -> u64 {
        self.out_of_range.load(Ordering::Relaxed)
    }
}

/// Every terminal's clock, by terminal id; made once at start.
#[derive(Default)]
pub struct Clocks(BTreeMap<String, Arc<TerminalClock>>);

impl Clocks {
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> Clocks {
        Clocks(
            ids.into_iter()
                .map(|id| (id.to_string(), Arc::default()))
                .collect(),
        )
    }

    /// This terminal's clock (a fresh one for an id not configured, which only tests make).
    pub fn of(&self, id: &str) -> Arc<TerminalClock> {
        self.0.get(id).cloned().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<TerminalClock>)> {
        self.0.iter()
    }
}

/// An offset in words, before "this machine's" in a log line: "3h 20m ahead of", "12years
/// behind".
pub fn describe(offset: i64) -> String {
    let way = if offset >= 0 { "ahead of" } else { "behind" };
    let d = Duration::from_secs(offset.unsigned_abs());
    format!("{} {way}", humantime::format_duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Duration = Duration::from_secs(60);
    const FIRST: Duration = Duration::from_secs(3600);
    const NOW: u64 = 1_800_000_000;
    const Y2040: u64 = 2_208_988_800;

    #[test]
    fn the_window_runs_from_the_watermark_less_the_margin_to_now_plus_skew_and_margin() {
        assert_eq!(
            windows(Some(NOW - 1000), None, NOW, M, FIRST),
            vec![(NOW - 1060, NOW + ALLOWED_SKEW + 60)]
        );
    }

    #[test]
    fn without_a_watermark_the_window_looks_back_the_first_span() {
        assert_eq!(
            windows(None, None, NOW, M, FIRST),
            vec![(NOW - 3600, NOW + ALLOWED_SKEW + 60)]
        );
    }

    #[test]
    fn a_watermark_in_the_future_is_not_trusted_and_the_window_still_covers_now() {
        let w = windows(Some(Y2040), None, NOW, M, FIRST);
        assert_eq!(w, vec![(NOW - 3600, NOW + ALLOWED_SKEW + 60)]);
        let (start, end) = w[0];
        assert!(start <= NOW && NOW <= end, "a record made now is in it");
    }

    #[test]
    fn a_watermark_within_the_skew_is_trusted() {
        let w = windows(Some(NOW + 200), None, NOW, M, FIRST);
        assert_eq!(w, vec![(NOW + 140, NOW + ALLOWED_SKEW + 60)]);
    }

    #[test]
    fn a_window_never_ends_before_it_starts() {
        for wm in [
            None,
            Some(0),
            Some(NOW),
            Some(NOW + ALLOWED_SKEW),
            Some(u64::MAX),
        ] {
            for now in [0, 1, NOW, u64::MAX - 10] {
                for (a, b) in windows(wm, None, now, M, FIRST) {
                    assert!(a <= b, "{wm:?} {now}: ({a}, {b})");
                }
            }
        }
    }

    #[test]
    fn a_terminal_seen_behind_also_gets_the_gap_as_its_clock_counts_it() {
        // Its clock fell back to 2000; its last live record came 120 s ago.
        let last = Sample {
            sign_time: 946_684_800,
            received: NOW - 120,
        };
        let w = windows(Some(NOW - 130), Some(last), NOW, M, FIRST);
        assert_eq!(
            w,
            vec![
                (946_684_800 - 60, 946_684_800 + 120 + ALLOWED_SKEW + 60),
                (NOW - 190, NOW + ALLOWED_SKEW + 60),
            ]
        );
    }

    #[test]
    fn a_terminal_seen_ahead_also_gets_the_gap_as_its_clock_counts_it() {
        let last = Sample {
            sign_time: Y2040,
            received: NOW - 30,
        };
        let w = windows(Some(NOW - 30), Some(last), NOW, M, FIRST);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1], (Y2040 - 60, Y2040 + 30 + ALLOWED_SKEW + 60));
    }

    #[test]
    fn a_terminal_seen_within_the_skew_gets_one_window() {
        let last = Sample {
            sign_time: NOW - 100,
            received: NOW - 110,
        };
        assert_eq!(windows(Some(NOW - 100), Some(last), NOW, M, FIRST).len(), 1);
    }

    #[test]
    fn overlapping_windows_are_joined() {
        assert_eq!(merge(vec![(10, 20), (5, 12)]), vec![(5, 20)]);
        assert_eq!(merge(vec![(10, 20), (21, 30)]), vec![(10, 30)]);
        assert_eq!(merge(vec![(30, 40), (10, 20)]), vec![(10, 20), (30, 40)]);
    }

    #[test]
    fn the_watermark_limit_is_now_plus_the_skew() {
        assert_eq!(watermark_limit(NOW), NOW + 300);
        assert_eq!(watermark_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn offsets_are_signed_and_never_overflow() {
        assert_eq!(offset(100, 40), 60);
        assert_eq!(offset(40, 100), -60);
        assert_eq!(offset(u64::MAX, 0), i64::MAX);
        assert_eq!(offset(0, u64::MAX), i64::MIN);
    }

    #[test]
    fn five_minutes_off_is_fine_and_a_second_more_is_off() {
        assert!(!is_off(300) && !is_off(-300));
        assert!(is_off(301) && is_off(-301));
        assert!(is_off(i64::MIN));
    }

    #[test]
    fn a_clock_going_off_is_told_once_per_episode() {
        let c = TerminalClock::default();
        assert_eq!(c.live(NOW, NOW + 1), Seen::Fine);
        assert_eq!(
            c.live(Y2040, NOW + 2),
            Seen::WentOff(offset(Y2040, NOW + 2))
        );
        assert_eq!(c.live(Y2040 + 1, NOW + 3), Seen::StillOff);
        assert_eq!(c.live(NOW + 4, NOW + 4), Seen::BackInRange);
        assert_eq!(c.live(NOW + 5, NOW + 5), Seen::Fine);
        assert_eq!(c.live(0, NOW + 6), Seen::WentOff(offset(0, NOW + 6)));
        assert_eq!(c.out_of_range(), 3);
        assert_eq!(c.offset_s(), offset(0, NOW + 6));
    }

    #[test]
    fn a_fetched_record_counts_only_when_dated_past_now_and_the_skew() {
        let c = TerminalClock::default();
        assert!(!c.fetched(0, NOW), "an old record is just old");
        assert!(!c.fetched(NOW + 300, NOW));
        assert!(c.fetched(NOW + 301, NOW));
        assert_eq!(c.out_of_range(), 1);
    }

    #[test]
    fn a_resync_is_asked_at_most_once_a_minute() {
        let c = TerminalClock::default();
        assert!(c.resync_due(NOW));
        assert!(!c.resync_due(NOW + 59));
        assert!(c.resync_due(NOW + 60));
        // A clock of ours at 0 still asks the first time.
        assert!(TerminalClock::default().resync_due(0));
    }

    #[test]
    fn the_last_live_sample_is_kept_for_backfill() {
        let c = TerminalClock::default();
        assert_eq!(c.last_live(), None);
        c.live(Y2040, NOW);
        assert_eq!(
            c.last_live(),
            Some(Sample {
                sign_time: Y2040,
                received: NOW
            })
        );
    }

    #[test]
    fn an_offset_reads_in_words() {
        assert_eq!(describe(-7200), "2h behind");
        assert_eq!(describe(90), "1m 30s ahead of");
    }
}
