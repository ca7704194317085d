//! Log lines that outside input can repeat, at most one per kind per interval.
//!
//! A terminal that sends garbage, or a hostile one, must not fill the SD card through the
//! journal: the first line of a kind is written, the next ones within the interval are only
//! counted, and the next line written says how many it stands for.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// How often a line of one kind may be written.
pub const EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    kinds: HashMap<&'static str, Kind>,
}

#[derive(Debug)]
struct Kind {
    written: Instant,
    held: u64,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(EVERY)
    }
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            kinds: HashMap::new(),
        }
    }

    /// `Some(n)` when a line of `kind` is to be written now, `n` being how many were held back
    /// since the last one written; `None` when this one is only counted.
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some(k) if now.saturating_duration_since(k.written) < self.every => {
                k.held += 1;
                None
            }
            Some(k) => {
                let held = std::mem::take(&mut k.held);
                k.written = now;
                Some(held)
            }
            None => {
                self.kinds.insert(
                    kind,
                    Kind {
                        written: now,
                        held: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

impl Throttle {
    /// Kinds whose interval has passed with lines held back, and how many: said in one line
    /// each, so a flood that stopped is still counted. Each is then as if just written.
    pub fn due(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for (kind, k) in &mut self.kinds {
            if k.held > 0 && now.saturating_duration_since(k.written) >= self.every {
                out.push((*kind, std::mem::take(&mut k.held)));
                k.written = now;
            }
        }
        out.sort_unstable();
        out
    }
}

/// The tail of a throttled line: empty, or " (and 41 more like it since the last line)".
pub fn more(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" (and {held} more like it since the last line)")
    }
}

/// Whether an error is new: an ERROR line is written once per episode (until it changes or
/// things work again), not on every retry.
#[derive(Debug, Default)]
pub struct Episode(Option<String>);

impl Episode {
    /// True when `what` differs from the error last written (and remembers it).
    pub fn new_error(&mut self, what: &str) -> bool {
        if self.0.as_deref() == Some(what) {
            return false;
        }
        self.0 = Some(what.to_string());
        true
    }

    /// Things work again: the next error is a new episode.
    pub fn over(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_of_a_kind_is_written_and_the_rest_of_the_interval_counted() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow("frame", t0), Some(0));
        for i in 1..=41 {
            assert_eq!(t.allow("frame", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.allow("frame", t0 + Duration::from_secs(10)), Some(41));
        assert_eq!(t.allow("frame", t0 + Duration::from_secs(11)), None);
        assert_eq!(t.allow("frame", t0 + Duration::from_secs(30)), Some(1));
    }

    #[test]
    fn a_flood_that_stopped_is_still_counted_once_its_interval_is_over() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        t.allow("frame", t0);
        t.allow("frame", t0);
        t.allow("frame", t0);
        t.allow("record", t0);
        assert_eq!(t.due(t0 + Duration::from_secs(9)), vec![]);
        assert_eq!(t.due(t0 + Duration::from_secs(10)), vec![("frame", 2)]);
        assert_eq!(t.due(t0 + Duration::from_secs(30)), vec![], "said once");
        assert_eq!(t.allow("frame", t0 + Duration::from_secs(31)), Some(0));
    }

    #[test]
    fn kinds_are_counted_apart() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow("frame", t0), Some(0));
        assert_eq!(t.allow("record", t0), Some(0));
        assert_eq!(t.allow("frame", t0), None);
    }

    #[test]
    fn the_count_reads_in_words_only_when_there_is_one() {
        assert_eq!(more(0), "");
        assert_eq!(more(3), " (and 3 more like it since the last line)");
    }

    #[test]
    fn an_error_is_written_once_per_episode() {
        let mut e = Episode::default();
        assert!(e.new_error("refused"));
        assert!(!e.new_error("refused"));
        assert!(e.new_error("timed out"), "a different error is news");
        e.over();
        assert!(e.new_error("timed out"), "after it worked, again");
    }
}
