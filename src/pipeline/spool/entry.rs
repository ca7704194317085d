//! How a queued record is stored (a frame's body in the log): a small JSON head, a newline, then
//! the record JSON exactly as it is published (not escaped into a string: ~10 % smaller, and
//! serialized once).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::pipeline::record::{Normalized, Source};

/// What an entry's photo file must be: a torn write after a power cut shows as a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoRef {
    pub len: u64,
    /// CRC-32 of the photo: crc32fast uses the CPU's CRC or carry-less multiply instructions (the
    /// Pi Zero 2's Cortex-A53 has them) and a table elsewhere. FNV-1a, a byte at a time, was a
    /// tenth of the bridge's CPU per photo record (perf, BENCHMARKS.md).
    pub crc32: u32,
}

impl PhotoRef {
    /// The reference a new entry stores for `photo`.
    pub fn of(photo: &[u8]) -> PhotoRef {
        PhotoRef {
            len: photo.len() as u64,
            crc32: crc32fast::hash(photo),
        }
    }

    /// Whether `bytes` are the photo this names, whole.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.len && crc32fast::hash(bytes) == self.crc32
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub terminal: String,
    pub event_id: String,
    pub sign_time: u64,
    /// The record JSON, as published.
    pub json: String,
    /// When it entered the spool (Unix ms), for the "age of the oldest queued record" figure.
    pub spooled_ms: u64,
    pub photo: Option<PhotoRef>,
}

/// Everything but the record JSON; also all the indexes need.
#[derive(Serialize, Deserialize)]
pub(super) struct Head<'a> {
    #[serde(borrow)]
    pub terminal: Cow<'a, str>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    pub sign_time: u64,
    pub spooled_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<PhotoRef>,
}

/// A record on its way to the spool: its JSON already serialized, so that what waits in
/// memory (against the byte budget) is what its bytes say. A `Normalized` record's JSON tree
/// takes several times its serialized size (an ordered map per object, a string per field):
/// budgeted by its serialized size, 8 MiB of backfilled records took 90 MiB.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub event_id: String,
    pub sign_time: u64,
    /// The record JSON, as it is published.
    pub json: String,
    pub photo: Option<Vec<u8>>,
    /// Fetched by backfill (counted as recovered when the spool did not have it).
    pub backfill: bool,
}

impl From<Normalized> for Incoming {
    fn from(rec: Normalized) -> Incoming {
        Incoming {
            backfill: rec.record.source == Source::Backfill,
            json: exact(rec.published()),
            sign_time: rec.sign_time(),
            event_id: exact(rec.record.event_id),
            photo: rec.photo.map(|mut p| {
                p.shrink_to_fit();
                p
            }),
        }
    }
}

/// `s` without spare capacity: a string serialized into a growing buffer can hold twice its
/// length, and what waits must hold what [`Incoming::size`] counts.
fn exact(mut s: String) -> String {
    s.shrink_to_fit();
    s
}

impl Incoming {
    /// `rec` with `photo` (a copy; for callers that hold the record, not own it).
    pub fn of(rec: &Normalized, photo: Option<&[u8]>) -> Incoming {
        Incoming {
            event_id: rec.record.event_id.clone(),
            sign_time: rec.sign_time(),
            json: rec.published(),
            photo: photo.map(<[u8]>::to_vec),
            backfill: rec.record.source == Source::Backfill,
        }
    }

    /// Bytes it holds: what it costs against the budget.
    pub fn size(&self) -> usize {
        self.json
            .len()
            .saturating_add(self.event_id.len())
            .saturating_add(self.photo.as_ref().map_or(0, Vec::len))
    }
}

/// A record encoded for the spool, once: the room check needs its size before it is stored.
pub struct Encoded<'a> {
    pub(super) terminal: &'a str,
    pub(super) event_id: &'a str,
    pub(super) sign_time: u64,
    pub(super) value: Vec<u8>,
    pub(super) photo: Option<&'a [u8]>,
}

impl<'a> Encoded<'a> {
    pub fn new(terminal: &'a str, rec: &'a Incoming, spooled_ms: u64) -> Encoded<'a> {
        let photo = rec.photo.as_deref();
        let head = Head {
            terminal: terminal.into(),
            event_id: rec.event_id.as_str().into(),
            sign_time: rec.sign_time,
            spooled_ms,
            photo: photo.map(PhotoRef::of),
        };
        let mut value =
            Vec::with_capacity(128 + terminal.len() + rec.event_id.len() + rec.json.len());
        // Neither can fail: strings, integers and a JSON value (whose keys are strings) into a Vec.
        let _ = serde_json::to_writer(&mut value, &head);
        value.push(b'\n');
        value.extend_from_slice(rec.json.as_bytes());
        Encoded {
            terminal,
            event_id: &rec.event_id,
            sign_time: rec.sign_time,
            value,
            photo,
        }
    }

    /// Bytes it adds to the spool on disk: the entry (sled's own overhead is counted at the next
    /// flush) and its photo file's blocks.
    pub fn size(&self) -> u64 {
        let photo = self
            .photo
            .map_or(0, |p| super::photos::allocated(p.len() as u64));
        self.value.len() as u64 + photo
    }
}

/// A whole stored entry.
pub(super) fn decode(value: &[u8]) -> Result<Entry, String> {
    let (head, json) = split(value).ok_or("entry: no newline after its head")?;
    let head: Head<'_> = serde_json::from_slice(head).map_err(|e| format!("entry head: {e}"))?;
    let json = std::str::from_utf8(json).map_err(|e| format!("record JSON: {e}"))?;
    Ok(Entry {
        terminal: head.terminal.into_owned(),
        event_id: head.event_id.into_owned(),
        sign_time: head.sign_time,
        json: json.to_owned(),
        spooled_ms: head.spooled_ms,
        photo: head.photo,
    })
}

fn split(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = value.iter().position(|b| *b == b'\n')?;
    Some((&value[..at], &value[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::record::size::MAX_JSON;
    use crate::pipeline::record::Record;
    use serde_json::json;

    fn rec() -> Normalized {
        let mut r = Record::bare("door", "door-1700000000-7", 1_700_000_000);
        r.person.name = "Zoë \"Z\"\u{a0}Ng".into();
        r.snapshot = true;
        Normalized::of(r)
    }

    #[test]
    fn a_record_on_its_way_is_fitted_to_the_size_policy() {
        let mut r = rec();
        r.record
            .extra
            .insert("description".into(), json!("d".repeat(MAX_JSON)));
        let i = Incoming::from(r);
        assert!(i.json.len() <= MAX_JSON);
        assert!(i.json.contains(r#""truncated":true"#), "{}", &i.json[..200]);
    }

    #[test]
    fn a_record_on_its_way_holds_its_json_serialized_and_costs_what_it_holds() {
        let mut r = rec();
        r.photo = Some(b"jpeg".to_vec());
        let json = r.record.to_json();
        let live = Incoming::from(r.clone());
        assert_eq!(live.json, json);
        assert_eq!(live.photo.as_deref(), Some(&b"jpeg"[..]));
        assert_eq!(live.size(), json.len() + r.event_id().len() + 4);
        let held = live.json.capacity()
            + live.event_id.capacity()
            + live.photo.as_ref().map_or(0, Vec::capacity);
        assert_eq!(held, live.size(), "it holds no more than it is counted for");
        assert!(!live.backfill);
        r.record.source = Source::Backfill;
        assert!(Incoming::from(r).backfill);
    }

    #[test]
    fn an_entry_reads_back_as_it_was_written() {
        let r = rec();
        let i = Incoming::of(&r, Some(b"jpeg"));
        let e = Encoded::new("door", &i, 42);
        let back = decode(&e.value).expect("decodes");
        assert_eq!(
            back,
            Entry {
                terminal: "door".into(),
                event_id: r.event_id().into(),
                sign_time: r.sign_time(),
                json: r.record.to_json(),
                spooled_ms: 42,
                photo: Some(PhotoRef {
                    len: 4,
                    crc32: crc32fast::hash(b"jpeg"),
                }),
            }
        );
    }

    #[test]
    fn the_record_json_is_stored_verbatim_not_escaped() {
        let r = rec();
        let without = Incoming::of(&r, None);
        let e = Encoded::new("door", &without, 1);
        let text = String::from_utf8(e.value.clone()).expect("utf-8");
        assert!(
            text.ends_with(&format!("\n{}", r.record.to_json())),
            "{text}"
        );
        assert_eq!(e.size(), e.value.len() as u64);
        let i = Incoming::of(&r, Some(b"12345"));
        let with_photo = Encoded::new("door", &i, 1);
        assert_eq!(with_photo.size(), with_photo.value.len() as u64 + 4096);
    }

    #[test]
    fn a_photo_is_checked_by_its_length_and_crc() {
        let photo = b"\xff\xd8 a capture \xff\xd9";
        let r = PhotoRef::of(photo);
        assert!(r.matches(photo));
        let mut torn = photo.to_vec();
        torn[5] ^= 1;
        assert!(!r.matches(&torn), "one bit flipped");
        assert!(!r.matches(&photo[..photo.len() - 1]), "cut short");
        // CRC-32 of "123456789" is the standard check value.
        assert_eq!(PhotoRef::of(b"123456789").crc32, 0xCBF4_3926);
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\n",
            b"{\"terminal\":1}\n{}",
            b"garbage",
            b"{}\n\xff\xfe",
            br#"{"terminal":"t","event_id":"e","sign_time":1,"spooled_ms":1,"json":"{}"}"#,
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
