// Over 450 lines: the code is under 350; the rest is its unit tests.
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

use super::people::{self, PeopleRequest};
pub use crate::messages::Cmd;

/// What a request payload says: when the sender issued it, a remark for the terminal's log, and a
/// transaction id to echo on the response, as the JSON text it was sent as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub remark: Option<String>,
    pub transaction: Option<String>,
    /// When the sender issued the request, if it said.
    pub time: Option<SystemTime>,
    /// What a people command asks for (`people.rs`); `None` for the door's commands.
    pub people: Option<PeopleRequest>,
}

/// Requests are a few hundred bytes; anything much larger is not one.
pub const MAX_REQUEST: usize = 4096;
/// The terminal keeps remarks of up to 255 characters; transaction ids get the same room.
const MAX_TEXT: usize = 255;
/// The latest `time` a request may carry: 9999-12-31T23:59:59Z (what RFC 3339 can write).
const MAX_TIME_SECS: f64 = 253_402_300_799.0;

/// A request's `transaction` as the JSON text it was sent as (a string with its quotes, a number
/// digit for digit: `1.50` stays `1.50`, 300 digits are not `1e+300`), to be echoed as is. Text
/// or a number only, and at most [`MAX_TEXT`] characters: a string's, or a number's digits.
fn raw_transaction(text: &str, parsed: Option<&Value>) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        transaction: Option<&'a serde_json::value::RawValue>,
    }
    let too_long = || format!("request `transaction` is longer than {MAX_TEXT} characters");
    match parsed {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT => return Err(too_long()),
        Some(Value::String(_) | Value::Number(_)) => {}
        Some(_) => return Err("request `transaction` must be text or a number".into()),
    }
    let raw: Raw<'_> =
        serde_json::from_str(text).map_err(|e| format!("request is not valid JSON: {e}"))?;
    let raw = raw.transaction.map(|r| r.get().to_string());
    if matches!(parsed, Some(Value::Number(_)))
        && raw.as_ref().is_some_and(|r| r.chars().count() > MAX_TEXT)
    {
        return Err(too_long());
    }
    Ok(raw)
}

/// The largest request payload `cmd` takes: a `pass` carries a photo.
pub fn max_request(cmd: Cmd) -> usize {
    match cmd {
        Cmd::Pass => people::MAX_PASS_REQUEST,
        _ => MAX_REQUEST,
    }
}

/// Reads a request payload, strictly: a door must not open on a payload nobody meant as a
/// request. Acted on are only
/// - nothing (or only white space),
/// - `PRESS`, Home Assistant's button payload, in any case,
/// - the command's own name (`open` on `request/open`), in any case,
/// - a JSON object with no members but `remark` (text), `transaction` (text or number) and `time`
///   (Unix seconds or milliseconds, or RFC 3339). An unknown member is refused too: a misspelt
///   `time` would otherwise quietly skip the staleness check.
///
/// Everything else is `Err` with the reason, to be answered `bad_request`.
pub fn parse_payload(cmd: Cmd, bytes: &[u8]) -> Result<Payload, String> {
    let limit = max_request(cmd);
    if bytes.len() > limit {
        return Err(format!(
            "request of {} bytes is larger than the {limit} byte limit",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "request is not UTF-8 text".to_string())?;
    let text = text.trim();
    // A people command says whom; only the door's commands may come as a bare word.
    if !cmd.is_people()
        && (text.is_empty()
            || text.eq_ignore_ascii_case("PRESS")
            || text.eq_ignore_ascii_case(cmd.as_str()))
    {
        return Ok(Payload::default());
    }
    let own = if cmd.is_people() {
        people::members(cmd)
    } else {
        &["remark"]
    };
    let known = || {
        own.iter()
            .chain(&["transaction", "time"])
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !text.starts_with('{') {
        if cmd.is_people() {
            return Err(format!("request is not a JSON object ({})", known()));
        }
        return Err(format!(
            "request `{}` is not empty, PRESS, `{}` or a JSON object {{\"remark\":...,\"transaction\":...,\"time\":...}}",
            preview(text),
            cmd.as_str()
        ));
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("request is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("request is not a JSON object".into());
    };
    if let Some(k) = m
        .keys()
        .find(|k| !own.contains(&k.as_str()) && !matches!(k.as_str(), "transaction" | "time"))
    {
        return Err(format!(
            "request member `{}` is unknown ({})",
            preview(k),
            known()
        ));
    }
    let people = if cmd.is_people() {
        Some(people::parse(cmd, &m, parse_time)?)
    } else {
        None
    };
    let text_member = |k: &str| -> Result<Option<String>, String> {
        let s = match m.get(k) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(format!("request `{k}` must be text")),
        };
        if s.chars().count() > MAX_TEXT {
            return Err(format!(
                "request `{k}` is longer than the terminal's {MAX_TEXT} characters"
            ));
        }
        Ok(Some(s))
    };
    let remark = text_member("remark")?;
    let transaction = raw_transaction(text, m.get("transaction"))?;
    let time = match m.get("time") {
        None | Some(Value::Null) => None,
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            format!(
                "request `time` {} is not Unix seconds/milliseconds or RFC 3339 between 1970 and 9999",
                preview(&t.to_string())
            )
        })?),
    };
    Ok(Payload {
        remark,
        transaction,
        time,
        people,
    })
}

/// The start of a text, for an error message.
fn preview(text: &str) -> String {
    let cut: String = text
        .chars()
        .take(40)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Cut if there was more than 40 characters: counted in characters, not bytes (a control
    // character of two bytes shown as a one-byte space is not a cut).
    if text.chars().nth(40).is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Unix seconds, Unix milliseconds (13 digits), or RFC 3339; `None` for anything else, including
/// times before 1970 or after 9999 (`1e25` must never reach `Duration::from_secs_f64`, which
/// panics on what it cannot hold).
pub(super) fn parse_time(v: &Value) -> Option<SystemTime> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            let secs = if f > 100_000_000_000.0 { f / 1000.0 } else { f };
            if !(0.0..=MAX_TIME_SECS).contains(&secs) {
                return None;
            }
            UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
        }
        Value::String(s) => rfc3339_any_offset(s.trim()),
        _ => None,
    }
}

/// RFC 3339 with any offset (`Z`, `+01:00`, `-05:30`), as Home Assistant's `isoformat()` writes
/// a local time; humantime alone reads UTC only.
fn rfc3339_any_offset(s: &str) -> Option<SystemTime> {
    let split = s.len().checked_sub(6).filter(|i| *i >= 19);
    let offset = split.and_then(|i| {
        let o = s.get(i..)?.as_bytes();
        let sign = match o[0] {
            b'+' => 1i64,
            b'-' => -1,
            _ => return None,
        };
        let digits = [o[1], o[2], o[4], o[5]];
        if o[3] != b':' || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
        let (h, m) = (n(o[1], o[2]), n(o[4], o[5]));
        (h <= 23 && m <= 59).then_some((i, sign * (h * 3600 + m * 60)))
    });
    let Some((i, secs)) = offset else {
        return humantime::parse_rfc3339_weak(s).ok();
    };
    let local = humantime::parse_rfc3339_weak(s.get(..i)?).ok()?;
    // Local time = UTC + offset: UTC is the local reading less the offset.
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        local.checked_sub(d)
    } else {
        local.checked_add(d)
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
    /// `admit` or `block` named a record whose capture is not kept (not a stranger's, or
    /// older than `people.admit_window`).
    CaptureGone,
    /// `admit` asked to open on a terminal whose `commands` do not allow `open`.
    OpenNotAllowed,
}

impl Refusal {
    /// A short machine-readable word for automations (`reason` in the response).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Retained => "retained",
            Refusal::Stale { .. } | Refusal::InFuture { .. } => "stale",
            Refusal::Duplicate { .. } => "duplicate",
            Refusal::NotAllowed | Refusal::OpenNotAllowed => "not_allowed",
            Refusal::CaptureGone => "capture_gone",
            Refusal::BadPayload(_) => "bad_request",
            Refusal::ClockUnsynchronized => "clock_unsynchronized",
        }
    }

    pub fn text(&self, cmd: Cmd) -> String {
        let ms = |d: &Duration| {
            let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            humantime::format_duration(Duration::from_millis(millis)).to_string()
        };
        match self {
            Refusal::Retained => format!("retained {} request ignored: requests must not be retained (they would run again on every reconnect)", cmd.as_str()),
            Refusal::Stale { age, limit } => format!("request is {} old, older than the {} limit: refused", ms(age), ms(limit)),
            Refusal::InFuture { ahead } => format!("request `time` is {} in the future: the sender's clock is off; refused", ms(ahead)),
            Refusal::Duplicate { since, hold } => format!("the door was opened {} ago, within the {} hold time: ran once", ms(since), ms(hold)),
            Refusal::NotAllowed => format!("`{}` is not allowed on this terminal (terminal.commands)", cmd.as_str()),
            Refusal::BadPayload(e) => e.clone(),
            Refusal::ClockUnsynchronized => "this machine's clock is not synchronized (NTP); its time is not pushed to the terminal".into(),
            Refusal::CaptureGone => "no capture photo of that record is kept: only a stranger's, for people.admit_window after it was published".into(),
            Refusal::OpenNotAllowed => format!("`open` is not allowed on this terminal (terminal.commands); {} without \"open\": true", cmd.as_str()),
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
    fn an_empty_press_or_own_name_payload_is_a_plain_request() {
        for p in [
            &b""[..],
            b"PRESS",
            b"press",
            b"  \n",
            b"open",
            b"OPEN",
            b" Open\n",
        ] {
            assert_eq!(parse_payload(Cmd::Open, p), Ok(Payload::default()), "{p:?}");
        }
        assert_eq!(
            parse_payload(Cmd::SyncTime, b"sync_time"),
            Ok(Payload::default())
        );
    }

    #[test]
    fn a_transaction_keeps_its_json_type_and_text() {
        for sent in [
            "1.50",
            "\"t-1\"",
            "\"\\u0041\"",
            "-0",
            "12345678901234567890123",
        ] {
            let p = parse_payload(Cmd::Open, format!("{{\"transaction\":{sent}}}").as_bytes())
                .expect("parses");
            assert_eq!(p.transaction.as_deref(), Some(sent));
        }
        let digits = "9".repeat(300);
        let p = parse_payload(
            Cmd::Open,
            format!("{{\"transaction\":{digits}}}").as_bytes(),
        );
        assert!(
            p.is_err_and(|e| e.contains("longer than 255")),
            "300 digits"
        );
    }

    #[test]
    fn a_text_transaction_of_255_characters_is_echoed_and_one_more_is_refused() {
        // Characters, not bytes: `é` is two bytes.
        let at_limit = format!(r#""{}""#, "é".repeat(255));
        let p = parse_payload(
            Cmd::Open,
            format!(r#"{{"transaction":{at_limit}}}"#).as_bytes(),
        )
        .expect("255 characters fit");
        assert_eq!(p.transaction.as_deref(), Some(at_limit.as_str()));
        let over = format!(r#"{{"transaction":"{}"}}"#, "é".repeat(256));
        let p = parse_payload(Cmd::Open, over.as_bytes());
        assert!(p.is_err_and(|e| e.contains("`transaction` is longer than 255")));
        // A number: its digits count.
        let digits = "9".repeat(255);
        let p = parse_payload(
            Cmd::Open,
            format!(r#"{{"transaction":{digits}}}"#).as_bytes(),
        )
        .expect("255 digits fit");
        assert_eq!(p.transaction, Some(digits));
        let digits = "9".repeat(256);
        let p = parse_payload(
            Cmd::Open,
            format!(r#"{{"transaction":{digits}}}"#).as_bytes(),
        );
        assert!(p.is_err_and(|e| e.contains("`transaction` is longer than 255")));
    }

    #[test]
    fn a_transaction_that_is_not_text_or_a_number_is_refused() {
        for sent in ["true", "[1]", "{\"a\":1}"] {
            let p = parse_payload(Cmd::Open, format!("{{\"transaction\":{sent}}}").as_bytes());
            assert!(p.is_err_and(|e| e.contains("text or a number")), "{sent}");
        }
    }

    #[test]
    fn a_json_payload_carries_remark_transaction_and_time() {
        let p = parse_payload(
            Cmd::Open,
            br#"{"remark":"parcel","transaction":42,"time":1600000000}"#,
        )
        .expect("parses");
        assert_eq!(p.remark.as_deref(), Some("parcel"));
        assert_eq!(p.transaction.as_deref(), Some("42"), "the number, as sent");
        assert_eq!(p.time, Some(at(1_600_000_000)));
        let ms = parse_payload(Cmd::Open, br#"{"time":1600000000500}"#).expect("parses");
        assert_eq!(
            ms.time,
            Some(UNIX_EPOCH + Duration::from_millis(1_600_000_000_500))
        );
        let rfc = parse_payload(Cmd::Open, br#"{"time":"2020-09-13T12:26:40Z"}"#).expect("parses");
        assert_eq!(rfc.time, Some(at(1_600_000_000)));
        assert_eq!(parse_payload(Cmd::Open, b"{}"), Ok(Payload::default()));
    }

    #[test]
    fn an_rfc_3339_time_may_carry_any_offset() {
        for (text, secs) in [
            ("2020-09-13T12:26:40Z", 1_600_000_000),
            ("2020-09-13T13:26:40+01:00", 1_600_000_000),
            ("2020-09-13T07:56:40-04:30", 1_600_000_000),
            ("2020-09-13T12:26:40.5+00:00", 1_600_000_000),
            ("2020-09-13 12:26:40", 1_600_000_000),
        ] {
            let t = parse_time(&Value::String(text.into()))
                .map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
            assert_eq!(t, Some(secs), "{text}");
        }
        for text in [
            "2020-09-13T13:26:40+24:00",
            "2020-09-13T13:26:40+0a:00",
            "2020-09-13T13:26:40+01:0é",
            // Digits without the colon, and a colon where a digit belongs (`:` is `0` + 10).
            "2020-09-13T13:26:40+01000",
            "2020-09-13T13:26:40+00:0:",
            "+01:00",
        ] {
            assert_eq!(parse_time(&Value::String(text.into())), None, "{text}");
        }
    }

    #[test]
    fn broken_json_is_refused_with_a_reason() {
        assert!(parse_payload(Cmd::Open, b"{remark:").is_err());
        assert!(parse_payload(Cmd::Open, br#"{"time":"soon"}"#).is_err());
        assert!(parse_payload(
            Cmd::Open,
            format!(r#"{{"remark":"{}"}}"#, "r".repeat(300)).as_bytes()
        )
        .is_err());
    }

    /// Finding 3 of issue 9: each of these opened the door and answered `{"status":"ok"}`.
    #[test]
    fn a_payload_that_is_not_a_request_is_refused_never_acted_on() {
        let random: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(200))
            .collect();
        for p in [
            &random[..],
            b"xyzzy 123",
            b"[1,2]",
            b"null",
            b"true",
            b"42",
            b"\"open\"",
            b"reboot",
            b"PRESS PRESS",
            b"{\"remark\":\"x\",\"tiem\":1}",
            b"{\"remark\":[1]}",
            b"{\"time\":true}",
        ] {
            let r = parse_payload(Cmd::Open, p);
            assert!(
                r.is_err(),
                "{:?} was accepted: {r:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn an_oversized_request_is_refused_with_its_size() {
        let big = vec![b' '; MAX_REQUEST + 1];
        let e = parse_payload(Cmd::Open, &big).expect_err("refused");
        assert!(e.contains("4097 bytes"), "{e}");
    }

    /// Finding 2 of issue 9: `{"time":1e25}` panicked in `Duration::from_secs_f64`.
    #[test]
    fn a_time_beyond_the_year_9999_is_refused_not_panicked_on() {
        for p in [
            &br#"{"time":1e25}"#[..],
            br#"{"time":1.7976931348623157e308}"#,
            br#"{"time":-1}"#,
            br#"{"time":-1e300}"#,
            br#"{"time":253402300800000}"#,
            br#"{"time":18446744073709551615}"#,
        ] {
            let r = parse_payload(Cmd::Open, p);
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(p));
        }
        assert!(parse_payload(Cmd::Open, br#"{"time":253402300799000}"#).is_ok());
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
            Refusal::CaptureGone,
            Refusal::OpenNotAllowed,
        ] {
            assert!(r.text(Cmd::Open).len() > 20, "{r:?}");
        }
    }

    #[test]
    fn a_people_command_is_never_a_bare_word() {
        for cmd in [Cmd::Admit, Cmd::Pass, Cmd::Revoke, Cmd::Block] {
            for p in [&b""[..], b"PRESS", cmd.as_str().as_bytes(), b"{}"] {
                assert!(parse_payload(cmd, p).is_err(), "{cmd:?} {p:?}");
            }
        }
    }

    #[test]
    fn a_people_request_takes_only_its_own_members_and_the_common_ones() {
        let ok = parse_payload(
            Cmd::Revoke,
            br#"{"user_id":"v1","transaction":"t","time":1600000000}"#,
        )
        .expect("parses");
        assert_eq!(ok.transaction.as_deref(), Some("\"t\""));
        assert!(ok.people.is_some());
        let e =
            parse_payload(Cmd::Revoke, br#"{"user_id":"v1","remark":"x"}"#).expect_err("refused");
        assert!(
            e.contains("`remark` is unknown (user_id, transaction, time)"),
            "{e}"
        );
        let e = parse_payload(Cmd::Open, br#"{"user_id":"v1"}"#).expect_err("refused");
        assert!(e.contains("(remark, transaction, time)"), "{e}");
    }

    #[test]
    fn a_pass_request_may_take_a_mib_and_not_a_byte_more() {
        let size_refusal = |n: usize| {
            parse_payload(Cmd::Pass, &vec![b' '; n]).is_err_and(|e| e.contains("byte limit"))
        };
        assert!(
            !size_refusal(1_048_576),
            "1 MiB is read (and refused for what it says)"
        );
        assert!(size_refusal(1_048_577));
    }

    #[test]
    fn only_a_pass_may_be_as_large_as_a_photo() {
        let big = format!(r#"{{"user_id":"v1","name":"{}"}}"#, " ".repeat(MAX_REQUEST));
        let e = parse_payload(Cmd::Block, big.as_bytes()).expect_err("refused");
        assert!(e.contains("4096 byte limit"), "{e}");
        let e = parse_payload(Cmd::Pass, &vec![b' '; people::MAX_PASS_REQUEST + 1])
            .expect_err("refused");
        assert!(
            e.contains(&format!("{} byte limit", people::MAX_PASS_REQUEST)),
            "{e}"
        );
    }

    const MS: Duration = Duration::from_millis(1);

    fn sent_at(t: SystemTime) -> Payload {
        Payload {
            time: Some(t),
            ..Payload::default()
        }
    }

    #[test]
    fn a_request_exactly_max_age_old_is_still_admitted() {
        let mut g = gate();
        let wall = at(1_000);
        let p = sent_at(wall - Duration::from_secs(10));
        assert_eq!(
            g.admit(Cmd::Reboot, &p, false, Instant::now(), wall),
            Ok(())
        );
    }

    #[test]
    fn a_request_one_millisecond_older_than_max_age_is_refused_with_its_age() {
        let mut g = gate();
        let wall = at(1_000);
        let p = sent_at(wall - Duration::from_secs(10) - MS);
        assert_eq!(
            g.admit(Cmd::Reboot, &p, false, Instant::now(), wall),
            Err(Refusal::Stale {
                age: Duration::from_secs(10) + MS,
                limit: Duration::from_secs(10),
            })
        );
    }

    #[test]
    fn a_request_one_millisecond_in_the_future_is_admitted() {
        let mut g = gate();
        let wall = at(1_000);
        let p = sent_at(wall + MS);
        assert_eq!(g.admit(Cmd::Open, &p, false, Instant::now(), wall), Ok(()));
    }

    #[test]
    fn a_request_exactly_max_age_in_the_future_is_admitted() {
        let mut g = gate();
        let wall = at(1_000);
        let p = sent_at(wall + Duration::from_secs(10));
        assert_eq!(g.admit(Cmd::Open, &p, false, Instant::now(), wall), Ok(()));
    }

    #[test]
    fn a_request_one_millisecond_beyond_max_age_in_the_future_is_refused_with_how_far() {
        let mut g = gate();
        let wall = at(1_000);
        let p = sent_at(wall + Duration::from_secs(10) + MS);
        assert_eq!(
            g.admit(Cmd::Open, &p, false, Instant::now(), wall),
            Err(Refusal::InFuture {
                ahead: Duration::from_secs(10) + MS,
            })
        );
    }

    #[test]
    fn a_request_sent_at_this_very_instant_is_admitted() {
        let mut g = gate();
        let wall = at(1_000);
        assert_eq!(
            g.admit(Cmd::Open, &sent_at(wall), false, Instant::now(), wall),
            Ok(())
        );
    }

    #[test]
    fn a_retained_request_is_refused_even_when_fresh_and_allowed() {
        let mut g = gate();
        let wall = at(1_000);
        assert_eq!(
            g.admit(Cmd::SyncTime, &sent_at(wall), true, Instant::now(), wall),
            Err(Refusal::Retained)
        );
    }

    #[test]
    fn an_mqtt_request_outside_the_allow_list_is_refused_before_its_age_is_judged() {
        let mut g = Gate::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            [Cmd::SyncTime].into_iter().collect(),
        );
        let wall = at(1_000);
        let stale = sent_at(wall - Duration::from_secs(60));
        assert_eq!(
            g.admit(Cmd::Open, &stale, false, Instant::now(), wall),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            g.admit(Cmd::SyncTime, &sent_at(wall), false, Instant::now(), wall),
            Ok(())
        );
    }

    #[test]
    fn an_allowed_command_passes_the_local_rules() {
        let mut g = Gate::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            [Cmd::Reboot].into_iter().collect(),
        );
        assert_eq!(g.admit_local(Cmd::Reboot, Instant::now()), Ok(()));
        assert_eq!(
            g.admit_local(Cmd::SyncTime, Instant::now()),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn a_second_open_exactly_at_the_hold_time_runs() {
        let mut g = gate();
        let t0 = Instant::now();
        assert_eq!(g.admit_local(Cmd::Open, t0), Ok(()));
        assert_eq!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(3)),
            Ok(())
        );
    }

    #[test]
    fn a_second_open_one_millisecond_before_the_hold_time_ends_is_refused_with_the_times() {
        let mut g = gate();
        let t0 = Instant::now();
        assert_eq!(g.admit_local(Cmd::Open, t0), Ok(()));
        assert_eq!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(3) - MS),
            Err(Refusal::Duplicate {
                since: Duration::from_secs(3) - MS,
                hold: Duration::from_secs(3),
            })
        );
    }

    #[test]
    fn a_refused_duplicate_does_not_extend_the_hold_time() {
        let mut g = gate();
        let t0 = Instant::now();
        assert_eq!(g.admit_local(Cmd::Open, t0), Ok(()));
        assert!(g
            .admit_local(Cmd::Open, t0 + Duration::from_secs(2))
            .is_err());
        assert_eq!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(3)),
            Ok(())
        );
    }

    #[test]
    fn an_accepted_open_over_mqtt_starts_the_hold_time_for_the_button() {
        let mut g = gate();
        let t0 = Instant::now();
        let wall = at(1_000);
        assert_eq!(g.admit(Cmd::Open, &sent_at(wall), false, t0, wall), Ok(()));
        assert!(matches!(
            g.admit_local(Cmd::Open, t0 + Duration::from_secs(1)),
            Err(Refusal::Duplicate { .. })
        ));
    }

    #[test]
    fn a_queued_request_exactly_max_age_old_is_still_executed() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        assert_eq!(still_fresh(t0, t0 + limit, limit), Ok(()));
    }

    #[test]
    fn a_queued_request_one_millisecond_past_max_age_is_refused_with_its_age() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        assert_eq!(
            still_fresh(t0, t0 + limit + MS, limit),
            Err(Refusal::Stale {
                age: limit + MS,
                limit,
            })
        );
    }

    #[test]
    fn parse_time_refuses_a_negative_number() {
        assert_eq!(parse_time(&serde_json::json!(-1)), None);
        assert_eq!(parse_time(&serde_json::json!(-0.5)), None);
        assert!(parse_payload(Cmd::Open, br#"{"time":-1600000000}"#).is_err());
    }

    #[test]
    fn parse_time_takes_zero_as_the_epoch() {
        assert_eq!(parse_time(&serde_json::json!(0)), Some(UNIX_EPOCH));
    }

    #[test]
    fn parse_time_reads_one_hundred_billion_as_seconds_and_more_as_milliseconds() {
        assert_eq!(
            parse_time(&serde_json::json!(100_000_000_000u64)),
            Some(at(100_000_000_000))
        );
        assert_eq!(
            parse_time(&serde_json::json!(100_000_000_500u64)),
            Some(UNIX_EPOCH + Duration::from_millis(100_000_000_500))
        );
    }

    #[test]
    fn parse_time_refuses_values_that_are_neither_numbers_nor_strings() {
        assert_eq!(parse_time(&serde_json::json!(true)), None);
        assert_eq!(parse_time(&serde_json::json!([1])), None);
        assert_eq!(
            parse_time(&serde_json::json!(" 2020-09-13T12:26:40Z ")),
            Some(at(1_600_000_000))
        );
    }

    #[test]
    fn every_refusal_has_its_documented_reason_word() {
        let cases = [
            (Refusal::Retained, "retained"),
            (
                Refusal::Stale {
                    age: Duration::from_secs(60),
                    limit: Duration::from_secs(10),
                },
                "stale",
            ),
            (
                Refusal::InFuture {
                    ahead: Duration::from_secs(60),
                },
                "stale",
            ),
            (
                Refusal::Duplicate {
                    since: Duration::from_secs(1),
                    hold: Duration::from_secs(3),
                },
                "duplicate",
            ),
            (Refusal::NotAllowed, "not_allowed"),
            (Refusal::BadPayload("x".into()), "bad_request"),
            (Refusal::ClockUnsynchronized, "clock_unsynchronized"),
        ];
        for (r, word) in cases {
            assert_eq!(r.reason(), word, "{r:?}");
        }
    }

    #[test]
    fn a_refusal_text_names_the_times_involved() {
        let stale = Refusal::Stale {
            age: Duration::from_millis(10_500),
            limit: Duration::from_secs(10),
        };
        assert_eq!(
            stale.text(Cmd::Open),
            "request is 10s 500ms old, older than the 10s limit: refused"
        );
        let ahead = Refusal::InFuture {
            ahead: Duration::from_secs(60),
        };
        assert!(
            ahead.text(Cmd::Open).contains("1m in the future"),
            "{}",
            ahead.text(Cmd::Open)
        );
        assert_eq!(
            Refusal::BadPayload("payload is not a JSON object".into()).text(Cmd::Open),
            "payload is not a JSON object"
        );
        assert!(Refusal::NotAllowed.text(Cmd::Reboot).contains("`reboot`"));
        assert!(Refusal::Retained
            .text(Cmd::SyncTime)
            .contains("retained sync_time"));
    }

    #[test]
    fn a_remark_of_exactly_255_characters_is_accepted_and_one_more_is_refused() {
        let at_limit = format!(r#"{{"remark":"{}"}}"#, "é".repeat(255));
        assert_eq!(
            parse_payload(Cmd::Open, at_limit.as_bytes())
                .expect("255 characters fit")
                .remark
                .map(|r| r.chars().count()),
            Some(255)
        );
        let over = format!(r#"{{"remark":"{}"}}"#, "é".repeat(256));
        assert!(parse_payload(Cmd::Open, over.as_bytes()).is_err());
    }

    #[test]
    fn a_null_time_is_a_request_without_a_time() {
        assert_eq!(
            parse_payload(Cmd::Open, br#"{"time":null,"remark":"x"}"#),
            Ok(Payload {
                remark: Some("x".into()),
                ..Payload::default()
            })
        );
    }

    #[test]
    fn a_request_of_exactly_the_size_limit_is_read_and_one_byte_more_is_refused() {
        let mut fits = b"open".to_vec();
        fits.resize(MAX_REQUEST, b' ');
        assert_eq!(parse_payload(Cmd::Open, &fits), Ok(Payload::default()));
        fits.push(b' ');
        assert_eq!(
            parse_payload(Cmd::Open, &fits),
            Err("request of 4097 bytes is larger than the 4096 byte limit".into())
        );
    }

    #[test]
    fn a_short_payload_that_is_not_a_request_is_quoted_whole_in_the_refusal() {
        assert_eq!(
            parse_payload(Cmd::Open, b"xyzzy 123"),
            Err(
                "request `xyzzy 123` is not empty, PRESS, `open` or a JSON object \
                 {\"remark\":...,\"transaction\":...,\"time\":...}"
                    .into()
            )
        );
        assert_eq!(
            parse_payload(Cmd::Open, br#"{"tiem":1}"#),
            Err("request member `tiem` is unknown (remark, transaction, time)".into())
        );
        assert_eq!(
            parse_payload(Cmd::Open, br#"{"time":"soon"}"#),
            Err(
                "request `time` \"soon\" is not Unix seconds/milliseconds or RFC 3339 \
                 between 1970 and 9999"
                    .into()
            )
        );
    }

    #[test]
    fn a_payload_of_forty_characters_is_quoted_whole_and_a_longer_one_is_cut_with_an_ellipsis() {
        let forty = "é".repeat(40);
        assert_eq!(preview(&forty), forty);
        assert_eq!(preview(&format!("{forty}x")), format!("{forty}…"));
        let e = parse_payload(Cmd::Open, "x".repeat(100).as_bytes()).expect_err("refused");
        assert!(
            e.starts_with(&format!("request `{}…` is not empty", "x".repeat(40))),
            "{e}"
        );
    }

    #[test]
    fn control_characters_are_quoted_as_spaces_and_are_not_taken_for_a_cut() {
        // U+0085 is two bytes in UTF-8 and shows as a one-byte space: nothing was cut.
        assert_eq!(preview("a\tb\u{85}c"), "a b c");
    }
}
