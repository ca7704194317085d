//! systemd's watchdog (`WatchdogSec=`), fed only while every supervised task is alive and the
//! loops that move records make progress.
//!
//! A live process is not the same as a working one: a loop stuck on a hung disk or a lost wakeup
//! leaves the process running and the door's records going nowhere. Each such loop beats a
//! [`Heartbeat`] on every pass and on a short tick when idle; [`run`] sends `WATCHDOG=1` only
//! while every heartbeat is recent. When one stops, systemd kills and restarts the service, and
//! the spool hands everything over to the next run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::runtime::supervisor::Supervisor;

/// How often an idle loop beats.
pub const BEAT: Duration = Duration::from_secs(1);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

#[derive(Clone)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// A heartbeat nobody watches (for loops run outside the daemon, e.g. in tests).
    pub fn detached() -> Heartbeat {
        Heartbeat(Arc::new(AtomicU64::new(now_ms())))
    }

    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }
}

/// The loops the watchdog watches.
#[derive(Clone, Default)]
pub struct Beats(Arc<Mutex<Vec<(&'static str, Heartbeat)>>>);

impl Beats {
    pub fn register(&self, name: &'static str) -> Heartbeat {
        let h = Heartbeat::detached();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, h.clone()));
        h
    }

    fn stale(&self, max_age: Duration) -> Vec<&'static str> {
        let now = now_ms();
        let beats: Vec<(&'static str, u64)> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, h)| (*n, h.0.load(Ordering::Relaxed)))
            .collect();
        stale(&beats, now, max_age)
    }
}

/// The loops whose last beat (ms) is older than `max_age` at `now` (ms).
pub fn stale(beats: &[(&'static str, u64)], now: u64, max_age: Duration) -> Vec<&'static str> {
    beats
        .iter()
        .filter(|(_, last)| now.saturating_sub(*last) > max_age.as_millis() as u64)
        .map(|(n, _)| *n)
        .collect()
}

/// Feeds systemd's watchdog every `period / 2` while every loop beat within `period / 2`.
/// Returns at once when systemd asked for no watchdog.
pub async fn run(
    beats: Beats,
    tasks: Supervisor,
    period: Option<Duration>,
    shutdown: CancellationToken,
) {
    let Some(period) = period else { return };
    let half = period / 2;
    tracing::debug!(?period, "systemd watchdog enabled");
    let mut reported = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(half) => {}
        }
        let stuck = beats.stale(half.max(BEAT * 3));
        if stuck.is_empty() && tasks.healthy() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            reported = false;
        } else if !reported && !stuck.is_empty() {
            tracing::error!(
                loops = ?stuck,
                "a main loop stopped making progress; no longer feeding the systemd watchdog so the service is restarted"
            );
            reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_beats_are_healthy() {
        let s = stale(
            &[("publisher", 9_500), ("spool", 9_900)],
            10_000,
            Duration::from_secs(1),
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_loop_that_stopped_beating_is_named() {
        let s = stale(
            &[("publisher", 2_000), ("spool", 9_900)],
            10_000,
            Duration::from_secs(5),
        );
        assert_eq!(s, vec!["publisher"]);
    }

    #[test]
    fn a_registered_heartbeat_starts_fresh_and_goes_stale_when_it_stops() {
        let beats = Beats::default();
        let h = beats.register("spool");
        assert!(beats.stale(Duration::from_secs(60)).is_empty());
        h.0.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(beats.stale(Duration::from_millis(1)), vec!["spool"]);
        h.beat();
        assert!(beats.stale(Duration::from_secs(60)).is_empty());
    }
}
