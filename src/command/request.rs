//! MQTT command requests and the rules that decide whether one may reach the door. Pure: no IO,
//! no clock reads (callers pass the times in).
//!
//! A door is a security boundary, so the rules err on the side of not acting: a retained request
//! is never executed (it would fire again on every reconnect), a request older than `max_age` is
//! refused (an "open" from a minute ago is not an "open" now), and a second `open` inside the
//! hold time runs once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use crate::messages::Cmd;

/// What a request payload says. Empty, a plain word (Home Assistant's button sends `PRESS`) or
/// JSON `{"remark": "...", "transaction": "...", "time": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub remark: Option<String>,
    pub transaction: Option<String>,
    /// When the sender issued the request, if it said.
    pub time: Option<SystemTime>,
}

/// Reads a request payload. `Err` for text that looks like JSON but is not.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() || !(text.starts_with('{')) {
        return Ok(Payload::default());
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("payload is not a JSON object".into());
    };
    let string = |k: &str| match m.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let time = match m.get("time") {
        None | Some(Value::Null) => None,
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            format!("`time` {t} is neither Unix seconds/milliseconds nor RFC 3339")
        })?),
    };
    let remark = string("remark");
    if remark.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err("`remark` is longer than the terminal's 255 characters".into());
    }
    Ok(Payload {
        remark,
        transaction: string("transaction"),
        time,
    })
}

/// Unix seconds, Unix milliseconds (13 digits), or RFC 3339.
fn parse_time(v: &Value) -> Option<SystemTime> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() || f < 0.0 {
                return None;
            }
            let secs = if f > 100_000_000_000.0 { f / 1000.0 } else { f };
            Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
        Value::String(s) => humantime::parse_rfc3339_weak(s.trim()).ok(),
        _ => None,
    }
}

/// Why a request did not reach the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Retained,
    Stale {
        age: Duration,
        limit: Duration,
    },
    InFuture {
        ahead: Duration,
    },
    Duplicate {
        since: Duration,
        hold: Duration,
    },
    NotAllowed,
    BadPayload(String),
    /// This machine's clock is not synchronized: its time must not go to the door.
    ClockUnsynchronized,
}

impl Refusal {
    /// A short machine-readable word for automations (`reason` in the response).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Retained => "retained",
            Refusal::Stale { .. } | Refusal::InFuture { .. } => "stale",
            Refusal::Duplicate { .. } => "duplicate",
            Refusal::NotAllowed => "not_allowed",
            Refusal::BadPayload(_) => "bad_request",
            Refusal::ClockUnsynchronized => "clock_unsynchronized",
        }
    }

    pub fn text(&self, cmd: Cmd) -> String {
        let ms = |d: &Duration| {
            humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
        };
        match self {
            Refusal::Retained => format!("retained {} request ignored: requests must not be retained (they would run again on every reconnect)", cmd.as_str()),
            Refusal::Stale { age, limit } => format!("request is {} old, older than the {} limit: refused", ms(age), ms(limit)),
            Refusal::InFuture { ahead } => format!("request `time` is {} in the future: the sender's clock is off; refused", ms(ahead)),
            Refusal::Duplicate { since, hold } => format!("the door was opened {} ago, within the {} hold time: ran once", ms(since), ms(hold)),
            Refusal::NotAllowed => format!("`{}` is not allowed on this terminal (terminal.commands)", cmd.as_str()),
            Refusal::BadPayload(e) => e.clone(),
            Refusal::ClockUnsynchronized => "this machine's clock is not synchronized (NTP); its time is not pushed to the terminal".into(),
        }
    }
}

/// The per-terminal admission rules.
#[derive(Debug, Clone)]
pub struct Gate {
    pub max_age: Duration,
    pub open_hold: Duration,
    pub allowed: BTreeSet<Cmd>,
    last_open: Option<Instant>,
}

impl Gate {
    pub fn new(max_age: Duration, open_hold: Duration, allowed: BTreeSet<Cmd>) -> Gate {
        Gate {
            max_age,
            open_hold,
            allowed,
            last_open: None,
        }
    }

    /// Decides on an MQTT request as it arrives. `now`/`wall` are the monotonic and wall clocks
    /// at arrival. An accepted `open` starts the hold time.
    pub fn admit(
        &mut self,
        cmd: Cmd,
        payload: &Payload,
        retained: bool,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), Refusal> {
        if retained {
            return Err(Refusal::Retained);
        }
        if !self.allowed.contains(&cmd) {
            return Err(Refusal::NotAllowed);
        }
        if let Some(t) = payload.time {
            match wall.duration_since(t) {
                Ok(age) if age > self.max_age => {
                    return Err(Refusal::Stale {
                        age,
                        limit: self.max_age,
                    })
                }
                Ok(_) => {}
                Err(e) if e.duration() > self.max_age => {
                    return Err(Refusal::InFuture {
                        ahead: e.duration(),
                    })
                }
                Err(_) => {}
            }
        }
        self.admit_local(cmd, now)
    }

    /// The rules that also hold for the exit button: the allow-list and the open hold time.
    pub fn admit_local(&mut self, cmd: Cmd, now: Instant) -> Result<(), Refusal> {
        if !self.allowed.contains(&cmd) {
            return Err(Refusal::NotAllowed);
        }
        if cmd == Cmd::Open {
            if let Some(last) = self.last_open {
                let since = now.saturating_duration_since(last);
                if since < self.open_hold {
                    return Err(Refusal::Duplicate {
                        since,
                        hold: self.open_hold,
                    });
                }
            }
            self.last_open = Some(now);
        }
        Ok(())
    }
}

/// At execution time: a request that waited in the queue (behind a slow terminal) past the age
/// limit is not executed.
pub fn still_fresh(received: Instant, now: Instant, max_age: Duration) -> Result<(), Refusal> {
    let age = now.saturating_duration_since(received);
    if age > max_age {
        return Err(Refusal::Stale {
            age,
            limit: max_age,
        });
    }
    Ok(())
}

/// Splits `<base>/<terminal>/request/<cmd>`; `None` for any other topic.
pub fn parse_topic<'a>(base: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(base)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (terminal, kind, cmd) = (parts.next()?, parts.next()?, parts.next()?);
    if kind != "request" || parts.next().is_some() {
        return None;
    }
    Some((terminal, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            Cmd::ALL.into_iter().collect(),
        )
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_empty_or_plain_word_payload_is_a_plain_request() {
        assert_eq!(parse_payload(b""), Ok(Payload::default()));
        assert_eq!(parse_payload(b"PRESS"), Ok(Payload::default()));
        assert_eq!(parse_payload(b"  \n"), Ok(Payload::default()));
    }

    #[test]
    fn a_json_payload_carries_remark_transaction_and_time() {
        let p = parse_payload(br#"{"remark":"parcel","transaction":42,"time":1600000000}"#)
            .expect("parses");
        assert_eq!(p.remark.as_deref(), Some("parcel"));
        assert_eq!(p.transaction.as_deref(), Some("42"));
        assert_eq!(p.time, Some(at(1_600_000_000)));
        let ms = parse_payload(br#"{"time":1600000000500}"#).expect("parses");
        assert_eq!(
            ms.time,
            Some(UNIX_EPOCH + Duration::from_millis(1_600_000_000_500))
        );
        let rfc = parse_payload(br#"{"time":"2020-09-13T12:26:40Z"}"#).expect("parses");
        assert_eq!(rfc.time, Some(at(1_600_000_000)));
    }

    #[test]
    fn broken_json_is_refused_with_a_reason() {
        assert!(parse_payload(b"{remark:").is_err());
        assert!(parse_payload(br#"{"time":"soon"}"#).is_err());
        assert!(
            parse_payload(format!(r#"{{"remark":"{}"}}"#, "r".repeat(300)).as_bytes()).is_err()
        );
    }

    #[test]
    fn a_retained_request_never_runs() {
        let mut g = gate();
        assert_eq!(
            g.admit(
                Cmd::Open,
                &Payload::default(),
                true,
                Instant::now(),
                at(100)
            ),
            Err(Refusal::Retained)
        );
    }

    #[test]
    fn a_request_older_than_the_limit_is_refused() {
        let mut g = gate();
        let p = Payload {
            time: Some(at(100)),
            ..Payload::default()
        };
        assert!(matches!(
            g.admit(Cmd::Open, &p, false, Instant::now(), at(111)),
            Err(Refusal::Stale { .. })
        ));
        assert_eq!(
            g.admit(Cmd::Open, &p, false, Instant::now(), at(105)),
            Ok(())
        );
    }

    #[test]
    fn a_request_from_far_in_the_future_is_refused() {
        let mut g = gate();
        let p = Payload {
            time: Some(at(200)),
            ..Payload::default()
        };
        assert!(matches!(
            g.admit(Cmd::Reboot, &p, false, Instant::now(), at(100)),
            Err(Refusal::InFuture { .. })
        ));
    }

    #[test]
    fn a_second_open_within_the_hold_time_runs_once() {
        let mut g = gate();
        let t0 = Instant::now();
        assert_eq!(g.admit_local(Cmd::Open, t0), Ok(()));
        assert!(matches!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(1)),
            Err(Refusal::Duplicate { .. })
        ));
        assert_eq!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(4)),
            Ok(())
        );
    }

    #[test]
    fn the_hold_time_applies_to_open_only() {
        let mut g = gate();
        let t0 = Instant::now();
        assert_eq!(g.admit_local(Cmd::SyncTime, t0), Ok(()));
        assert_eq!(g.admit_local(Cmd::SyncTime, t0), Ok(()));
    }

    #[test]
    fn a_command_outside_the_allow_list_is_refused() {
        let mut g = Gate::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            [Cmd::SyncTime].into_iter().collect(),
        );
        assert_eq!(
            g.admit_local(Cmd::Open, Instant::now()),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn a_request_that_waited_too_long_in_the_queue_is_not_executed() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        assert!(still_fresh(t0, t0 + Duration::from_secs(5), limit).is_ok());
        assert!(still_fresh(t0, t0 + Duration::from_secs(11), limit).is_err());
    }

    #[test]
    fn request_topics_are_split_into_terminal_and_command() {
        assert_eq!(
            parse_topic("face2mqtt", "face2mqtt/front-door/request/open"),
            Some(("front-door", "open"))
        );
        assert_eq!(
            parse_topic("a/b", "a/b/t/request/reboot"),
            Some(("t", "reboot"))
        );
        assert_eq!(
            parse_topic("face2mqtt", "face2mqtt/front-door/response/open"),
            None
        );
        assert_eq!(
            parse_topic("face2mqtt", "face2mqtt/front-door/request/open/x"),
            None
        );
        assert_eq!(
            parse_topic("face2mqtt", "other/front-door/request/open"),
            None
        );
    }

    #[test]
    fn every_refusal_says_why_in_words() {
        for r in [
            Refusal::Retained,
            Refusal::Stale {
                age: Duration::from_secs(60),
                limit: Duration::from_secs(10),
            },
            Refusal::Duplicate {
                since: Duration::from_secs(1),
                hold: Duration::from_secs(3),
            },
            Refusal::NotAllowed,
            Refusal::ClockUnsynchronized,
        ] {
            assert!(r.text(Cmd::Open).len() > 20, "{r:?}");
        }
    }
}
