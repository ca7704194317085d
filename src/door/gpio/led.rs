//! The status LED: one glance in the cupboard tells an installer whether the bridge is healthy.
//!
//! Steady on: every terminal link and the broker are up. Slow blink: something is down
//! (degraded). Fast blink: records are piling up in the spool (the broker has not taken them for a
//! while, or the spool is half full) — the state that ends in lost photos if nobody comes.
//! The decision is pure ([`pattern`]); [`run_led`] only turns it into levels.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// An output pin, already set up (direction, active level).
pub trait OutputPin: Send {
    /// `true` lights the LED.
    fn set(&mut self, lit: bool);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub broker_up: bool,
    pub links_up: usize,
    pub links: usize,
    pub spool_filling: bool,
}

/// The health the LED shows, read from the spool's counters and the session's stats.
pub fn health(
    spool: &crate::pipeline::spool::Spool,
    stats: &crate::stats::Stats,
    links: usize,
    max_bytes: u64,
) -> Health {
    use std::sync::atomic::Ordering::Relaxed;
    Health {
        broker_up: stats.broker_up.load(Relaxed),
        links_up: usize::try_from(stats.links_up.load(Relaxed)).unwrap_or(usize::MAX),
        links,
        // A failing disk blinks like a filling spool: both need a person, and soon.
        spool_filling: spool.is_failing()
            || spool_filling(spool.bytes(), max_bytes, spool.oldest_age()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    On,
    SlowBlink,
    FastBlink,
}

/// A record waiting longer than this means the broker is not taking records.
pub const FILLING_AFTER: Duration = Duration::from_secs(60);

/// Is the spool filling up: a backlog a minute old, or half the cap used?
pub fn spool_filling(bytes: u64, max_bytes: u64, oldest: Option<Duration>) -> bool {
    bytes.saturating_mul(2) >= max_bytes || oldest.is_some_and(|a| a >= FILLING_AFTER)
}

pub fn pattern(h: &Health) -> Pattern {
    if h.spool_filling {
        Pattern::FastBlink
    } else if !h.broker_up || h.links_up < h.links {
        Pattern::SlowBlink
    } else {
        Pattern::On
    }
}

impl Pattern {
    /// Time between toggles; `None` for steady.
    pub fn half_period(self) -> Option<Duration> {
        match self {
            Pattern::On => None,
            Pattern::SlowBlink => Some(Duration::from_millis(1000)),
            Pattern::FastBlink => Some(Duration::from_millis(150)),
        }
    }
}

/// How often a steady LED re-reads the health.
const STEADY_POLL: Duration = Duration::from_millis(500);

/// Drives the LED from `health` until shutdown, then turns it off (a dark LED means "not
/// running", which is then true).
pub async fn run_led(
    mut pin: Box<dyn OutputPin>,
    health: impl Fn() -> Health + Send,
    shutdown: CancellationToken,
) {
    let mut lit = false;
    pin.set(false);
    let mut last = None;
    loop {
        let p = pattern(&health());
        if last != Some(p) {
            tracing::debug!(pattern = ?p, "status LED");
            last = Some(p);
        }
        let (want, wait) = p
            .half_period()
            .map_or((true, STEADY_POLL), |half| (!lit, half));
        if want != lit {
            pin.set(want);
            lit = want;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                pin.set(false);
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        Health {
            broker_up: true,
            links_up: 2,
            links: 2,
            spool_filling: false,
        }
    }

    #[test]
    fn everything_up_is_steady_on() {
        assert_eq!(pattern(&healthy()), Pattern::On);
        assert_eq!(Pattern::On.half_period(), None);
    }

    #[test]
    fn a_terminal_link_down_blinks_slowly() {
        let h = Health {
            links_up: 1,
            ..healthy()
        };
        assert_eq!(pattern(&h), Pattern::SlowBlink);
    }

    #[test]
    fn the_broker_down_blinks_slowly() {
        let h = Health {
            broker_up: false,
            ..healthy()
        };
        assert_eq!(pattern(&h), Pattern::SlowBlink);
    }

    #[test]
    fn a_filling_spool_blinks_fast_even_when_other_things_are_down() {
        let h = Health {
            broker_up: false,
            spool_filling: true,
            ..healthy()
        };
        assert_eq!(pattern(&h), Pattern::FastBlink);
        assert!(
            Pattern::FastBlink.half_period().expect("blinks")
                < Pattern::SlowBlink.half_period().expect("blinks")
        );
    }

    #[test]
    fn the_spool_is_filling_when_half_full_or_a_minute_behind() {
        let mib = 1 << 20;
        assert!(!spool_filling(0, 512 * mib, None));
        assert!(!spool_filling(
            10 * mib,
            512 * mib,
            Some(Duration::from_secs(5))
        ));
        assert!(spool_filling(256 * mib, 512 * mib, None));
        assert!(spool_filling(mib, 512 * mib, Some(Duration::from_secs(60))));
    }

    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<bool>>>);
    impl OutputPin for Recorder {
        fn set(&mut self, lit: bool) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(lit);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_blinking_led_toggles_and_goes_dark_on_shutdown() {
        let levels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_led(
            Box::new(Recorder(levels.clone())),
            || Health {
                broker_up: false,
                ..healthy()
            },
            stop.clone(),
        ));
        // Paused time: three slow half-periods pass instantly and deterministically.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.cancel();
        task.await.expect("led task");
        let seen = levels.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(seen, vec![false, true, false, true, false]);
    }
}
