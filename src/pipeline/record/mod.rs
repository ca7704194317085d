// Over 450 lines: the code is under 350; the rest is its unit tests.
//! The record JSON published on `<base>/<t>/record`, made from what the terminal sent.
//!
//! Pure functions: the same terminal record always yields the same JSON and `event_id`, whether it
//! came live, by backfill, or again after a crash (consumers dedupe on `event_id`).

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod shape;
pub mod size;

pub use shape::{is_stranger, Mask, Person, Record, Temperature};

use crate::integrations::terminal::model::{
    lenient_bool, lenient_f64, lenient_i64, lenient_string, PersonType,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Live,
    Backfill,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NormalizeError {
    #[error("record has no usable `signTime`")]
    NoSignTime,
    /// A time that no clock could have meant: before 1970 or after the year 9999 (which is
    /// also where RFC 3339 and the formatter end).
    #[error("record `signTime` {0} is not a time between 1970 and 9999")]
    SignTimeOutOfRange(String),
}

/// 9999-12-31T23:59:59Z: the last second RFC 3339 (four-digit years) can write.
pub const MAX_SIGN_TIME: u64 = 253_402_300_799;

/// A normalized record: the record to publish and the capture photo, split off.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub record: Record,
    pub photo: Option<Vec<u8>>,
    /// Why a photo that was sent could not be used (to be logged by the caller).
    pub photo_problem: Option<String>,
}

impl Normalized {
    /// A record without a photo.
    pub fn of(record: Record) -> Normalized {
        Normalized {
            record,
            photo: None,
            photo_problem: None,
        }
    }

    pub fn event_id(&self) -> &str {
        &self.record.event_id
    }

    pub fn sign_time(&self) -> u64 {
        self.record.timestamp
    }

    /// Drops the capture photo (backfill keeps only the newest). The record then says
    /// `"snapshot": false`: consumers wait for a snapshot only when the record promises one.
    pub fn drop_photo(&mut self) {
        self.photo = None;
        self.record.snapshot = false;
    }

    /// Marks a record that was read without some of its fields (an oversized push frame whose
    /// photo or long text had to go): `"truncated": true`, and no snapshot when the photo went.
    pub fn mark_truncated(&mut self, dropped: &[String]) {
        if dropped.is_empty() {
            return;
        }
        if dropped.iter().any(|f| f == "signAvatar") {
            self.drop_photo();
            self.photo_problem = Some("the push frame was over the size limit".into());
        }
        self.record.truncated = true;
    }

    /// The JSON that is spooled and published, fitted to the size policy ([`size::fit`]): the
    /// one place a record is serialized.
    pub fn published(&self) -> String {
        match size::fit(&self.record, size::MAX_JSON) {
            size::Fitted::Reduced(text) => {
                tracing::warn!(event_id = %self.record.event_id, "record larger than the size limit; spooled reduced (\"truncated\": true)");
                text
            }
            // The publisher quarantines an entry still `Over`, loudly.
            size::Fitted::Whole(text) | size::Fitted::Over(text) => text,
        }
    }

    /// The published record as a JSON tree (for tests, which index it).
    pub fn json(&self) -> Value {
        serde_json::to_value(&self.record).unwrap_or_default()
    }
}

/// A spooled record's JSON rewritten to `"snapshot": false`, for a record whose photo was lost
/// after it was spooled (size cap, torn file, too large to publish). `None` when there is
/// nothing to change (or the text is not a record).
pub fn without_snapshot(json: &str) -> Option<String> {
    let mut record = Record::from_json(json).ok()?;
    if !record.snapshot {
        return None;
    }
    record.snapshot = false;
    Some(record.to_json())
}

/// Fields mapped into the record JSON; everything else the terminal sent goes to `extra`.
const MAPPED: &[&str] = &[
    "id",
    "signTime",
    "type",
    "userType",
    "userId",
    "name",
    "jobNumber",
    "department",
    "icNumber",
    "inputType",
    "similarity",
    "temperature",
    "temperatureState",
    "Temperatureunit",
    "wearMask",
    "wearMaskAlarm",
    "signAvatar",
    "photo",
];

/// Terminals send seconds; a 13-digit value is taken as milliseconds rather than the year 50000.
/// Values the terminal (or anyone on its link) sends are checked before they become a time:
/// `1e30`, `300000000000000` or the year 10000 are refused, never formatted.
fn sign_time(v: Option<&Value>) -> Result<u64, NormalizeError> {
    let Some(v) = v else {
        return Err(NormalizeError::NoSignTime);
    };
    let out_of_range = || NormalizeError::SignTimeOutOfRange(preview_value(v));
    let Some(t) = lenient_i64(v) else {
        // A number too large for an integer is a time out of range, not a missing one.
        return Err(match lenient_f64(v) {
            Some(_) => out_of_range(),
            None => NormalizeError::NoSignTime,
        });
    };
    let secs = u64::try_from(t).map_err(|_| out_of_range())?;
    let secs = if secs > 100_000_000_000 {
        secs / 1000
    } else {
        secs
    };
    if secs == 0 || secs > MAX_SIGN_TIME {
        return Err(out_of_range());
    }
    Ok(secs)
}

/// A value as short text for an error message (terminal input can be megabytes).
fn preview_value(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// RFC 3339 in UTC. Times past the year 9999 are written as its last second rather than
/// panicking in the formatter; [`normalize`] refuses them before they get here.
pub fn rfc3339(secs: u64) -> String {
    let secs = secs.min(MAX_SIGN_TIME);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// FNV-1a: fixed forever, so ids made by one version match those of the next.
pub fn stable_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `<terminal>-<signTime>-<record id>`. Records with id 0 (strangers) get `s` and a hash of the
/// fields that describe the capture and of the capture photo itself: two strangers in the same
/// second must not collapse into one (dedupe would then drop a real event). A terminal whose
/// record list omits photos would make such a record's backfilled id differ from its live one:
/// a duplicate, which is the lesser harm.
pub fn event_id(
    terminal: &str,
    data: &Map<String, Value>,
    sign_time: u64,
    photo: Option<&[u8]>,
) -> String {
    let id = data.get("id").and_then(lenient_i64).unwrap_or(0);
    if id != 0 {
        return format!("{terminal}-{sign_time}-{id}");
    }
    let field = |k: &str| {
        data.get(k).map(|v| match lenient_f64(v) {
            Some(f) => format!("{:.1}", f),
            None => lenient_string(v).unwrap_or_default(),
        })
    };
    let mut key = String::new();
    for k in [
        "type",
        "userId",
        "inputType",
        "similarity",
        "temperature",
        "temperatureState",
        "wearMask",
        "wearMaskAlarm",
    ] {
        key.push_str(&format!("{k}={};", field(k).unwrap_or_default()));
    }
    if let Some(p) = photo {
        key.push_str(&format!("photo={:016x};", stable_hash(p)));
    }
    format!(
        "{terminal}-{sign_time}-s{:08x}",
        stable_hash(key.as_bytes()) as u32
    )
}

fn method(input_type: Option<i64>) -> &'static str {
    match input_type {
        Some(1) | None => "face",
        Some(2) => "qr",
        Some(3) => "card",
        Some(4) => "uuid",
        Some(_) => "unknown",
    }
}

/// Bare base64 as real units send; tolerate a `data:` prefix and line breaks from other firmware.
pub fn decode_photo(text: &str) -> Result<Vec<u8>, String> {
    let body = text
        .strip_prefix("data:")
        .and_then(|rest| rest.find("base64,").map(|i| &rest[i + 7..]))
        .unwrap_or(text);
    // Base64 is ASCII, so white space is dropped byte by byte, and only when there is some: real
    // units send none, and copying ~58 KB a char at a time was an eighth of the bridge's CPU per
    // photo record (perf, BENCHMARKS.md).
    let cleaned: std::borrow::Cow<'_, [u8]> = if body.bytes().any(|b| b.is_ascii_whitespace()) {
        body.bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        body.as_bytes().into()
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .or_else(|_| {
            let mut unpadded: &[u8] = &cleaned;
            while let [rest @ .., b'='] = unpadded {
                unpadded = rest;
            }
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded)
        })
        .map_err(|e| format!("photo is not base64: {e}"))?;
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(format!("photo is not a JPEG ({} bytes)", bytes.len()));
    }
    Ok(bytes)
}

pub fn normalize(
    terminal: &str,
    data: &Map<String, Value>,
    source: Source,
) -> Result<Normalized, NormalizeError> {
    let sign_time = sign_time(data.get("signTime"))?;
    let text = |k: &str| data.get(k).and_then(lenient_string).unwrap_or_default();
    let int = |k: &str| data.get(k).and_then(lenient_i64);

    let type_code = int("type").or_else(|| int("userType"));
    let person_type = type_code
        .and_then(PersonType::from_code)
        .map(PersonType::as_str)
        .unwrap_or("unknown");

    // A terminal without a thermometer sends nothing, null, or 0: none of them is a reading.
    let temperature = data
        .get("temperature")
        .and_then(lenient_f64)
        .filter(|t| *t > 0.0 && t.is_finite())
        .map(|t| {
            let unit = if int("Temperatureunit") == Some(1) {
                "F"
            } else {
                "C"
            };
            let state = match int("temperatureState") {
                Some(1) => "high",
                Some(-1) => "low",
                _ => "normal",
            };
            // Rounding a huge reading would overflow to infinity (which JSON cannot carry).
            let rounded = (t * 10.0).round() / 10.0;
            let value = if rounded.is_finite() { rounded } else { t };
            Temperature {
                value,
                unit: unit.into(),
                state: state.into(),
            }
        });
    let mask = data
        .get("wearMask")
        .and_then(lenient_bool)
        .map(|worn| Mask {
            worn,
            alarm: data
                .get("wearMaskAlarm")
                .and_then(lenient_bool)
                .unwrap_or(false),
        });

    let (photo, photo_problem) = match data
        .get("signAvatar")
        .and_then(lenient_string)
        .filter(|s| !s.is_empty())
    {
        None => (None, None),
        Some(b64) => match decode_photo(&b64) {
            Ok(bytes) if bytes.len() > size::MAX_PHOTO => (
                None,
                Some(format!(
                    "photo of {} bytes is over the {} byte limit",
                    bytes.len(),
                    size::MAX_PHOTO
                )),
            ),
            Ok(bytes) => (Some(bytes), None),
            Err(e) => (None, Some(e)),
        },
    };

    let event_id = event_id(terminal, data, sign_time, photo.as_deref());
    let extra: Map<String, Value> = data
        .iter()
        .filter(|(k, _)| !MAPPED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let record = Record {
        event_id,
        terminal: terminal.into(),
        record_id: int("id").unwrap_or(0),
        time: rfc3339(sign_time),
        timestamp: sign_time,
        source,
        person: Person {
            user_id: text("userId"),
            name: text("name"),
            kind: person_type.into(),
            job_number: text("jobNumber"),
            department: text("department"),
            ic_number: text("icNumber"),
        },
        method: method(int("inputType")).into(),
        similarity: int("similarity"),
        temperature,
        mask,
        snapshot: photo.is_some(),
        extra,
        truncated: false,
    };
    Ok(Normalized {
        record,
        photo,
        photo_problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stranger() -> Map<String, Value> {
        // The captured stranger of docs/terminal-dialect.md, photo shortened.
        match json!({
            "startTime": 0, "userId": "", "gender": 0, "jobNumber": "", "position": "", "userType": -1,
            "purpose": "", "birthday": 0, "department": "", "prompt": "", "description": "", "mobile": "",
            "remark": "", "entryTime": 0, "title": "", "endTime": 0, "name": "", "mail": "", "icNumber": "",
            "idNumber": "", "comeFrom": "", "photo": "null", "id": 0, "signTime": 1600972860, "type": -1,
            "inputType": 1, "similarity": 0, "temperatureState": 0, "wearMask": 0, "wearMaskAlarm": 0,
            "temperature": 97.400002, "Temperatureunit": 1, "signAvatar": "/9j/4AAQSkZJRg=="
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn staff() -> Map<String, Value> {
        let mut m = stranger();
        m.insert("id".into(), json!(1234));
        m.insert("userId".into(), json!("E017"));
        m.insert("name".into(), json!("Ada"));
        m.insert("type".into(), json!(1));
        m.insert("department".into(), json!("R&D"));
        m.insert("temperature".into(), json!(36.599998));
        m.insert("Temperatureunit".into(), json!(0));
        m.insert("wearMask".into(), json!(1));
        m.insert("similarity".into(), json!(93));
        m
    }

    #[test]
    fn a_staff_record_normalizes_to_the_documented_shape() {
        let n = normalize("front-door", &staff(), Source::Live).expect("normalizes");
        let j = &n.json();
        assert_eq!(j["event_id"], json!("front-door-1600972860-1234"));
        assert_eq!(j["record_id"], json!(1234));
        assert_eq!(j["time"], json!("2020-09-24T18:41:00Z"));
        assert_eq!(j["timestamp"], json!(1600972860));
        assert_eq!(j["source"], json!("live"));
        assert_eq!(j["person"]["type"], json!("staff"));
        assert_eq!(j["person"]["name"], json!("Ada"));
        assert_eq!(j["method"], json!("face"));
        assert_eq!(j["similarity"], json!(93));
        assert_eq!(
            j["temperature"],
            json!({"value": 36.6, "unit": "C", "state": "normal"})
        );
        assert_eq!(j["mask"], json!({"worn": true, "alarm": false}));
        assert_eq!(j["snapshot"], json!(true));
        assert_eq!(n.photo.as_deref().map(|p| &p[..2]), Some(&[0xFF, 0xD8][..]));
    }

    #[test]
    fn the_fahrenheit_reading_rounds_to_one_decimal() {
        let n = normalize("t", &stranger(), Source::Live).expect("normalizes");
        assert_eq!(
            n.json()["temperature"],
            json!({"value": 97.4, "unit": "F", "state": "normal"})
        );
    }

    #[test]
    fn the_base64_photos_never_appear_in_the_json() {
        let n = normalize("t", &staff(), Source::Live).expect("normalizes");
        let text = n.json().to_string();
        assert!(
            !text.contains("signAvatar") && !text.contains("/9j/") && !text.contains("\"photo\""),
            "{text}"
        );
        assert_eq!(n.json()["extra"]["gender"], json!(0));
    }

    #[test]
    fn a_stranger_gets_a_stable_distinct_event_id() {
        let a = normalize("t", &stranger(), Source::Live).expect("normalizes");
        let b = normalize("t", &stranger(), Source::Backfill).expect("normalizes");
        assert_eq!(a.event_id(), b.event_id());
        assert!(
            a.event_id().starts_with("t-1600972860-s"),
            "{}",
            a.event_id()
        );
        let mut other = stranger();
        other.insert("similarity".into(), json!(41));
        let c = normalize("t", &other, Source::Live).expect("normalizes");
        assert_ne!(a.event_id(), c.event_id());
        assert_eq!(a.json()["person"]["type"], json!("stranger"));
    }

    #[test]
    fn the_stranger_id_ignores_number_spelling() {
        let a = normalize("t", &stranger(), Source::Live).expect("normalizes");
        let mut s = stranger();
        s.insert("temperature".into(), json!("97.4"));
        s.insert("similarity".into(), json!("0"));
        let b = normalize("t", &s, Source::Backfill).expect("normalizes");
        assert_eq!(a.event_id(), b.event_id());
    }

    #[test]
    fn two_strangers_alike_but_for_the_capture_get_different_ids() {
        let a = normalize("t", &stranger(), Source::Live).expect("normalizes");
        let mut s = stranger();
        s.insert("signAvatar".into(), json!("/9j/4AAQSkZJRgAB"));
        let b = normalize("t", &s, Source::Live).expect("normalizes");
        assert_ne!(a.event_id(), b.event_id());
    }

    #[test]
    fn a_missing_temperature_or_mask_is_null() {
        let mut m = staff();
        m.remove("temperature");
        m.remove("wearMask");
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert_eq!(n.json()["temperature"], Value::Null);
        assert_eq!(n.json()["mask"], Value::Null);
    }

    #[test]
    fn a_record_without_sign_time_is_refused() {
        let mut m = staff();
        m.remove("signTime");
        assert_eq!(
            normalize("t", &m, Source::Live),
            Err(NormalizeError::NoSignTime)
        );
    }

    #[test]
    fn a_millisecond_sign_time_is_read_as_seconds() {
        let mut m = staff();
        m.insert("signTime".into(), json!(1600972860123i64));
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert_eq!(n.sign_time(), 1600972860);
    }

    /// Finding 1 of issue 9: each of these panicked while formatting the time.
    #[test]
    fn a_sign_time_beyond_the_year_9999_is_refused_not_panicked_on() {
        for t in [
            json!(1e30),
            json!(300_000_000_000_000u64),
            json!("253402300800000"),
            json!(u64::MAX),
            json!(-1),
            json!(0),
            json!("1e300"),
        ] {
            let mut m = staff();
            m.insert("signTime".into(), t.clone());
            assert!(
                matches!(
                    normalize("t", &m, Source::Live),
                    Err(NormalizeError::SignTimeOutOfRange(_))
                ),
                "{t}"
            );
        }
        let mut m = staff();
        // In milliseconds: 12-digit seconds are read as milliseconds (see `sign_time`).
        m.insert("signTime".into(), json!(MAX_SIGN_TIME * 1000));
        let n = normalize("t", &m, Source::Live).expect("the last second of 9999 is a time");
        assert_eq!(n.json()["time"], json!("9999-12-31T23:59:59Z"));
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    /// Finding 10 of issue 9: backfill dropped the photo but the record said it had one.
    #[test]
    fn a_record_whose_photo_is_dropped_says_snapshot_false() {
        let mut n = normalize("t", &staff(), Source::Backfill).expect("normalizes");
        assert_eq!(n.json()["snapshot"], json!(true));
        n.drop_photo();
        assert_eq!(n.photo, None);
        assert_eq!(n.json()["snapshot"], json!(false));
    }

    #[test]
    fn a_spooled_record_loses_its_snapshot_promise_with_its_photo() {
        let n = normalize("t", &staff(), Source::Live).expect("normalizes");
        let text = without_snapshot(&n.json().to_string()).expect("rewritten");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["snapshot"], json!(false));
        assert_eq!(v["event_id"], n.json()["event_id"]);
        assert_eq!(without_snapshot(&text), None, "nothing left to change");
        assert_eq!(without_snapshot("not json"), None);
    }

    #[test]
    fn a_reduced_record_says_truncated_and_loses_the_photo_it_could_not_keep() {
        let mut n = normalize("t", &staff(), Source::Live).expect("normalizes");
        n.mark_truncated(&[]);
        assert!(
            n.json().get("truncated").is_none(),
            "nothing dropped, nothing said"
        );
        n.mark_truncated(&["description".into()]);
        assert_eq!(n.json()["truncated"], json!(true));
        assert_eq!(n.json()["snapshot"], json!(true), "the photo was kept");
        n.mark_truncated(&["signAvatar".into()]);
        assert_eq!(n.json()["snapshot"], json!(false));
        assert!(n.photo.is_none() && n.photo_problem.is_some());
    }

    #[test]
    fn a_huge_temperature_is_kept_as_sent_rather_than_rounded_to_infinity() {
        let mut m = staff();
        m.insert("temperature".into(), json!(1.7976931348623157e308));
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert_eq!(
            n.json()["temperature"]["value"],
            json!(1.7976931348623157e308)
        );
    }

    #[test]
    fn a_photo_that_is_not_a_jpeg_is_dropped_with_a_reason() {
        let mut m = staff();
        m.insert("signAvatar".into(), json!("aGVsbG8="));
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert_eq!(n.photo, None);
        assert_eq!(n.json()["snapshot"], json!(false));
        assert!(n.photo_problem.is_some());
    }

    #[test]
    fn a_data_url_photo_is_accepted() {
        let mut m = staff();
        m.insert(
            "signAvatar".into(),
            json!("data:image/jpeg;base64,/9j/4AAQ\nSkZJRg=="),
        );
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert!(n.photo.is_some());
    }

    #[test]
    fn one_hundred_billion_is_read_as_seconds_and_one_more_as_milliseconds() {
        assert_eq!(
            sign_time(Some(&json!(100_000_000_000u64))),
            Ok(100_000_000_000)
        );
        assert_eq!(sign_time(Some(&json!(100_000_000_001u64))), Ok(100_000_000));
    }

    #[test]
    fn an_out_of_range_sign_time_is_named_in_the_error_and_a_long_one_is_cut() {
        assert_eq!(
            sign_time(Some(&json!(-1))),
            Err(NormalizeError::SignTimeOutOfRange("-1".into()))
        );
        let long = json!("9".repeat(60));
        assert_eq!(
            sign_time(Some(&long)),
            Err(NormalizeError::SignTimeOutOfRange(format!(
                "\"{}…",
                "9".repeat(39)
            )))
        );
    }

    #[test]
    fn stable_hash_is_fnv_1a() {
        // The published FNV-1a 64 test vectors: ids depend on these never changing.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_temperature_state_of_one_is_high_and_minus_one_is_low() {
        for (state, word) in [(1, "high"), (-1, "low"), (0, "normal"), (7, "normal")] {
            let mut m = staff();
            m.insert("temperatureState".into(), json!(state));
            let n = normalize("t", &m, Source::Live).expect("normalizes");
            assert_eq!(n.json()["temperature"]["state"], json!(word), "{state}");
        }
    }

    #[test]
    fn a_temperature_of_zero_or_below_is_no_reading() {
        for t in [json!(0), json!(-0.0), json!(-36.6)] {
            let mut m = staff();
            m.insert("temperature".into(), t.clone());
            let n = normalize("t", &m, Source::Live).expect("normalizes");
            assert_eq!(n.json()["temperature"], Value::Null, "{t}");
        }
        let mut m = staff();
        m.insert("temperature".into(), json!(0.1));
        let n = normalize("t", &m, Source::Live).expect("normalizes");
        assert_eq!(n.json()["temperature"]["value"], json!(0.1));
    }

    #[test]
    fn a_photo_of_four_bytes_starting_as_a_jpeg_is_taken_and_three_are_not() {
        assert_eq!(decode_photo("/9j/4A=="), Ok(vec![0xFF, 0xD8, 0xFF, 0xE0]));
        assert_eq!(
            decode_photo("/9j/"),
            Err("photo is not a JPEG (3 bytes)".into())
        );
    }

    #[test]
    fn a_photo_must_start_with_both_jpeg_bytes() {
        // FF 00 FF E0 and 00 D8 FF E0: one of the two bytes right is not enough.
        assert_eq!(
            decode_photo("/wD/4A=="),
            Err("photo is not a JPEG (4 bytes)".into())
        );
        assert_eq!(
            decode_photo("ANj/4A=="),
            Err("photo is not a JPEG (4 bytes)".into())
        );
    }

    #[test]
    fn white_space_inside_a_photo_is_dropped_and_missing_padding_is_tolerated() {
        let jpeg = Ok(vec![0xFF, 0xD8, 0xFF, 0xE0]);
        assert_eq!(decode_photo("/9j/\r\n4A=="), jpeg);
        assert_eq!(decode_photo(" /9j/ 4A==\n"), jpeg);
        assert_eq!(decode_photo("/9j/4A"), jpeg);
        assert_eq!(decode_photo("/9j/\n4A"), jpeg);
        assert_eq!(decode_photo("data:image/jpeg;base64,/9j/\t4A"), jpeg);
        // Not base64 at all, with or without white space, is an error, not a panic.
        assert!(decode_photo("/9j/ 4A==é").is_err());
        assert!(decode_photo("é").is_err());
    }

    #[test]
    fn a_base64_marker_counts_only_in_a_data_url() {
        assert!(decode_photo("junk base64,/9j/4A==").is_err());
        assert_eq!(
            decode_photo("data:image/jpeg;base64,/9j/4A=="),
            Ok(vec![0xFF, 0xD8, 0xFF, 0xE0])
        );
    }
}
