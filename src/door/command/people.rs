// Over 450 lines: the code is 400; the rest is its unit tests.
//! The people commands (`admit`, `pass`, `revoke`, `block`): their requests, read strictly, and
//! the terminal users they become. Pure: no IO, no clock reads (callers pass the time in).
//!
//! These change who the door lets in, so they are read as strictly as `open`: a JSON object with
//! only the members named here, every text within the terminal's own limits, a photo that is a
//! JPEG, a window that ends in the future and within `people.max_pass`. Errors never quote a
//! name or a photo: a refusal is logged at WARN, and names of people stay at DEBUG.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::request::Refusal;
use crate::integrations::terminal::model::User;
use crate::messages::Cmd;

/// The largest enrolment photo sent on (decoded bytes): what the terminal takes.
pub const MAX_PHOTO: usize = 512 * 1024;
/// A `pass` request carries its photo in base64 (4/3 of [`MAX_PHOTO`]) and a few fields.
pub const MAX_PASS_REQUEST: usize = 1024 * 1024;
/// The terminal's limits (UserObject, API document 8.2.1).
const MAX_NAME: usize = 30;
const MAX_PURPOSE: usize = 40;
const MAX_INTERVIEWEE: usize = 80;
const MAX_USER_ID: usize = 16;
/// A record's `event_id` is `<terminal>-<signTime>-<id>` or a hash; the terminal id is a topic
/// level, so this is generous.
const MAX_EVENT_ID: usize = 200;
/// The terminal's user types (API document 8.2.1).
pub const VISITOR: i64 = 2;
pub const BLACKLIST: i64 = 3;

/// When a pass ends: a moment, or a span from when the request arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    At(SystemTime),
    In(Duration),
}

/// Whose face `block` puts on the blacklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The capture photo of a recent stranger record, by its `event_id`.
    Capture(String),
    /// A user the terminal already has.
    User(String),
}

/// A people request as read from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeopleRequest {
    Admit {
        event_id: String,
        name: String,
        until: Until,
        open: bool,
    },
    Pass {
        user_id: Option<String>,
        name: String,
        photo: Vec<u8>,
        from: Option<SystemTime>,
        until: Until,
        purpose: Option<String>,
        interviewee: Option<String>,
    },
    Revoke {
        user_id: String,
    },
    Block {
        who: Who,
        name: Option<String>,
    },
}

/// The members each command takes besides `transaction` and `time`.
pub fn members(cmd: Cmd) -> &'static [&'static str] {
    match cmd {
        Cmd::Admit => &["event_id", "name", "until", "open"],
        Cmd::Pass => &[
            "user_id",
            "name",
            "photo",
            "from",
            "until",
            "purpose",
            "interviewee",
        ],
        Cmd::Revoke => &["user_id"],
        Cmd::Block => &["event_id", "user_id", "name"],
        Cmd::Open | Cmd::Reboot | Cmd::SyncTime => &[],
    }
}

/// Reads the command's own members of a request object (whose keys the caller has checked
/// against [`members`]). `parse_time` reads a `from`/`until` moment as `request.time` is read.
pub fn parse(
    cmd: Cmd,
    m: &Map<String, Value>,
    parse_time: impl Fn(&Value) -> Option<SystemTime>,
) -> Result<PeopleRequest, String> {
    match cmd {
        Cmd::Admit => Ok(PeopleRequest::Admit {
            event_id: event_id(m)?.ok_or("admit needs `event_id`, the stranger record's")?,
            name: text(m, "name", MAX_NAME)?.ok_or("admit needs `name`")?,
            until: until(m, &parse_time)?,
            open: match m.get("open") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err("request `open` must be true or false".into()),
            },
        }),
        Cmd::Pass => Ok(PeopleRequest::Pass {
            user_id: user_id(m)?,
            name: text(m, "name", MAX_NAME)?.ok_or("pass needs `name`")?,
            photo: photo(m)?,
            from: match m.get("from") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_time(v).ok_or(
                    "request `from` is not Unix seconds/milliseconds or RFC 3339 between 1970 and 9999",
                )?),
            },
            until: until(m, &parse_time)?,
            purpose: text(m, "purpose", MAX_PURPOSE)?,
            interviewee: text(m, "interviewee", MAX_INTERVIEWEE)?,
        }),
        Cmd::Revoke => Ok(PeopleRequest::Revoke {
            user_id: user_id(m)?.ok_or("revoke needs `user_id`")?,
        }),
        Cmd::Block => {
            let who = match (event_id(m)?, user_id(m)?) {
                (Some(e), None) => Who::Capture(e),
                (None, Some(u)) => Who::User(u),
                _ => return Err("block needs one of `event_id` and `user_id`".into()),
            };
            Ok(PeopleRequest::Block {
                who,
                name: text(m, "name", MAX_NAME)?,
            })
        }
        Cmd::Open | Cmd::Reboot | Cmd::SyncTime => {
            Err(format!("`{}` is not a people command", cmd.as_str()))
        }
    }
}

/// A text member: a string of printable characters, not blank, at most `max` characters.
fn text(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, String> {
    let s = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(format!("request `{key}` must be text")),
    };
    if s.is_empty() {
        return Err(format!("request `{key}` is blank"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("request `{key}` holds control characters"));
    }
    if s.chars().count() > max {
        return Err(format!(
            "request `{key}` is longer than the terminal's {max} characters"
        ));
    }
    Ok(Some(s.to_string()))
}

/// An identifier: printable ASCII without spaces or `/` (it goes into the terminal's URL path).
fn identifier(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, String> {
    let Some(s) = text(m, key, max)? else {
        return Ok(None);
    };
    if !s.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(format!(
            "request `{key}` must be printable ASCII without spaces or `/`"
        ));
    }
    Ok(Some(s))
}

fn event_id(m: &Map<String, Value>) -> Result<Option<String>, String> {
    identifier(m, "event_id", MAX_EVENT_ID)
}

fn user_id(m: &Map<String, Value>) -> Result<Option<String>, String> {
    identifier(m, "user_id", MAX_USER_ID)
}

fn until(
    m: &Map<String, Value>,
    parse_time: &impl Fn(&Value) -> Option<SystemTime>,
) -> Result<Until, String> {
    let bad = || {
        "request `until` is not RFC 3339, Unix seconds, or a duration like \"3d\" or \"8h\""
            .to_string()
    };
    match m.get("until") {
        None | Some(Value::Null) => Err("request needs `until`, when the pass ends".into()),
        // "3d" is a span; "2026-12-04T18:00:00+01:00" is not one, and is read as a moment.
        Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) => Ok(Until::In(d)),
            Err(_) => parse_time(&Value::String(s.clone()))
                .map(Until::At)
                .ok_or_else(bad),
        },
        Some(v) => parse_time(v).map(Until::At).ok_or_else(bad),
    }
}

/// A base64 JPEG (a `data:image/jpeg;base64,` prefix allowed), at most [`MAX_PHOTO`] decoded.
fn photo(m: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let b64 = match m.get("photo") {
        None | Some(Value::Null) => return Err("pass needs `photo`, a base64 JPEG".into()),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err("request `photo` must be a base64 JPEG".into()),
    };
    let b64 = b64.strip_prefix("data:image/jpeg;base64,").unwrap_or(b64);
    if b64.len() > MAX_PHOTO.div_ceil(3) * 4 {
        return Err(format!(
            "request `photo` is larger than the terminal's {} KiB",
            MAX_PHOTO / 1024
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "request `photo` is not base64".to_string())?;
    if bytes.len() > MAX_PHOTO {
        return Err(format!(
            "request `photo` is larger than the terminal's {} KiB",
            MAX_PHOTO / 1024
        ));
    }
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(format!(
            "request `photo` is not a JPEG ({} bytes)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A pass's window in Unix seconds, decided when the request arrives (`now`): it ends after now
/// and at most `max_pass` from now, and starts (by default now) before it ends.
pub fn window(
    from: Option<SystemTime>,
    until: &Until,
    now: SystemTime,
    max_pass: Duration,
) -> Result<(u64, u64), String> {
    let end = match until {
        Until::At(t) => *t,
        Until::In(d) => now
            .checked_add(*d)
            .ok_or("request `until` is beyond any date")?,
    };
    let limit = humantime::format_duration(max_pass);
    match end.duration_since(now) {
        Err(_) => return Err("request `until` is in the past".into()),
        Ok(ahead) if ahead > max_pass => {
            return Err(format!(
                "request `until` is more than {limit} from now (people.max_pass)"
            ))
        }
        Ok(_) => {}
    }
    // An `until` of now itself ends here too: a window must hold a moment.
    let start = from.unwrap_or(now);
    if start >= end {
        return Err("request `from` is not before `until`".into());
    }
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok((secs(start), secs(end)))
}

/// A user id made from what identifies the request (`prefix` and at most 15 hex digits: the
/// terminal's 16), so the same admit or pass sent twice changes one user, never adds two.
pub fn derived_id(prefix: char, seed: &[u8]) -> String {
    let digest = Md5::digest(seed);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..MAX_USER_ID - 1])
}

/// A visitor with a photo and a validity window (Unix seconds).
pub fn visitor(
    user_id: String,
    name: String,
    photo: &[u8],
    (start, end): (u64, u64),
    purpose: Option<String>,
    interviewee: Option<String>,
) -> User {
    let mut user = enrolled(user_id, VISITOR, name, photo);
    user.extra.insert("startTime".into(), json!(start));
    user.extra.insert("endTime".into(), json!(end));
    user.extra
        .insert("purpose".into(), json!(purpose.unwrap_or_default()));
    user.extra
        .insert("interviewee".into(), json!(interviewee.unwrap_or_default()));
    user
}

/// A blacklisted face.
pub fn blacklisted(user_id: String, name: String, photo: &[u8]) -> User {
    enrolled(user_id, BLACKLIST, name, photo)
}

fn enrolled(user_id: String, user_type: i64, name: String, photo: &[u8]) -> User {
    User {
        user_id,
        user_type,
        name,
        remark: "face2mqtt".into(),
        photo: Some(base64::engine::general_purpose::STANDARD.encode(photo)),
        ..User::default()
    }
}

/// What a people command does at the terminal, decided when it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum PeopleJob {
    /// Add this user, or change it where the terminal has it already; then open when asked.
    Enrol { user: Box<User>, open: bool },
    /// Remove a visitor pass (only a visitor: revoke never removes staff).
    Revoke { user_id: String },
    /// Move a user the terminal has to the blacklist, renamed when a name was given.
    BlockUser {
        user_id: String,
        name: Option<String>,
    },
}

/// Turns a request into the job for the terminal at `now`: the window checked, the capture of
/// the record looked up (`capture` gives it, if still kept), the user made.
pub fn job<'a>(
    request: PeopleRequest,
    capture: impl FnOnce(&str) -> Option<&'a [u8]>,
    now: SystemTime,
    max_pass: Duration,
) -> Result<PeopleJob, Refusal> {
    let bad = Refusal::BadPayload;
    match request {
        PeopleRequest::Admit {
            event_id,
            name,
            until,
            open,
        } => {
            let span = window(None, &until, now, max_pass).map_err(bad)?;
            let photo = capture(&event_id).ok_or(Refusal::CaptureGone)?;
            let user_id = derived_id('v', event_id.as_bytes());
            Ok(PeopleJob::Enrol {
                user: Box::new(visitor(user_id, name, photo, span, None, None)),
                open,
            })
        }
        PeopleRequest::Pass {
            user_id,
            name,
            photo,
            from,
            until,
            purpose,
            interviewee,
        } => {
            let span = window(from, &until, now, max_pass).map_err(bad)?;
            let user_id = user_id.unwrap_or_else(|| derived_id('p', &photo));
            Ok(PeopleJob::Enrol {
                user: Box::new(visitor(user_id, name, &photo, span, purpose, interviewee)),
                open: false,
            })
        }
        PeopleRequest::Revoke { user_id } => Ok(PeopleJob::Revoke { user_id }),
        PeopleRequest::Block {
            who: Who::Capture(event_id),
            name,
        } => {
            let photo = capture(&event_id).ok_or(Refusal::CaptureGone)?;
            let user_id = derived_id('b', event_id.as_bytes());
            let name = name.unwrap_or_else(|| blocked_name(now));
            Ok(PeopleJob::Enrol {
                user: Box::new(blacklisted(user_id, name, photo)),
                open: false,
            })
        }
        PeopleRequest::Block {
            who: Who::User(user_id),
            name,
        } => Ok(PeopleJob::BlockUser { user_id, name }),
    }
}

/// The name a blocked capture gets when the request gave none (the terminal needs one).
pub fn blocked_name(now: SystemTime) -> String {
    let at = humantime::format_rfc3339_seconds(now).to_string();
    // "Blocked 2026-12-03T14:05:00Z": 28 characters, within the terminal's 30.
    format!("Blocked {at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(v: &Value) -> Option<SystemTime> {
        match v {
            Value::Number(n) => Some(UNIX_EPOCH + Duration::from_secs(n.as_u64()?)),
            Value::String(s) => humantime::parse_rfc3339_weak(s).ok(),
            _ => None,
        }
    }

    fn read(cmd: Cmd, v: Value) -> Result<PeopleRequest, String> {
        match v {
            Value::Object(m) => parse(cmd, &m, time),
            _ => unreachable!(),
        }
    }

    const JPEG: &str = "/9j/4AAQSkZJRgABAQ==";

    #[test]
    fn an_admit_names_the_record_the_visitor_and_the_end_of_the_pass() {
        let r = read(
            Cmd::Admit,
            json!({"event_id": "door-1-2", "name": "Ann", "until": "3d", "open": true}),
        );
        assert_eq!(
            r,
            Ok(PeopleRequest::Admit {
                event_id: "door-1-2".into(),
                name: "Ann".into(),
                until: Until::In(Duration::from_secs(3 * 86_400)),
                open: true,
            })
        );
        let r = read(
            Cmd::Admit,
            json!({"event_id": "e", "name": "Ann", "until": "2030-01-01T18:00:00Z"}),
        )
        .expect("parses");
        assert!(
            matches!(
                r,
                PeopleRequest::Admit {
                    open: false,
                    until: Until::At(_),
                    ..
                }
            ),
            "open only when asked: {r:?}"
        );
    }

    #[test]
    fn an_admit_without_its_record_name_or_end_is_refused() {
        for v in [
            json!({"name": "Ann", "until": "1d"}),
            json!({"event_id": "e", "until": "1d"}),
            json!({"event_id": "e", "name": "Ann"}),
            json!({"event_id": "e", "name": "   ", "until": "1d"}),
            json!({"event_id": "e", "name": "Ann", "until": "soon"}),
            json!({"event_id": "e", "name": "Ann", "until": "1d", "open": "yes"}),
            json!({"event_id": "a/b", "name": "Ann", "until": "1d"}),
            json!({"event_id": 7, "name": "Ann", "until": "1d"}),
        ] {
            assert!(read(Cmd::Admit, v.clone()).is_err(), "{v}");
        }
    }

    #[test]
    fn names_beyond_the_terminal_s_limits_are_refused_without_being_quoted() {
        let long = "Ö".repeat(31);
        let e = read(
            Cmd::Admit,
            json!({"event_id": "e", "name": long, "until": "1d"}),
        )
        .expect_err("refused");
        assert!(e.contains("30 characters") && !e.contains('Ö'), "{e}");
        let e = read(
            Cmd::Admit,
            json!({"event_id": "e", "name": "Ann\u{0}Lee", "until": "1d"}),
        )
        .expect_err("refused");
        assert!(!e.contains("Ann"), "{e}");
        assert!(read(
            Cmd::Admit,
            json!({"event_id": "e", "name": "Ö".repeat(30), "until": "1d"})
        )
        .is_ok());
    }

    #[test]
    fn a_pass_needs_a_jpeg_photo_within_the_terminal_s_size() {
        let ok = read(
            Cmd::Pass,
            json!({"name": "Bo", "photo": JPEG, "until": "8h", "purpose": "audit"}),
        )
        .expect("parses");
        assert!(
            matches!(ok, PeopleRequest::Pass { ref photo, .. } if photo.starts_with(&[0xFF, 0xD8]))
        );
        let data_url = format!("data:image/jpeg;base64,{JPEG}");
        assert!(read(
            Cmd::Pass,
            json!({"name": "Bo", "photo": data_url, "until": "8h"})
        )
        .is_ok());
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n0000");
        for (photo, says) in [
            (json!(png), "not a JPEG"),
            (json!("%%%"), "not base64"),
            (json!(12), "base64 JPEG"),
            (json!("A".repeat(MAX_PHOTO / 3 * 4 + 8)), "larger than"),
        ] {
            let e = read(
                Cmd::Pass,
                json!({"name": "Bo", "photo": photo, "until": "8h"}),
            )
            .expect_err("refused");
            assert!(e.contains(says), "{e}");
        }
        assert!(read(Cmd::Pass, json!({"name": "Bo", "until": "8h"})).is_err());
    }

    #[test]
    fn a_photo_of_512_kib_is_taken_and_one_byte_more_is_not() {
        for (size, taken) in [(524_288, true), (524_289, false)] {
            let mut jpeg = vec![0u8; size];
            jpeg[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
            let r = read(
                Cmd::Pass,
                json!({"name": "Bo", "photo": b64, "until": "8h"}),
            );
            assert_eq!(r.is_ok(), taken, "{size} bytes: {:?}", r.err());
        }
    }

    #[test]
    fn revoke_needs_a_user_id_and_block_exactly_one_of_record_or_user() {
        assert_eq!(
            read(Cmd::Revoke, json!({"user_id": "v123"})),
            Ok(PeopleRequest::Revoke {
                user_id: "v123".into()
            })
        );
        assert!(read(Cmd::Revoke, json!({})).is_err());
        assert!(read(Cmd::Revoke, json!({"user_id": "x".repeat(17)})).is_err());
        assert_eq!(
            read(Cmd::Block, json!({"event_id": "e"})),
            Ok(PeopleRequest::Block {
                who: Who::Capture("e".into()),
                name: None
            })
        );
        assert_eq!(
            read(Cmd::Block, json!({"user_id": "u", "name": "X"})),
            Ok(PeopleRequest::Block {
                who: Who::User("u".into()),
                name: Some("X".into())
            })
        );
        assert!(read(Cmd::Block, json!({})).is_err());
        assert!(read(Cmd::Block, json!({"event_id": "e", "user_id": "u"})).is_err());
    }

    #[test]
    fn a_window_ends_after_now_and_within_the_longest_pass() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            window(None, &Until::In(Duration::from_secs(60)), now, week),
            Ok((1_000_000, 1_000_060))
        );
        let past = Until::At(now - Duration::from_secs(1));
        assert!(window(None, &past, now, week).is_err_and(|e| e.contains("past")));
        assert!(
            window(None, &Until::At(now), now, week).is_err(),
            "an until of now"
        );
        let far = Until::In(week + Duration::from_secs(1));
        assert!(window(None, &far, now, week).is_err_and(|e| e.contains("people.max_pass")));
        assert_eq!(
            window(None, &Until::In(week), now, week),
            Ok((1_000_000, 1_604_800))
        );
        let late_start = Some(now + Duration::from_secs(120));
        assert!(window(late_start, &Until::In(Duration::from_secs(60)), now, week).is_err());
        assert!(window(None, &Until::In(Duration::MAX), now, week).is_err());
    }

    #[test]
    fn an_admit_enrols_the_kept_capture_as_a_visitor_with_an_id_of_its_record() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let req = PeopleRequest::Admit {
            event_id: "door-1-2".into(),
            name: "Ann".into(),
            until: Until::In(Duration::from_secs(3600)),
            open: true,
        };
        let photo = [0xFF, 0xD8, 0xFF, 1];
        let job = job(
            req.clone(),
            |e| (e == "door-1-2").then_some(&photo[..]),
            now,
            Duration::from_secs(86_400),
        );
        let Ok(PeopleJob::Enrol { user, open: true }) = job else {
            panic!("{job:?}")
        };
        assert_eq!((user.user_type, user.name.as_str()), (VISITOR, "Ann"));
        assert_eq!(user.user_id, derived_id('v', b"door-1-2"));
        assert_eq!(user.extra["endTime"], json!(1_003_600));
        assert_eq!(
            super::job(req, |_| None, now, Duration::from_secs(86_400)),
            Err(Refusal::CaptureGone),
            "the capture is gone"
        );
    }

    #[test]
    fn a_window_that_is_refused_enrols_nothing() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let req = PeopleRequest::Admit {
            event_id: "e".into(),
            name: "Ann".into(),
            until: Until::In(Duration::from_secs(8 * 86_400)),
            open: false,
        };
        let r = job(
            req,
            |_| Some(&[0xFF, 0xD8, 0xFF][..]),
            now,
            Duration::from_secs(7 * 86_400),
        );
        assert!(
            matches!(r, Err(Refusal::BadPayload(ref e)) if e.contains("people.max_pass")),
            "{r:?}"
        );
    }

    #[test]
    fn a_block_by_record_enrols_the_capture_on_the_blacklist_with_a_name() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let req = PeopleRequest::Block {
            who: Who::Capture("e".into()),
            name: None,
        };
        let r = job(
            req,
            |_| Some(&[0xFF, 0xD8, 0xFF][..]),
            now,
            Duration::from_secs(60),
        );
        let Ok(PeopleJob::Enrol { user, open: false }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(user.user_type, BLACKLIST);
        assert!(user.name.starts_with("Blocked "));
        let by_user = PeopleRequest::Block {
            who: Who::User("u1".into()),
            name: None,
        };
        assert_eq!(
            job(by_user, |_| None, now, Duration::from_secs(60)),
            Ok(PeopleJob::BlockUser {
                user_id: "u1".into(),
                name: None
            })
        );
    }

    #[test]
    fn derived_ids_fit_the_terminal_and_repeat_for_the_same_seed() {
        let a = derived_id('v', b"door-1-2");
        assert_eq!(a.len(), 16);
        assert!(a.starts_with('v'));
        assert_eq!(a, derived_id('v', b"door-1-2"));
        assert_ne!(a, derived_id('v', b"door-1-3"));
    }

    #[test]
    fn a_visitor_carries_its_window_and_a_blacklisted_face_type_three() {
        let v = visitor(
            "v1".into(),
            "Ann".into(),
            b"\xFF\xD8\xFF",
            (10, 20),
            None,
            Some("Lee".into()),
        );
        assert_eq!(
            (
                v.user_type,
                v.extra["startTime"].clone(),
                v.extra["endTime"].clone()
            ),
            (2, json!(10), json!(20))
        );
        assert_eq!(v.extra["interviewee"], json!("Lee"));
        assert_eq!(v.photo.as_deref(), Some("/9j/"));
        // Marked as the bridge's, for whoever reads the terminal's roster.
        assert_eq!(v.remark, "face2mqtt");
        let b = blacklisted("b1".into(), "X".into(), b"\xFF\xD8\xFF");
        assert_eq!((b.user_type, b.remark.as_str()), (3, "face2mqtt"));
        assert!(
            blocked_name(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
                .chars()
                .count()
                <= MAX_NAME
        );
    }
}
