//! The door as Home Assistant's lock: what its command topic may say, and what the lock shows.
//! Pure: no IO, no clock reads (callers pass the times in).
//!
//! The lock never decides whether the door opens: OPEN and UNLOCK are `open` requests that pass
//! the same [`Gate`](super::Gate) as `request/open`. It only tells what happened: `open` (or
//! `unlocked`) for the hold time after the terminal confirmed an open the lock asked for, and
//! `locked` otherwise. A door terminal pulses its relay and closes by itself, so there is no
//! "unlocked until locked again" to keep: the lock falls back to `locked` on its own.

use std::time::{Duration, Instant};

use super::request::{Refusal, MAX_REQUEST};
pub use crate::messages::{LockCommand, LockState};

/// Reads a payload of the lock's command topic: `LOCK`, `UNLOCK` or `OPEN` in any case, nothing
/// else. Unlike `request/open`, an empty payload is not a command here: it is what clearing a
/// retained message sends, and nobody presses a lock with it.
pub fn parse_payload(bytes: &[u8]) -> Result<LockCommand, String> {
    if bytes.len() > MAX_REQUEST {
        return Err(format!(
            "lock command of {} bytes is larger than the {MAX_REQUEST} byte limit",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "lock command is not UTF-8 text".to_string())?
        .trim();
    LockCommand::ALL
        .into_iter()
        .find(|c| text.eq_ignore_ascii_case(c.payload()))
        .ok_or_else(|| {
            let shown: String = text
                .chars()
                .take(40)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!("lock command `{shown}` is not LOCK, UNLOCK or OPEN")
        })
}

/// The terminal of `<base>/<terminal>/lock/set`; `None` for any other topic.
pub fn parse_topic<'a>(base: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(base)?.strip_prefix('/')?;
    let terminal = rest.strip_suffix("/lock/set")?;
    (!terminal.is_empty() && !terminal.contains('/')).then_some(terminal)
}

/// What a message on the lock's command topic comes to, before the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answered on `response/open`; what the lock shows does not change.
    Refuse(Refusal),
    /// LOCK: the lock shows `locked`; nothing happens at the door.
    ShowLocked,
    /// OPEN or UNLOCK: an `open` request for the gate, which decides as for `request/open`.
    /// The lock shows `shows` once the terminal opened.
    AskGate {
        command: LockCommand,
        shows: LockState,
    },
}

/// Decides on a lock command as it arrives. `has_lock` is false on a terminal that may not open.
pub fn decide(payload: &[u8], retained: bool, has_lock: bool) -> Decision {
    let command = match parse_payload(payload) {
        Ok(c) => c,
        Err(e) => return Decision::Refuse(Refusal::BadPayload(e)),
    };
    match shows(command) {
        Some(shows) => Decision::AskGate { command, shows },
        // LOCK never reaches the door, but a retained one would still replay on every
        // reconnect: the rule for retained requests holds for the whole topic.
        None if retained => Decision::Refuse(Refusal::Retained),
        None if !has_lock => Decision::Refuse(Refusal::NotAllowed),
        None => Decision::ShowLocked,
    }
}

/// The state an open on this command shows; `None` for LOCK, which opens nothing.
fn shows(command: LockCommand) -> Option<LockState> {
    match command {
        LockCommand::Lock => None,
        LockCommand::Unlock => Some(LockState::Unlocked),
        LockCommand::Open => Some(LockState::Open),
    }
}

/// What one terminal's lock shows, and until when. One deadline per lock, so a second open
/// during the hold moves it instead of starting a second timer.
#[derive(Debug, Clone)]
pub struct Shown {
    hold: Duration,
    opened: Option<(LockState, Instant)>,
}

impl Shown {
    pub fn new(hold: Duration) -> Shown {
        Shown { hold, opened: None }
    }

    pub fn state(&self) -> LockState {
        self.opened.map_or(LockState::Locked, |(s, _)| s)
    }

    /// The terminal confirmed an open the lock asked for at `now`: show `shows` for the hold
    /// time from here. Returns what to publish.
    pub fn opened(&mut self, shows: LockState, now: Instant) -> LockState {
        self.opened = Some((shows, now + self.hold));
        shows
    }

    /// LOCK: nothing to do at the door (it closes by itself), so only the lock shows it.
    pub fn lock(&mut self) -> LockState {
        self.opened = None;
        LockState::Locked
    }

    /// When the lock falls back to `locked`, if it shows anything else.
    pub fn relock_at(&self) -> Option<Instant> {
        self.opened.map(|(_, until)| until)
    }

    /// `Some(Locked)`, to publish, once the hold time is over at `now`.
    pub fn expire(&mut self, now: Instant) -> Option<LockState> {
        match self.opened {
            Some((_, until)) if now >= until => Some(self.lock()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(3);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lock_unlock_and_open_are_read_in_any_case_with_white_space_around() {
        assert_eq!(parse_payload(b"OPEN"), Ok(LockCommand::Open));
        assert_eq!(parse_payload(b" open\n"), Ok(LockCommand::Open));
        assert_eq!(parse_payload(b"UNLOCK"), Ok(LockCommand::Unlock));
        assert_eq!(parse_payload(b"Unlock"), Ok(LockCommand::Unlock));
        assert_eq!(parse_payload(b"LOCK"), Ok(LockCommand::Lock));
        assert_eq!(parse_payload(b"lock"), Ok(LockCommand::Lock));
    }

    #[test]
    fn anything_else_on_the_lock_topic_is_refused_with_a_reason() {
        let random: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(200))
            .collect();
        for p in [
            &random[..],
            b"",
            b"   ",
            b"PRESS",
            b"open door",
            b"OPENOPEN",
            b"{\"state\":\"OPEN\"}",
            b"\"OPEN\"",
            b"unlocked",
        ] {
            let r = parse_payload(p);
            assert!(
                r.is_err(),
                "{:?} was accepted: {r:?}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(
            parse_payload(b"xyzzy"),
            Err("lock command `xyzzy` is not LOCK, UNLOCK or OPEN".into())
        );
    }

    #[test]
    fn a_lock_command_larger_than_a_request_may_be_is_refused_with_its_size() {
        let mut big = b"OPEN".to_vec();
        big.resize(MAX_REQUEST + 1, b' ');
        let e = parse_payload(&big).expect_err("refused");
        assert!(e.contains("4097 bytes"), "{e}");
        let mut fits = b"OPEN".to_vec();
        fits.resize(MAX_REQUEST, b' ');
        assert_eq!(parse_payload(&fits), Ok(LockCommand::Open));
    }

    #[test]
    fn the_lock_topic_names_its_terminal() {
        assert_eq!(
            parse_topic("face2mqtt", "face2mqtt/front-door/lock/set"),
            Some("front-door")
        );
        assert_eq!(parse_topic("a/b", "a/b/t/lock/set"), Some("t"));
        for other in [
            "face2mqtt/front-door/lock/state",
            "face2mqtt/front-door/request/open",
            "face2mqtt/x/front-door/lock/set",
            "face2mqtt//lock/set",
            "other/front-door/lock/set",
            "face2mqttx/front-door/lock/set",
        ] {
            assert_eq!(parse_topic("face2mqtt", other), None, "{other}");
        }
    }

    #[test]
    fn open_shows_open_unlock_shows_unlocked_and_lock_opens_nothing() {
        assert_eq!(shows(LockCommand::Open), Some(LockState::Open));
        assert_eq!(shows(LockCommand::Unlock), Some(LockState::Unlocked));
        assert_eq!(shows(LockCommand::Lock), None);
    }

    #[test]
    fn open_and_unlock_go_to_the_gate_which_judges_retained_ones_as_for_request_open() {
        for retained in [false, true] {
            assert_eq!(
                decide(b"OPEN", retained, true),
                Decision::AskGate {
                    command: LockCommand::Open,
                    shows: LockState::Open
                }
            );
            assert_eq!(
                decide(b"UNLOCK", retained, false),
                Decision::AskGate {
                    command: LockCommand::Unlock,
                    shows: LockState::Unlocked
                }
            );
        }
    }

    #[test]
    fn lock_shows_locked_on_a_terminal_with_a_lock() {
        assert_eq!(decide(b"LOCK", false, true), Decision::ShowLocked);
    }

    #[test]
    fn a_retained_lock_is_refused_like_any_retained_request() {
        assert_eq!(
            decide(b"LOCK", true, true),
            Decision::Refuse(Refusal::Retained)
        );
    }

    #[test]
    fn lock_on_a_terminal_without_a_lock_is_not_allowed() {
        assert_eq!(
            decide(b"LOCK", false, false),
            Decision::Refuse(Refusal::NotAllowed)
        );
    }

    #[test]
    fn garbage_is_a_bad_request_whatever_else_holds() {
        for (retained, has_lock) in [(false, true), (true, true), (false, false)] {
            assert!(matches!(
                decide(b"xyzzy", retained, has_lock),
                Decision::Refuse(Refusal::BadPayload(_))
            ));
        }
    }

    #[test]
    fn a_lock_shows_locked_until_the_terminal_opened() {
        let s = Shown::new(HOLD);
        assert_eq!(s.state(), LockState::Locked);
        assert_eq!(s.relock_at(), None);
    }

    #[test]
    fn an_open_shows_for_exactly_the_hold_time_then_locked() {
        let t0 = Instant::now();
        let mut s = Shown::new(HOLD);
        assert_eq!(s.opened(LockState::Open, t0), LockState::Open);
        assert_eq!(s.relock_at(), Some(t0 + HOLD));
        assert_eq!(s.expire(t0 + HOLD - MS), None);
        assert_eq!(s.state(), LockState::Open);
        assert_eq!(s.expire(t0 + HOLD), Some(LockState::Locked));
        assert_eq!(s.state(), LockState::Locked);
        assert_eq!(s.relock_at(), None);
        assert_eq!(s.expire(t0 + HOLD * 2), None, "locked is published once");
    }

    #[test]
    fn an_unlock_shows_unlocked_for_the_hold_time() {
        let t0 = Instant::now();
        let mut s = Shown::new(HOLD);
        assert_eq!(s.opened(LockState::Unlocked, t0), LockState::Unlocked);
        assert_eq!(s.state(), LockState::Unlocked);
        assert_eq!(s.expire(t0 + HOLD), Some(LockState::Locked));
    }

    #[test]
    fn a_second_open_during_the_hold_moves_the_one_deadline() {
        let t0 = Instant::now();
        let mut s = Shown::new(HOLD);
        s.opened(LockState::Open, t0);
        s.opened(LockState::Unlocked, t0 + Duration::from_secs(2));
        assert_eq!(s.relock_at(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.expire(t0 + HOLD), None, "the first open's end is gone");
        assert_eq!(s.state(), LockState::Unlocked);
        assert_eq!(
            s.expire(t0 + Duration::from_secs(5)),
            Some(LockState::Locked)
        );
    }

    #[test]
    fn lock_during_the_hold_shows_locked_at_once_and_ends_the_hold() {
        let t0 = Instant::now();
        let mut s = Shown::new(HOLD);
        s.opened(LockState::Open, t0);
        assert_eq!(s.lock(), LockState::Locked);
        assert_eq!(s.relock_at(), None);
        assert_eq!(s.expire(t0 + HOLD), None, "no second locked later");
    }

    #[test]
    fn lock_when_locked_shows_locked_again() {
        let mut s = Shown::new(HOLD);
        assert_eq!(s.lock(), LockState::Locked);
        assert_eq!(s.state(), LockState::Locked);
    }
}
