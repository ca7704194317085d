//! The writer loop's decisions, without IO: which inbox it takes from, when it ends, when the
//! pipeline has fallen quiet (memory given back, the oldest entry's age read again), and when a
//! failing spool is given up. Pure, on a clock the caller passes (`now`), so each rule is a plain
//! `#[test]`.

use std::time::{Duration, Instant};

/// Commands after which a quiet writer gives freed memory back. Quiet: a wait that brought
/// nothing, or an empty queue and a batch of a few commands (a trickle of watermarks and prunes
/// after a drain must not keep the drain's memory forever).
pub const TRIM_AFTER: u64 = 256;
pub const QUIET_BATCH: usize = 4;
/// How often a busy writer reads the oldest queued entry again.
pub const OLDEST_EVERY: Duration = Duration::from_secs(1);
/// How long a spool that fails for a reason other than room may keep failing (sled's errors are
/// sticky: only opening it again, in a fresh process, clears them).
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// What a wait for work brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Commands from ingest and backfill; 0: every sender is gone.
    Inputs(usize),
    /// Commands from the publisher; 0: it is gone.
    Acks(usize),
    /// The wait ended without work (a beat, or a retry of held records).
    Nothing,
}

/// What to do after a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// The pipeline fell quiet.
    pub quiet: bool,
    /// Give freed memory back to the system now.
    pub trim: bool,
}

#[derive(Debug)]
pub struct Pace {
    inputs_open: bool,
    acks_open: bool,
    since_trim: u64,
    oldest_stale: bool,
    oldest_at: Instant,
}

impl Pace {
    pub fn new(now: Instant) -> Pace {
        Pace {
            inputs_open: true,
            acks_open: true,
            since_trim: 0,
            oldest_stale: false,
            oldest_at: now,
        }
    }

    /// Whether to take inputs: not while records are held, since nothing may pass them.
    pub fn taking(&self, holding: bool) -> bool {
        self.inputs_open && !holding
    }

    pub fn acks_open(&self) -> bool {
        self.acks_open
    }

    /// Every sender is gone: the writer flushes and ends (records still held are given up:
    /// the terminal keeps them and backfill fetches them after the restart).
    pub fn ended(&self) -> bool {
        !self.inputs_open && !self.acks_open
    }

    /// Takes what a wait brought.
    pub fn got(&mut self, got: Got, spool_empty: bool) -> Step {
        let quiet = match got {
            Got::Inputs(0) => {
                self.inputs_open = false;
                false
            }
            Got::Acks(0) => {
                self.acks_open = false;
                false
            }
            Got::Inputs(n) | Got::Acks(n) => {
                self.since_trim += n as u64;
                n <= QUIET_BATCH && spool_empty
            }
            Got::Nothing => true,
        };
        let trim = quiet && self.since_trim >= TRIM_AFTER;
        if trim {
            self.since_trim = 0;
        }
        Step { quiet, trim }
    }

    /// After the commands were applied: whether to read the oldest entry's age again now (at
    /// most once per [`OLDEST_EVERY`] while busy, and once more when it falls quiet).
    pub fn read_oldest(&mut self, changed: bool, quiet: bool, now: Instant) -> bool {
        self.oldest_stale |= changed;
        let due = quiet || now.saturating_duration_since(self.oldest_at) >= OLDEST_EVERY;
        if !(self.oldest_stale && due) {
            return false;
        }
        self.oldest_stale = false;
        self.oldest_at = now;
        true
    }
}

/// Whether the spool still takes records, and when to give it up.
#[derive(Debug, Default)]
pub struct Health {
    failing_since: Option<Instant>,
    /// Why the spool cannot go on at all (a failed flush): the writer ends at once.
    fatal: Option<String>,
    last_error: String,
}

impl Health {
    /// A record or watermark could not be stored and waits. `full`: for want of room, which
    /// deletions cure (no clock runs); otherwise the spool fails, and after [`GIVE_UP`] the
    /// writer ends. `true` when the spool was not failing (to be said).
    pub fn failed(&mut self, error: String, full: bool, now: Instant) -> bool {
        let first = self.failing_since.is_none();
        if !full {
            self.failing_since.get_or_insert(now);
        }
        self.last_error = error;
        first
    }

    /// Something was stored. `true` when that ends a failing episode (to be said).
    pub fn stored(&mut self) -> bool {
        self.failing_since.take().is_some()
    }

    /// A flush failed: the spool cannot go on (the first reason is kept).
    pub fn fatal(&mut self, why: impl FnOnce() -> String) {
        self.fatal.get_or_insert_with(why);
    }

    /// Why the writer ends now, if it does.
    pub fn given_up(&self, now: Instant) -> Option<String> {
        if let Some(why) = &self.fatal {
            return Some(why.clone());
        }
        let since = self.failing_since?;
        (now.saturating_duration_since(since) >= GIVE_UP).then(|| {
            format!(
                "the spool has failed for {}: {}",
                humantime::format_duration(GIVE_UP),
                self.last_error
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_writer_takes_no_inputs_while_records_are_held() {
        let p = Pace::new(Instant::now());
        assert!(p.taking(false));
        assert!(!p.taking(true));
    }

    #[test]
    fn it_ends_once_both_inboxes_are_closed_and_not_before() {
        let mut p = Pace::new(Instant::now());
        assert!(!p.ended());
        p.got(Got::Inputs(0), true);
        assert!(!p.taking(false), "inputs closed");
        assert!(p.acks_open() && !p.ended());
        p.got(Got::Acks(0), true);
        assert!(!p.acks_open() && p.ended());
    }

    #[test]
    fn memory_is_given_back_when_it_falls_quiet_after_enough_work() {
        let mut p = Pace::new(Instant::now());
        assert_eq!(
            p.got(Got::Nothing, true),
            Step {
                quiet: true,
                trim: false
            },
            "quiet, but no work since the last trim"
        );
        assert_eq!(p.got(Got::Inputs(200), false), Step::default());
        assert_eq!(p.got(Got::Acks(55), false), Step::default(), "255: busy");
        assert_eq!(
            p.got(Got::Acks(1), true),
            Step {
                quiet: true,
                trim: true
            },
            "256 commands, a small batch, an empty queue"
        );
        assert_eq!(
            p.got(Got::Nothing, true),
            Step {
                quiet: true,
                trim: false
            },
            "once"
        );
    }

    #[test]
    fn a_small_batch_is_quiet_only_with_an_empty_queue_and_a_large_one_never() {
        let mut p = Pace::new(Instant::now());
        assert!(!p.got(Got::Inputs(QUIET_BATCH), false).quiet);
        assert!(p.got(Got::Inputs(QUIET_BATCH), true).quiet);
        assert!(!p.got(Got::Acks(QUIET_BATCH + 1), true).quiet);
        assert!(
            !p.got(Got::Inputs(0), true).quiet,
            "a closed inbox is not quiet"
        );
    }

    #[test]
    fn the_oldest_entry_is_read_at_most_once_a_second_while_busy_and_once_more_when_quiet() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert!(!p.read_oldest(false, true, t0 + S), "nothing changed");
        assert!(!p.read_oldest(true, false, t0 + S / 2), "busy: not yet");
        assert!(p.read_oldest(false, false, t0 + S), "a second on");
        assert!(
            !p.read_oldest(false, false, t0 + 3 * S),
            "read: nothing new"
        );
        assert!(!p.read_oldest(true, false, t0 + S + S / 2));
        assert!(p.read_oldest(false, true, t0 + S + S / 2), "quiet: at once");
    }

    #[test]
    fn a_failing_spool_is_given_up_after_ten_seconds_and_not_before() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(h.failed("io error".into(), false, t0), "said");
        assert!(
            !h.failed("io error again".into(), false, t0 + 5 * S),
            "once"
        );
        assert_eq!(h.given_up(t0 + GIVE_UP - S), None);
        let why = h.given_up(t0 + GIVE_UP).expect("given up");
        assert!(
            why.contains("10s") && why.contains("io error again"),
            "{why}"
        );
    }

    #[test]
    fn a_full_spool_waits_without_a_clock_and_a_store_ends_the_episode() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(h.failed("no room".into(), true, t0));
        assert_eq!(h.given_up(t0 + 100 * GIVE_UP), None, "deletions cure it");
        assert!(!h.stored(), "a full spool was not failing");
        h.failed("io error".into(), false, t0);
        assert!(h.stored(), "the episode ends, said");
        assert_eq!(h.given_up(t0 + GIVE_UP), None, "and its clock with it");
    }

    #[test]
    fn a_failed_flush_ends_the_writer_at_once_with_its_first_reason() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.fatal(|| "fsync failed".into());
        h.fatal(|| "later".into());
        assert_eq!(h.given_up(t0).as_deref(), Some("fsync failed"));
    }
}
