//! The published record as a type: [`super::normalize`] builds it, the spool stores its JSON,
//! and what the bridge reads back (Home Assistant's event, the stranger captures) reads these
//! fields, never a JSON tree. Field order is the published order (docs/interface.md).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Source;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub event_id: String,
    pub terminal: String,
    pub record_id: i64,
    /// RFC 3339, UTC.
    pub time: String,
    /// Unix seconds, as the terminal's clock said.
    pub timestamp: u64,
    pub source: Source,
    pub person: Person,
    /// `face`, `qr`, `card`, `uuid` or `unknown`.
    pub method: String,
    pub similarity: Option<i64>,
    pub temperature: Option<Temperature>,
    pub mask: Option<Mask>,
    /// Whether a capture photo goes out with the record (consumers wait for it only then).
    pub snapshot: bool,
    /// Whatever else the terminal sent, as it sent it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Some of what the terminal sent had to go (an oversized frame, the size policy).
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub user_id: String,
    pub name: String,
    /// `staff`, `visitor`, `blacklist`, `stranger` or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    pub job_number: String,
    pub department: String,
    pub ic_number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub value: f64,
    /// `C` or `F`.
    pub unit: String,
    /// `normal`, `high` or `low`.
    pub state: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    pub worn: bool,
    pub alarm: bool,
}

impl Record {
    /// The JSON as published. Cannot fail: strings, numbers and a JSON map (whose keys are
    /// strings); a non-finite temperature is written as `null` by serde_json.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A spooled record read back. `Err` for text this type cannot read (a damaged entry).
    pub fn from_json(text: &str) -> Result<Record, String> {
        serde_json::from_str(text).map_err(|e| format!("record JSON: {e}"))
    }

    /// A record with its identity and nothing else known (as a terminal that sent only an id and
    /// a time would give): what tests and benchmarks of the spool store.
    pub fn bare(terminal: &str, event_id: &str, sign_time: u64) -> Record {
        Record {
            event_id: event_id.into(),
            terminal: terminal.into(),
            record_id: 0,
            time: super::rfc3339(sign_time),
            timestamp: sign_time,
            source: Source::Live,
            person: Person {
                user_id: String::new(),
                name: String::new(),
                kind: "unknown".into(),
                job_number: String::new(),
                department: String::new(),
                ic_number: String::new(),
            },
            method: "face".into(),
            similarity: None,
            temperature: None,
            mask: None,
            snapshot: false,
            extra: Map::new(),
            truncated: false,
        }
    }
}

/// Whether a spooled record is a stranger's: only `person.type` is read, borrowed, so an entry
/// with a photo costs no copy of its record (the publisher asks this of every such entry on a
/// terminal that keeps captures).
pub fn is_stranger(json: &str) -> bool {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        person: Option<Kind<'a>>,
    }
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type")]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Head<'_>>(json)
        .ok()
        .and_then(|r| r.person?.kind)
        == Some("stranger")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let mut r = Record::bare("door", "door-1700000000-7", 1_700_000_000);
        r.extra
            .insert("remark".into(), Value::from("Zoë \"Z\"\u{a0}Ng"));
        r.temperature = Some(Temperature {
            value: 36.6,
            unit: "C".into(),
            state: "normal".into(),
        });
        r.truncated = true;
        assert_eq!(Record::from_json(&r.to_json()), Ok(r));
        assert!(Record::from_json("{}").is_err());
    }

    #[test]
    fn extra_and_truncated_are_left_out_when_there_is_nothing_to_say() {
        let r = Record::bare("door", "e", 1);
        let text = r.to_json();
        assert!(
            !text.contains("extra") && !text.contains("truncated"),
            "{text}"
        );
        assert!(
            text.starts_with(
                r#"{"event_id":"e","terminal":"door","record_id":0,"time":"1970-01-01T00:00:01Z""#
            ),
            "{text}"
        );
    }

    #[test]
    fn only_a_strangers_record_is_a_strangers() {
        assert!(is_stranger(
            r#"{"event_id":"e","person":{"name":"","type":"stranger"},"snapshot":true}"#
        ));
        for json in [
            r#"{"person":{"type":"staff"}}"#,
            r#"{"person":{}}"#,
            r#"{"person":{"type":7}}"#,
            r#"{"person":null}"#,
            r#"{"event_id":"e"}"#,
            r#"{"person":{"type":"stranger"}"#,
            "not json",
        ] {
            assert!(!is_stranger(json), "{json}");
        }
    }
}
