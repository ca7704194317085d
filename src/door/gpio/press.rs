//! From raw pin edges to presses: debounce and short/long classification. Pure: the caller
//! passes the times in, so tests drive it with made-up edges.
//!
//! Debounce is a lockout: the first edge counts at once (the door opens without waiting), edges
//! within `debounce` after it are contact bounce; when the lockout ends, the pin's last reported
//! level is taken again, so a tap shorter than the lockout still completes.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    Short,
    Long,
}

#[derive(Debug, Clone)]
pub struct ButtonLogic {
    debounce: Duration,
    long_after: Duration,
    /// Without a long-press action, a press acts on the way down instead of on release.
    long_enabled: bool,
    active_low: bool,
    pressed: bool,
    last_accepted: Option<Instant>,
    /// The level of an edge that came during the lockout.
    pending: Option<bool>,
    pressed_at: Option<Instant>,
    long_fired: bool,
}

impl ButtonLogic {
    pub fn new(
        debounce: Duration,
        long_after: Duration,
        long_enabled: bool,
        active_low: bool,
    ) -> ButtonLogic {
        ButtonLogic {
            debounce,
            long_after,
            long_enabled,
            active_low,
            pressed: false,
            last_accepted: None,
            pending: None,
            pressed_at: None,
            long_fired: false,
        }
    }

    /// The pin changed to `level` (true = high) at `at`.
    pub fn edge(&mut self, level: bool, at: Instant) -> Option<Press> {
        if let Some(last) = self.last_accepted {
            if at.saturating_duration_since(last) < self.debounce {
                self.pending = Some(level);
                return None;
            }
        }
        // A later edge supersedes a level left over from the lockout: it must not be taken again.
        self.pending = None;
        self.accept(level, at)
    }

    /// Time passed: ends a lockout, or makes a held press long.
    pub fn tick(&mut self, at: Instant) -> Option<Press> {
        if let (Some(level), Some(last)) = (self.pending, self.last_accepted) {
            if at.saturating_duration_since(last) >= self.debounce {
                self.pending = None;
                if let Some(p) = self.accept(level, at) {
                    return Some(p);
                }
            }
        }
        if self.pressed && self.long_enabled && !self.long_fired {
            if let Some(t0) = self.pressed_at {
                if at.saturating_duration_since(t0) >= self.long_after {
                    self.long_fired = true;
                    return Some(Press::Long);
                }
            }
        }
        None
    }

    /// When `tick` next has something to decide, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lockout = self
            .pending
            .and(self.last_accepted)
            .map(|t| t + self.debounce);
        let long = self
            .pressed_at
            .filter(|_| self.pressed && self.long_enabled && !self.long_fired)
            .map(|t0| t0 + self.long_after);
        lockout.into_iter().chain(long).min()
    }

    fn accept(&mut self, level: bool, at: Instant) -> Option<Press> {
        let pressed = level != self.active_low;
        if pressed == self.pressed {
            return None;
        }
        self.pressed = pressed;
        self.last_accepted = Some(at);
        if pressed {
            self.pressed_at = Some(at);
            self.long_fired = false;
            return if self.long_enabled {
                None
            } else {
                Some(Press::Short)
            };
        }
        let held = self
            .pressed_at
            .map(|t0| at.saturating_duration_since(t0))
            .unwrap_or_default();
        if !self.long_enabled || self.long_fired {
            None
        } else if held < self.long_after {
            Some(Press::Short)
        } else {
            // Held for the long-press time, but released before a tick could say so (a busy
            // task): it was a long press all the same, not nothing.
            Some(Press::Long)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const LOW: bool = false;
    const HIGH: bool = true;

    fn button(long: bool) -> ButtonLogic {
        ButtonLogic::new(50 * MS, 3000 * MS, long, true)
    }

    #[test]
    fn a_press_without_a_long_action_fires_on_the_way_down() {
        let mut b = button(false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), Some(Press::Short));
        assert_eq!(b.edge(HIGH, t0 + 200 * MS), None);
    }

    #[test]
    fn bounces_within_the_debounce_window_count_once() {
        let mut b = button(false);
        let t0 = Instant::now();
        let mut presses = 0;
        for (i, level) in [LOW, HIGH, LOW, HIGH, LOW].into_iter().enumerate() {
            presses += b.edge(level, t0 + (i as u32 * 8) * MS).is_some() as u32;
        }
        presses += b.tick(t0 + 100 * MS).is_some() as u32;
        presses += b.edge(HIGH, t0 + 400 * MS).is_some() as u32;
        assert_eq!(presses, 1);
    }

    #[test]
    fn a_short_press_with_a_long_action_fires_on_release() {
        let mut b = button(true);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), None);
        assert_eq!(b.tick(t0 + 100 * MS), None);
        assert_eq!(b.edge(HIGH, t0 + 300 * MS), Some(Press::Short));
    }

    #[test]
    fn a_hold_fires_the_long_press_while_still_held_and_nothing_on_release() {
        let mut b = button(true);
        let t0 = Instant::now();
        b.edge(LOW, t0);
        assert_eq!(b.next_deadline(), Some(t0 + 3000 * MS));
        assert_eq!(b.tick(t0 + 2999 * MS), None);
        assert_eq!(b.tick(t0 + 3000 * MS), Some(Press::Long));
        assert_eq!(b.tick(t0 + 3500 * MS), None, "fires once");
        assert_eq!(b.edge(HIGH, t0 + 4000 * MS), None);
    }

    #[test]
    fn a_tap_shorter_than_the_lockout_still_completes() {
        let mut b = button(true);
        let t0 = Instant::now();
        b.edge(LOW, t0);
        assert_eq!(b.edge(HIGH, t0 + 20 * MS), None, "inside the lockout");
        assert_eq!(b.next_deadline(), Some(t0 + 50 * MS));
        assert_eq!(b.tick(t0 + 50 * MS), Some(Press::Short));
    }

    #[test]
    fn an_active_high_button_presses_on_the_rising_edge() {
        let mut b = ButtonLogic::new(50 * MS, 3000 * MS, false, false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), None, "already released");
        assert_eq!(b.edge(HIGH, t0 + 100 * MS), Some(Press::Short));
    }

    #[test]
    fn a_repeated_level_is_not_a_new_press() {
        let mut b = button(false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), Some(Press::Short));
        assert_eq!(b.edge(LOW, t0 + 500 * MS), None);
    }

    #[test]
    fn an_edge_exactly_at_the_end_of_the_lockout_counts() {
        let mut b = button(false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), Some(Press::Short));
        assert_eq!(b.edge(HIGH, t0 + 50 * MS), None, "released");
        assert_eq!(b.next_deadline(), None, "nothing pending");
        assert_eq!(b.edge(LOW, t0 + 100 * MS), Some(Press::Short));
    }

    #[test]
    fn an_edge_one_millisecond_before_the_end_of_the_lockout_is_a_bounce() {
        let mut b = button(false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), Some(Press::Short));
        assert_eq!(b.edge(HIGH, t0 + 49 * MS), None);
        assert_eq!(b.next_deadline(), Some(t0 + 50 * MS));
        assert_eq!(b.tick(t0 + 49 * MS), None, "still locked out");
        assert_eq!(b.next_deadline(), Some(t0 + 50 * MS), "still pending");
        assert_eq!(b.tick(t0 + 50 * MS), None, "the release is taken");
        assert_eq!(b.edge(LOW, t0 + 100 * MS), Some(Press::Short));
    }

    #[test]
    fn a_bounce_left_over_from_the_lockout_does_not_press_again_after_a_later_edge() {
        // The task was busy: the lockout's tick came after the release edge.
        let mut b = button(true);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), None);
        assert_eq!(b.edge(HIGH, t0 + 5 * MS), None);
        assert_eq!(b.edge(LOW, t0 + 10 * MS), None);
        assert_eq!(b.edge(HIGH, t0 + 150 * MS), Some(Press::Short));
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.tick(t0 + 200 * MS), None);
        assert_eq!(
            b.tick(t0 + 5000 * MS),
            None,
            "no phantom press, no phantom hold"
        );
    }

    #[test]
    fn a_release_exactly_at_the_long_press_time_is_a_long_press_even_without_a_tick() {
        let mut b = button(true);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), None);
        assert_eq!(b.edge(HIGH, t0 + 3000 * MS), Some(Press::Long));
    }

    #[test]
    fn a_release_one_millisecond_before_the_long_press_time_is_a_short_press() {
        let mut b = button(true);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), None);
        assert_eq!(b.tick(t0 + 2999 * MS), None);
        assert_eq!(b.edge(HIGH, t0 + 2999 * MS), Some(Press::Short));
    }

    #[test]
    fn every_hold_fires_its_own_long_press() {
        let mut b = button(true);
        let t0 = Instant::now();
        b.edge(LOW, t0);
        assert_eq!(b.tick(t0 + 3000 * MS), Some(Press::Long));
        assert_eq!(b.next_deadline(), None, "fired: nothing left to decide");
        assert_eq!(b.edge(HIGH, t0 + 3100 * MS), None);
        b.edge(LOW, t0 + 4000 * MS);
        assert_eq!(b.next_deadline(), Some(t0 + 7000 * MS));
        assert_eq!(b.tick(t0 + 7000 * MS), Some(Press::Long));
    }

    #[test]
    fn a_released_button_has_no_deadline() {
        let mut b = button(true);
        assert_eq!(b.next_deadline(), None);
        let t0 = Instant::now();
        b.edge(LOW, t0);
        b.edge(HIGH, t0 + 100 * MS);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.tick(t0 + 10_000 * MS), None);
    }

    #[test]
    fn without_a_long_action_a_hold_never_turns_long() {
        let mut b = button(false);
        let t0 = Instant::now();
        assert_eq!(b.edge(LOW, t0), Some(Press::Short));
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.tick(t0 + 10_000 * MS), None);
        assert_eq!(b.edge(HIGH, t0 + 10_000 * MS), None);
    }

    #[test]
    fn the_lockout_deadline_comes_before_the_long_press_deadline() {
        let mut b = button(true);
        let t0 = Instant::now();
        b.edge(LOW, t0);
        b.edge(HIGH, t0 + 10 * MS);
        assert_eq!(b.next_deadline(), Some(t0 + 50 * MS));
        // A long press shorter than the lockout: the long deadline is the earlier one.
        let mut quick = ButtonLogic::new(50 * MS, 30 * MS, true, true);
        quick.edge(LOW, t0);
        quick.edge(HIGH, t0 + 10 * MS);
        assert_eq!(quick.next_deadline(), Some(t0 + 30 * MS));
    }
}
