//! What goes out for one spool entry, decided without IO: its photo on the retained snapshot
//! topic (only the newest capture of its terminal, and only one a packet carries), and its record
//! JSON: as spooled, without the snapshot it can no longer promise, fitted again when an older
//! version spooled it over the limit, or else the reason it goes to quarantine. Pure.

use std::collections::HashMap;

use crate::pipeline::record::{self, size};

/// The room a packet leaves for a payload on each topic (the packet limit less topic and header).
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub snapshot: usize,
    pub record: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The photo for the retained snapshot topic.
    pub snapshot: Option<Vec<u8>>,
    /// A photo was read but is over the packet limit (to be said).
    pub photo_too_large: bool,
    /// The record JSON to publish, or why it goes to quarantine.
    pub record: Result<String, String>,
    /// The record was fitted again (to be said).
    pub refitted: bool,
}

/// A spooled record's `json`, whether a photo was spooled with it, and the `photo` read (`None`
/// also when its file was lost); `newest`: no later capture of its terminal went to the
/// snapshot topic.
pub fn plan(
    json: String,
    photo_spooled: bool,
    photo: Option<Vec<u8>>,
    newest: bool,
    room: Room,
) -> Plan {
    let mut photo_lost = photo_spooled && photo.is_none();
    let mut photo_too_large = false;
    let snapshot = match photo {
        Some(p) if p.len() > room.snapshot => {
            photo_too_large = true;
            photo_lost = true;
            None
        }
        Some(p) if newest => Some(p),
        _ => None,
    };
    // A record must not promise a snapshot that never comes.
    let json = photo_lost
        .then(|| record::without_snapshot(&json))
        .flatten()
        .unwrap_or(json);
    let (record, refitted) = if json.len() <= room.record {
        (Ok(json), false)
    } else {
        match size::refit(&json, size::MAX_JSON.min(room.record)) {
            Some(fitted) => (Ok(fitted), true),
            None => (
                Err(format!(
                    "record JSON of {} bytes does not fit the packet limit even reduced",
                    json.len()
                )),
                false,
            ),
        }
    };
    Plan {
        snapshot,
        photo_too_large,
        record,
        refitted,
    }
}

/// The newest capture time per terminal whose photo went to the retained snapshot topic: a
/// backfilled older photo never replaces a newer one.
#[derive(Debug, Default)]
pub struct Snapshots(HashMap<String, u64>);

impl Snapshots {
    pub fn is_newest(&self, terminal: &str, sign_time: u64) -> bool {
        self.0.get(terminal).is_none_or(|t| sign_time >= *t)
    }

    pub fn sent(&mut self, terminal: &str, sign_time: u64) {
        self.0.insert(terminal.to_string(), sign_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::record::Record;
    use crate::pipeline::spool::{Entry, PhotoRef};
    use serde_json::Value;

    const ROOM: Room = Room {
        snapshot: 1_000,
        record: 10_000,
    };

    fn entry(photo: Option<&[u8]>) -> Entry {
        let mut r = Record::bare("door", "door-1-1", 1);
        r.snapshot = photo.is_some();
        Entry {
            terminal: "door".into(),
            event_id: r.event_id.clone(),
            sign_time: 1,
            json: r.to_json(),
            spooled_ms: 0,
            photo: photo.map(PhotoRef::of),
        }
    }

    fn snapshot_promised(p: &Plan) -> bool {
        let json = p.record.as_ref().expect("a record");
        let v: Value = serde_json::from_str(json).expect("json");
        v["snapshot"] == true
    }

    #[test]
    fn the_newest_capture_goes_to_the_snapshot_topic_and_an_older_one_does_not() {
        let e = entry(Some(b"jpeg"));
        let p = plan(
            e.json.clone(),
            e.photo.is_some(),
            Some(b"jpeg".to_vec()),
            true,
            ROOM,
        );
        assert_eq!(p.snapshot.as_deref(), Some(&b"jpeg"[..]));
        assert_eq!(p.record, Ok(e.json.clone()), "as spooled");
        assert!(snapshot_promised(&p) && !p.photo_too_large && !p.refitted);
        let p = plan(
            e.json.clone(),
            e.photo.is_some(),
            Some(b"jpeg".to_vec()),
            false,
            ROOM,
        );
        assert_eq!(p.snapshot, None);
        assert!(snapshot_promised(&p), "the record still has its photo");
    }

    #[test]
    fn a_photo_over_the_packet_limit_is_not_sent_and_the_record_no_longer_promises_it() {
        let e = entry(Some(b"jpeg"));
        let big = vec![0xFF; ROOM.snapshot + 1];
        let p = plan(e.json.clone(), e.photo.is_some(), Some(big), true, ROOM);
        assert_eq!(p.snapshot, None);
        assert!(p.photo_too_large && !snapshot_promised(&p));
        let exact = vec![0xFF; ROOM.snapshot];
        let p = plan(
            e.json.clone(),
            e.photo.is_some(),
            Some(exact.clone()),
            true,
            ROOM,
        );
        assert_eq!(p.snapshot, Some(exact), "exactly the room: sent");
        assert!(!p.photo_too_large);
    }

    #[test]
    fn a_photo_lost_from_the_spool_makes_the_record_say_snapshot_false() {
        let e = entry(Some(b"jpeg"));
        let p = plan(e.json.clone(), true, None, true, ROOM);
        assert_eq!(p.snapshot, None);
        assert!(!snapshot_promised(&p) && !p.photo_too_large);
        let e = entry(None);
        assert_eq!(
            plan(e.json.clone(), e.photo.is_some(), None, true, ROOM).record,
            Ok(e.json),
            "no photo: as spooled"
        );
    }

    #[test]
    fn a_record_over_the_limit_is_fitted_again_and_one_that_is_no_record_goes_to_quarantine() {
        let mut e = entry(None);
        let mut r = Record::from_json(&e.json).expect("record");
        r.extra
            .insert("description".into(), Value::from("d".repeat(20_000)));
        e.json = r.to_json();
        let p = plan(e.json.clone(), e.photo.is_some(), None, true, ROOM);
        assert!(p.refitted);
        let json = p.record.expect("fitted");
        assert!(json.len() <= ROOM.record && json.contains(r#""truncated":true"#));
        let exact = Room {
            record: e.json.len(),
            ..ROOM
        };
        assert_eq!(
            plan(e.json.clone(), e.photo.is_some(), None, true, exact).record,
            Ok(e.json.clone())
        );
        e.json = format!(r#"{{"pad":"{}"}}"#, "p".repeat(20_000));
        let p = plan(e.json.clone(), e.photo.is_some(), None, true, ROOM);
        assert!(!p.refitted);
        assert!(p.record.expect_err("quarantined").contains("20010 bytes"));
    }

    #[test]
    fn a_capture_as_new_as_the_last_one_sent_is_the_newest_and_terminals_are_apart() {
        let mut s = Snapshots::default();
        assert!(s.is_newest("door", 5));
        s.sent("door", 5);
        assert!(s.is_newest("door", 5) && s.is_newest("door", 6));
        assert!(!s.is_newest("door", 4));
        assert!(s.is_newest("gate", 1));
    }
}
