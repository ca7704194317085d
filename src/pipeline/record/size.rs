//! The record's size policy, in one place: what the bridge reads of a push frame, the largest
//! capture photo it keeps, and the largest record JSON it spools. A record is fitted to it once,
//! before it is spooled ([`super::Normalized::published`]); the publisher only fits again an
//! entry that an older version spooled over the limit ([`refit`]). `pipeline/publish` asserts at
//! compile time that these limits, with the longest topic, fit MQTT's packet limit.
//!
//! A record that does not fit goes out reduced, never dropped: it must not block the records
//! behind it. Pure.

use serde_json::{Map, Value};

use super::shape::Record;
use crate::integrations::terminal::lean;

/// Push frames up to this are parsed whole (a real one is ~58 KB; known users add their photo);
/// larger ones are read without their oversized fields ([`lean`], with [`LEAN`]).
pub const WHOLE_FRAME: usize = 1 << 20;

/// The largest capture photo (JPEG bytes) kept with a record. A larger one is dropped at ingest
/// with its reason, and the record says `"snapshot": false`.
pub const MAX_PHOTO: usize = 440 << 10;

/// The largest record JSON spooled and published.
pub const MAX_JSON: usize = 440 << 10;

/// What is kept of a frame over [`WHOLE_FRAME`]: a photo of up to [`MAX_PHOTO`] (as base64),
/// ordinary fields of up to 64 KiB, 1 MiB in all.
pub const LEAN: lean::Limits = lean::Limits {
    field: 64 << 10,
    photo: MAX_PHOTO.div_ceil(3) * 4,
    key: 256,
    total: WHOLE_FRAME,
};

// The lean read keeps a photo of every size the policy keeps, and not more.
const _: () = assert!(LEAN.photo / 4 * 3 >= MAX_PHOTO && LEAN.photo / 4 * 3 < MAX_PHOTO + 3);

/// Strings longer than this are shortened when dropping `extra` fields was not enough.
const SHORT: usize = 256;

/// A record's JSON, and how it was made to fit.
#[derive(Debug, PartialEq, Eq)]
pub enum Fitted {
    /// As it stands.
    Whole(String),
    /// Reduced to fit.
    Reduced(String),
    /// Reduced, and still over (only a terminal id near MQTT's topic limit can make it so).
    Over(String),
}

/// The record's JSON, at most `max` bytes when it can be: as it stands if it fits; otherwise with
/// `"truncated": true`, the fields under `extra` dropped largest first, then every string of a
/// person or under `extra` longer than [`SHORT`] characters shortened.
pub fn fit(record: &Record, max: usize) -> Fitted {
    let text = record.to_json();
    if text.len() <= max {
        return Fitted::Whole(text);
    }
    let mut record = record.clone();
    record.truncated = true;
    let mut sizes: Vec<(usize, String)> = record
        .extra
        .iter()
        .map(|(k, v)| (v.to_string().len(), k.clone()))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut over = text.len().saturating_sub(max);
    for (size, key) in sizes {
        record.extra.remove(&key);
        over = over.saturating_sub(size + key.len() + 4);
        if over == 0 {
            break;
        }
    }
    let text = record.to_json();
    if text.len() <= max {
        return Fitted::Reduced(text);
    }
    let p = &mut record.person;
    for s in [
        &mut p.user_id,
        &mut p.name,
        &mut p.job_number,
        &mut p.department,
        &mut p.ic_number,
    ] {
        shorten(s);
    }
    shorten_all(&mut record.extra);
    let text = record.to_json();
    if text.len() <= max {
        Fitted::Reduced(text)
    } else {
        Fitted::Over(text)
    }
}

/// A spooled record's JSON fitted now: for an entry an older version spooled before this policy
/// (the text it stored is outside input by now). `None` when it is not a record or cannot fit.
pub fn refit(json: &str, max: usize) -> Option<String> {
    match fit(&Record::from_json(json).ok()?, max) {
        Fitted::Whole(text) | Fitted::Reduced(text) => Some(text),
        Fitted::Over(_) => None,
    }
}

fn shorten(s: &mut String) {
    if s.chars().count() > SHORT {
        let cut: String = s.chars().take(SHORT).collect();
        *s = format!("{cut}…");
    }
}

fn shorten_all(map: &mut Map<String, Value>) {
    for v in map.values_mut() {
        match v {
            Value::String(s) => shorten(s),
            Value::Object(m) => shorten_all(m),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(extra: Value, name: &str) -> Record {
        let mut r = Record::bare("door", "door-1-1", 1);
        r.person.name = name.into();
        if let Value::Object(m) = extra {
            r.extra = m;
        }
        r
    }

    /// The JSON when it fits (whole or reduced), the reduced JSON as the error when not.
    fn fitted(r: &Record, max: usize) -> Result<String, String> {
        match fit(r, max) {
            Fitted::Whole(t) | Fitted::Reduced(t) => Ok(t),
            Fitted::Over(t) => Err(t),
        }
    }

    #[test]
    fn a_record_says_whether_it_was_reduced() {
        let r = record(json!({"description": "x".repeat(100)}), "Ada");
        assert_eq!(fit(&r, len(&r)), Fitted::Whole(r.to_json()));
        assert!(matches!(fit(&r, len(&r) - 1), Fitted::Reduced(_)));
        assert!(matches!(fit(&r, 10), Fitted::Over(_)));
    }

    fn len(r: &Record) -> usize {
        r.to_json().len()
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("json")
    }

    #[test]
    fn a_record_that_fits_goes_out_unchanged() {
        let r = record(json!({"description": "short"}), "Ada");
        assert_eq!(fitted(&r, 10_000), Ok(r.to_json()));
    }

    #[test]
    fn an_oversized_extra_field_is_dropped_and_the_record_says_truncated() {
        let big = "x".repeat(600_000);
        let r = record(json!({"description": big, "mobile": "123"}), "Ada");
        let out = fitted(&r, MAX_JSON).expect("fits once cut");
        assert!(out.len() <= MAX_JSON);
        let v = parsed(&out);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["event_id"], "door-1-1");
        assert!(v["extra"].get("description").is_none());
        assert_eq!(
            v["extra"]["mobile"], "123",
            "small fields stay when the big one was enough"
        );
    }

    #[test]
    fn long_person_fields_are_shortened_when_dropping_extra_is_not_enough() {
        let r = record(json!({}), &"n".repeat(10_000));
        let out = fitted(&r, 2_000).expect("fits once shortened");
        let v = parsed(&out);
        assert_eq!(v["truncated"], true);
        assert!(v["person"]["name"].as_str().expect("name").chars().count() <= SHORT + 1);
    }

    #[test]
    fn a_record_that_cannot_fit_comes_back_reduced_as_an_error() {
        let r = record(json!({"note": "k".repeat(1_000)}), "Ada");
        let out = fitted(&r, 20).expect_err("cannot fit");
        let v = parsed(&out);
        assert_eq!(v["truncated"], true);
        assert!(v.get("extra").is_none(), "extra went first");
    }

    #[test]
    fn a_record_of_exactly_the_limit_goes_out_unchanged_and_one_byte_more_is_cut() {
        let r = record(json!({"description": "x".repeat(100)}), "Ada");
        assert_eq!(fitted(&r, len(&r)), Ok(r.to_json()));
        let v = parsed(&fitted(&r, len(&r) - 1).expect("fits without the description"));
        assert_eq!(v["truncated"], true);
        assert!(v.get("extra").is_none());
    }

    #[test]
    fn the_largest_extra_field_goes_first_and_only_as_many_as_needed() {
        let r = record(
            json!({"small": "s".repeat(100), "large": "l".repeat(5_000), "medium": "m".repeat(1_000)}),
            "Ada",
        );
        let v = parsed(&fitted(&r, len(&r) - 10).expect("fits"));
        assert!(v["extra"].get("large").is_none());
        assert_eq!(v["extra"]["medium"], "m".repeat(1_000));
        assert_eq!(v["extra"]["small"], "s".repeat(100));
    }

    #[test]
    fn a_string_of_exactly_the_short_length_is_kept_and_longer_ones_end_in_an_ellipsis() {
        let mut r = record(
            json!({"note": "k".repeat(SHORT), "nested": {"deep": "d".repeat(SHORT + 1)}, "n": 7}),
            &"n".repeat(SHORT + 50),
        );
        r.person.department = "p".repeat(3_000);
        let v = parsed(&fitted(&r, 1_500).expect("fits"));
        assert_eq!(v["person"]["name"], format!("{}…", "n".repeat(SHORT)));
        assert_eq!(v["person"]["department"], format!("{}…", "p".repeat(SHORT)));
        let v = parsed(&fitted(&r, len(&r) - 1).expect("fits"));
        assert!(v["extra"].get("nested").is_none(), "the largest went");
        assert_eq!(v["extra"]["note"], "k".repeat(SHORT));
        let short = record(json!({}), &"n".repeat(SHORT));
        assert_eq!(fitted(&short, 10_000), Ok(short.to_json()));
        // Dropping `big` makes up the estimated excess; the `"truncated":true` flag's bytes then
        // come from shortening: the long name is cut, the note of exactly SHORT is kept.
        let big = "b".repeat(1_000);
        let r = record(
            json!({"note": "k".repeat(SHORT), "big": big}),
            &"n".repeat(SHORT + 50),
        );
        let v = parsed(&fitted(&r, len(&r) - member_len("big", &big)).expect("fits"));
        assert_eq!(v["person"]["name"], format!("{}…", "n".repeat(SHORT)));
        assert_eq!(
            v["extra"]["note"],
            "k".repeat(SHORT),
            "not longer than SHORT: kept"
        );
        // Strings left under `extra`, nested or not, are shortened too.
        let r = record(
            json!({"s": "s".repeat(SHORT + 20), "nested": {"deep": "d".repeat(SHORT + 20)}, "big": big}),
            "Ada",
        );
        let v = parsed(&fitted(&r, len(&r) - member_len("big", &big)).expect("fits"));
        assert_eq!(v["extra"]["s"], format!("{}…", "s".repeat(SHORT)));
        assert_eq!(
            v["extra"]["nested"]["deep"],
            format!("{}…", "d".repeat(SHORT))
        );
    }

    #[test]
    fn a_record_exactly_at_the_limit_after_cutting_goes_out() {
        let r = record(json!({"description": "x".repeat(10_000)}), "Ada");
        let cut = fitted(&r, 10_000).expect("fits");
        assert_eq!(fitted(&r, cut.len()), Ok(cut.clone()));
        assert!(fitted(&r, cut.len() - 1).is_err());
    }

    /// What dropping `extra.description` saves: its value, its key, two quotes, a colon, a comma.
    fn member_len(key: &str, value: &str) -> usize {
        json!(value).to_string().len() + key.len() + 4
    }

    #[test]
    fn dropping_stops_once_the_dropped_fields_make_up_the_excess() {
        let description = "x".repeat(1_000);
        let r = record(
            json!({"description": description, "mobile": "123"}),
            &"n".repeat(300),
        );
        let v =
            parsed(&fitted(&r, len(&r) - member_len("description", &description)).expect("fits"));
        assert!(v["extra"].get("description").is_none());
        assert_eq!(
            v["extra"]["mobile"], "123",
            "the excess was made up: mobile stays"
        );
        // The `"truncated":true` flag's bytes come from shortening the long name.
        assert_eq!(v["person"]["name"], format!("{}…", "n".repeat(SHORT)));
    }

    #[test]
    fn one_byte_more_than_the_largest_field_saves_drops_the_next_largest_too() {
        let description = "x".repeat(1_000);
        let r = record(
            json!({"description": description, "note": "k".repeat(40)}),
            "Ada",
        );
        let out = fitted(&r, len(&r) - member_len("description", &description) - 1)
            .expect("fits once both are dropped");
        let v = parsed(&out);
        assert!(v.get("extra").is_none(), "{v}");
        assert_eq!(v["truncated"], true);
    }

    #[test]
    fn a_spooled_record_over_the_limit_is_fitted_again_and_other_text_is_not() {
        let r = record(json!({"description": "x".repeat(5_000)}), "Ada");
        let v = parsed(&refit(&r.to_json(), 1_000).expect("fits"));
        assert_eq!(v["truncated"], true);
        assert_eq!(v["event_id"], "door-1-1");
        assert_eq!(refit(&r.to_json(), 100_000), Some(r.to_json()));
        assert_eq!(refit(&r.to_json(), 10), None);
        assert_eq!(refit(r#"{"event_id":"e","pad":"xxxx"}"#, 10), None);
    }

    #[test]
    fn the_worst_a_terminal_can_send_fits_the_policy() {
        // Every field a terminal fills at its longest (control characters escape to six bytes
        // each), under a terminal id as long as a topic allows beside the base topic.
        let hostile = "\u{1}".repeat(200_000);
        let mut r = record(
            json!({"description": hostile, "more": {"x": hostile}}),
            &hostile,
        );
        r.terminal = "t".repeat(60_000);
        r.event_id = format!("{}-1-1", r.terminal);
        let p = &mut r.person;
        for s in [
            &mut p.user_id,
            &mut p.job_number,
            &mut p.department,
            &mut p.ic_number,
        ] {
            s.clone_from(&hostile);
        }
        let out = fitted(&r, MAX_JSON).expect("fits");
        assert!(out.len() <= MAX_JSON);
    }
}
