//! Reading a record push that is too large to take whole (a 5 MB photo, a 600 KB description),
//! without its oversized fields.
//!
//! The frame is already in memory (the transport caps it); what must not happen is parsing it
//! into a second full copy, or dropping the record because one field is huge. So the frame is
//! walked once with serde: `code` and `data` are kept, every other top-level member is skipped
//! unread, and each field of `data` is kept only while it fits the limits below. Skipped text
//! is never copied (serde_json skips it in place), so the memory cost is bounded by
//! [`Limits::total`], whatever the frame holds.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// How much of an oversized frame is kept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest text kept in an ordinary field.
    pub field: usize,
    /// Longest capture photo (`signAvatar`, base64) kept.
    pub photo: usize,
    /// Longest member name kept.
    pub key: usize,
    /// Everything kept, in bytes of text plus a charge per value, over the whole record.
    pub total: usize,
}

/// The capture photo: kept up to [`Limits::photo`].
const CAPTURE: &str = "signAvatar";
/// The registered user photo: never published (see `record::MAPPED`), so skipped unread.
const USER_PHOTO: &str = "photo";
/// What a kept value costs beyond its text, so that a million tiny values are not free.
const PER_VALUE: usize = 32;

/// What was read.
#[derive(Debug, Default, PartialEq)]
pub struct Lean {
    pub code: Option<Value>,
    /// `None`: no `data`; `Err`: `data` is not an object (its kind).
    pub data: Option<Result<Map<String, Value>, &'static str>>,
    /// Fields of `data` left out, in frame order (long names shortened).
    pub dropped: Vec<String>,
}

/// Reads `{"code":..., "data":{...}, ...}` from a frame of any size. `Err` when the frame is
/// not one JSON object.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Lean, String> {
    let budget = Budget {
        left: Cell::new(limits.total),
        limits,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let lean = TopSeed(&budget)
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(lean)
}

struct Budget {
    left: Cell<usize>,
    limits: Limits,
}

impl Budget {
    /// Takes `n` bytes from the budget, or says no (and takes nothing).
    fn take(&self, n: usize) -> bool {
        self.left
            .get()
            .checked_sub(n)
            .map(|rest| self.left.set(rest))
            .is_some()
    }
}

fn short_name(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

/// A member name, or `None` when it is longer than the limit.
struct KeySeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(
            (s.len() <= self.0.limits.key && self.0.take(s.len() + PER_VALUE))
                .then(|| s.to_string()),
        )
    }
}

struct TopSeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Lean;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Lean, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Lean;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lean, A::Error> {
        let mut lean = Lean::default();
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key.as_deref() {
                Some("code") => {
                    lean.code = map.next_value_seed(ValueSeed {
                        budget: self.0,
                        limit: self.0.limits.field,
                    })?;
                }
                Some("data") => {
                    let (data, dropped) = map.next_value_seed(DataSeed(self.0))?;
                    lean.data = Some(data);
                    lean.dropped = dropped;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(lean)
    }
}

/// `data`: an object whose fields are kept one by one, or the kind of what it is instead.
struct DataSeed<'a>(&'a Budget);

type DataOut = (Result<Map<String, Value>, &'static str>, Vec<String>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = DataOut;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<DataOut, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = DataOut;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataOut, A::Error> {
        let mut out = Map::new();
        let mut dropped = Vec::new();
        // Each name is read in full first (to know whether it is the photo), then limited.
        while let Some(raw) = map.next_key_seed(RawKey)? {
            if raw == USER_PHOTO {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if raw.len() > self.0.limits.key || !self.0.take(raw.len() + PER_VALUE) {
                map.next_value::<IgnoredAny>()?;
                dropped.push(short_name(&raw));
                continue;
            }
            let limit = if raw == CAPTURE {
                self.0.limits.photo
            } else {
                self.0.limits.field
            };
            match map.next_value_seed(ValueSeed {
                budget: self.0,
                limit,
            })? {
                Some(v) => {
                    out.insert(raw.into_owned(), v);
                }
                None => dropped.push(short_name(&raw)),
            }
        }
        Ok((Ok(out), dropped))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DataOut, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((Err("a list"), Vec::new()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<DataOut, E> {
        Ok((Err("a string"), Vec::new()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<DataOut, E> {
        Ok((Err("a boolean"), Vec::new()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<DataOut, E> {
        Ok((Err("a number"), Vec::new()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<DataOut, E> {
        Ok((Err("a number"), Vec::new()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<DataOut, E> {
        Ok((Err("a number"), Vec::new()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<DataOut, E> {
        Ok((Err("null"), Vec::new()))
    }
}

/// A member name as borrowed or (with escapes) owned text. Names of a frame that got this far
/// are bounded by the transport's frame limit, and each is dropped right after the check.
struct RawKey;

impl<'de> DeserializeSeed<'de> for RawKey {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for RawKey {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(s.to_string()))
    }
}

/// One value, or `None` when any text in it is longer than `limit` or the budget is spent. The
/// value is always consumed whole, kept or not.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    budget: &'a Budget,
    limit: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Option<Value>, E> {
        Ok(self.budget.take(PER_VALUE).then_some(Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<Value>, E> {
        Ok(self.budget.take(PER_VALUE).then(|| Value::from(n)))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<Value>, E> {
        Ok(self.budget.take(PER_VALUE).then(|| Value::from(n)))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Option<Value>, E> {
        Ok(self.budget.take(PER_VALUE).then(|| Value::from(n)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(self.budget.take(PER_VALUE).then_some(Value::Null))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<Value>, E> {
        let keep = s.len() <= self.limit && self.budget.take(s.len() + PER_VALUE);
        Ok(keep.then(|| Value::String(s.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let mut items = Some(Vec::new());
        while let Some(item) = seq.next_element_seed(self)? {
            match (item, items.as_mut()) {
                (Some(v), Some(list)) => list.push(v),
                // One element dropped drops the list, but the rest must still be read.
                _ => items = None,
            }
        }
        Ok(items
            .filter(|_| self.budget.take(PER_VALUE))
            .map(Value::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let mut members = Some(Map::new());
        while let Some(key) = map.next_key_seed(KeySeed(self.budget))? {
            let value = map.next_value_seed(self)?;
            match (key, value, members.as_mut()) {
                (Some(k), Some(v), Some(m)) => {
                    m.insert(k, v);
                }
                _ => members = None,
            }
        }
        Ok(members
            .filter(|_| self.budget.take(PER_VALUE))
            .map(Value::Object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SMALL: Limits = Limits {
        field: 16,
        photo: 32,
        key: 12,
        total: 4096,
    };

    #[test]
    fn code_and_data_are_kept_and_other_members_skipped() {
        let l = parse(
            br#"{"code":30000,"message":"push record","data":{"id":7,"signTime":1600000000}}"#,
            SMALL,
        )
        .expect("parses");
        assert_eq!(l.code, Some(json!(30000)));
        let data = l.data.expect("data").expect("an object");
        assert_eq!(data["id"], json!(7));
        assert!(l.dropped.is_empty());
    }

    #[test]
    fn a_field_over_its_limit_is_dropped_and_named() {
        let frame = format!(
            r#"{{"code":30000,"data":{{"id":1,"description":"{}","signAvatar":"{}","name":"Ada"}}}}"#,
            "d".repeat(17),
            "/9j/".repeat(8)
        );
        let l = parse(frame.as_bytes(), SMALL).expect("parses");
        let data = l.data.expect("data").expect("an object");
        assert_eq!(l.dropped, vec!["description".to_string()]);
        assert_eq!(
            data["signAvatar"],
            json!("/9j/".repeat(8)),
            "the photo has its own limit"
        );
        assert_eq!(data["name"], json!("Ada"));
    }

    #[test]
    fn a_field_with_a_name_over_the_limit_is_dropped_and_named_short() {
        let frame = format!(
            r#"{{"code":30000,"data":{{"{}":1,"id":2}}}}"#,
            "k".repeat(100)
        );
        let l = parse(frame.as_bytes(), SMALL).expect("parses");
        assert_eq!(l.dropped, vec![format!("{}…", "k".repeat(40))]);
        assert_eq!(l.data.expect("data").expect("object")["id"], json!(2));
    }

    #[test]
    fn the_user_photo_is_skipped_without_counting_as_a_loss() {
        let frame = format!(
            r#"{{"code":30000,"data":{{"photo":"{}"}}}}"#,
            "p".repeat(100)
        );
        let l = parse(frame.as_bytes(), SMALL).expect("parses");
        assert!(l.dropped.is_empty());
        assert!(l.data.expect("data").expect("object").is_empty());
    }

    #[test]
    fn the_budget_bounds_what_is_kept_however_many_fields_there_are() {
        let fields: Vec<String> = (0..1000)
            .map(|i| format!(r#""f{i}":"{}""#, "x".repeat(15)))
            .collect();
        let frame = format!(r#"{{"code":30000,"data":{{{}}}}}"#, fields.join(","));
        let l = parse(frame.as_bytes(), SMALL).expect("parses");
        let kept = l.data.expect("data").expect("object").len();
        assert!(kept > 10 && kept < 100, "{kept} kept");
        assert_eq!(kept + l.dropped.len(), 1000);
    }

    #[test]
    fn a_nested_value_with_a_long_string_is_dropped_whole() {
        let frame = format!(
            r#"{{"code":30000,"data":{{"tags":["a",{{"b":"{}"}}],"ok":[1,2]}}}}"#,
            "y".repeat(40)
        );
        let l = parse(frame.as_bytes(), SMALL).expect("parses");
        assert_eq!(l.dropped, vec!["tags".to_string()]);
        assert_eq!(l.data.expect("data").expect("object")["ok"], json!([1, 2]));
    }

    #[test]
    fn data_that_is_not_an_object_says_what_it_is() {
        let l = parse(br#"{"code":30000,"data":[1,2]}"#, SMALL).expect("parses");
        assert_eq!(l.data, Some(Err("a list")));
    }

    #[test]
    fn broken_or_trailing_text_is_an_error() {
        assert!(parse(b"{\"code\":30000,\"data\":{", SMALL).is_err());
        assert!(parse(b"[1]", SMALL).is_err());
        assert!(parse(b"{} x", SMALL).is_err());
    }
}
