//! The capture photos of recent stranger records, kept in memory for `admit` and `block` by
//! `event_id`. Pure: the router owns it and passes the time in.
//!
//! These are photos of people who did not agree to be kept: each goes after `people.admit_window`
//! (counted from when the bridge published its record), none is written to disk, and together
//! they never hold more than [`MAX_BYTES`] (the oldest go first).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// About 190 captures of the terminal's usual 43 KB.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
// A busy quarter hour of strangers fits, and the bound stays a few MiB on a Pi.
const _: () = assert!(MAX_BYTES / 43_000 >= 150 && MAX_BYTES <= 16 << 20);

struct Kept {
    terminal: String,
    event_id: String,
    jpeg: Vec<u8>,
    at: Instant,
}

pub struct Captures {
    window: Duration,
    max_bytes: usize,
    bytes: usize,
    /// Oldest first.
    kept: VecDeque<Kept>,
}

impl Captures {
    pub fn new(window: Duration, max_bytes: usize) -> Captures {
        Captures {
            window,
            max_bytes,
            bytes: 0,
            kept: VecDeque::new(),
        }
    }

    /// Keeps a stranger's capture as of `now`; the same record published again (after a
    /// reconnect) replaces its earlier copy. A photo larger than the whole budget is not kept.
    pub fn keep(&mut self, terminal: &str, event_id: &str, jpeg: Vec<u8>, now: Instant) {
        self.forget(terminal, event_id);
        if jpeg.len() > self.max_bytes {
            return;
        }
        self.bytes += jpeg.len();
        self.kept.push_back(Kept {
            terminal: terminal.to_string(),
            event_id: event_id.to_string(),
            jpeg,
            at: now,
        });
        self.expire(now);
        while self.bytes > self.max_bytes {
            self.pop_oldest();
        }
    }

    /// The capture of `event_id` on `terminal`, if it is still kept at `now`.
    pub fn photo(&mut self, terminal: &str, event_id: &str, now: Instant) -> Option<&[u8]> {
        self.expire(now);
        self.kept
            .iter()
            .find(|k| k.terminal == terminal && k.event_id == event_id)
            .map(|k| k.jpeg.as_slice())
    }

    /// Drops every capture older than the window at `now`.
    pub fn expire(&mut self, now: Instant) {
        while self
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) >= self.window)
        {
            self.pop_oldest();
        }
    }

    /// When the oldest capture goes, for the owner's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.kept.front().map(|k| k.at + self.window)
    }

    fn forget(&mut self, terminal: &str, event_id: &str) {
        if let Some(i) = self
            .kept
            .iter()
            .position(|k| k.terminal == terminal && k.event_id == event_id)
        {
            if let Some(k) = self.kept.remove(i) {
                self.bytes -= k.jpeg.len();
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(k) = self.kept.pop_front() {
            self.bytes -= k.jpeg.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(900);

    #[test]
    fn a_capture_is_found_by_terminal_and_event_id_within_the_window() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 1000);
        c.keep("door", "e1", vec![1; 10], t0);
        assert_eq!(
            c.photo("door", "e1", t0 + Duration::from_secs(899)),
            Some(&[1u8; 10][..])
        );
        assert_eq!(c.photo("gate", "e1", t0), None, "another terminal's record");
        assert_eq!(c.photo("door", "e2", t0), None);
    }

    #[test]
    fn a_capture_is_gone_once_the_window_is_over() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 1000);
        c.keep("door", "e1", vec![1; 10], t0);
        assert_eq!(c.next_expiry(), Some(t0 + WINDOW));
        assert_eq!(c.photo("door", "e1", t0 + WINDOW), None);
        assert_eq!((c.kept.len(), c.bytes), (0, 0), "and its bytes with it");
    }

    #[test]
    fn the_oldest_captures_go_first_when_the_bytes_are_spent() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 25);
        for (i, e) in ["e1", "e2", "e3"].into_iter().enumerate() {
            c.keep("door", e, vec![0; 10], t0 + Duration::from_secs(i as u64));
        }
        assert_eq!((c.kept.len(), c.bytes), (2, 20));
        assert_eq!(c.photo("door", "e1", t0), None);
        assert!(c.photo("door", "e3", t0).is_some());
    }

    #[test]
    fn a_record_published_again_is_kept_once() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 1000);
        c.keep("door", "e1", vec![1; 10], t0);
        c.keep("door", "e1", vec![2; 10], t0 + Duration::from_secs(5));
        assert_eq!((c.kept.len(), c.bytes), (1, 10));
        assert_eq!(c.photo("door", "e1", t0), Some(&[2u8; 10][..]));
    }

    #[test]
    fn a_photo_larger_than_the_budget_is_not_kept_and_evicts_nothing() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 10);
        c.keep("door", "e1", vec![1; 3], t0);
        c.keep("door", "e2", vec![1; 11], t0);
        assert_eq!((c.kept.len(), c.bytes), (1, 3));
        assert!(c.photo("door", "e1", t0).is_some());
    }

    #[test]
    fn captures_that_fill_the_budget_exactly_are_all_kept() {
        let t0 = Instant::now();
        let mut c = Captures::new(WINDOW, 20);
        c.keep("door", "e1", vec![1; 10], t0);
        c.keep("door", "e2", vec![1; 10], t0);
        assert_eq!((c.kept.len(), c.bytes), (2, 20));
        let mut one = Captures::new(WINDOW, 10);
        one.keep("door", "e1", vec![1; 10], t0);
        assert_eq!(one.kept.len(), 1, "a photo exactly the budget is kept");
    }
}
