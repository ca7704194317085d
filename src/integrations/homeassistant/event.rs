//! Which records fire Home Assistant's "Recognition" event, and with what payload.
//!
//! Every record goes to `<base>/<t>/record`. Only fresh ones also go to `<base>/<t>/event`: a
//! record fetched by backfill after a night-long outage, or held in the spool while the broker was
//! down, must not trigger this morning's "open the side door for staff" automation.
//!
//! Fresh means pushed live and published within `max_event_age` of when the bridge took it,
//! both by this machine's clock. The terminal's date says nothing here: a terminal whose clock
//! fell back to 2000 still recognizes people now, and one dated 2040 is not from the future.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// How many recent event ids are remembered so a resend after a reconnect does not fire twice.
const REMEMBER: usize = 512;

pub struct FreshEvents {
    max_age: Duration,
    recent: VecDeque<String>,
    seen: HashSet<String>,
}

impl FreshEvents {
    pub fn new(max_age: Duration) -> FreshEvents {
        FreshEvents {
            max_age,
            recent: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// The event payload for this record, if it should fire: pushed live, and taken by the
    /// bridge (`spooled_ms`) no longer than the limit before `now_ms` (both Unix ms, ours).
    pub fn fire(&mut self, record: &Value, spooled_ms: u64, now_ms: u64) -> Option<Vec<u8>> {
        if record.get("source")?.as_str()? != "live" {
            return None;
        }
        let event_id = record.get("event_id")?.as_str()?;
        let held = u128::from(now_ms.saturating_sub(spooled_ms));
        if held > self.max_age.as_millis() {
            return None;
        }
        if self.seen.contains(event_id) {
            return None;
        }
        self.seen.insert(event_id.to_string());
        self.recent.push_back(event_id.to_string());
        if self.recent.len() > REMEMBER {
            if let Some(old) = self.recent.pop_front() {
                self.seen.remove(&old);
            }
        }
        Some(payload(record).to_string().into_bytes())
    }
}

/// `event_type` is the person type; the rest become the event's attributes in HA.
pub fn payload(record: &Value) -> Value {
    let person = record.get("person").cloned().unwrap_or(Value::Null);
    let kind = person
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("stranger");
    let mut m = Map::new();
    m.insert("event_type".into(), json!(kind));
    for key in ["name", "user_id", "department"] {
        if let Some(v) = person.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    for key in [
        "similarity",
        "temperature",
        "mask",
        "method",
        "event_id",
        "time",
        "source",
    ] {
        if let Some(v) = record.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, timestamp: u64, kind: &str) -> Value {
        with_source(id, timestamp, kind, "live")
    }

    fn with_source(id: &str, timestamp: u64, kind: &str, source: &str) -> Value {
        json!({
            "event_id": id, "terminal": "t", "timestamp": timestamp, "time": "x", "source": source,
            "person": {"user_id": "E1", "name": "Ada", "type": kind, "department": "R&D"},
            "similarity": 93, "temperature": {"value": 36.6, "unit": "C", "state": "normal"},
            "mask": null, "method": "face",
        })
    }

    #[test]
    fn a_fresh_record_fires_with_its_person_type_as_the_event_type() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        let p = f
            .fire(&record("a", 1000, "blacklist"), 1_000_000, 1_010_000)
            .expect("fires");
        let v: Value = serde_json::from_slice(&p).expect("json");
        assert_eq!(v["event_type"], "blacklist");
        assert_eq!(v["name"], "Ada");
        assert_eq!(v["event_id"], "a");
        assert_eq!(v["similarity"], 93);
        assert_eq!(v["temperature"]["value"], 36.6);
    }

    #[test]
    fn a_record_held_longer_than_the_limit_does_not_fire() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        assert!(f.fire(&record("a", 1000, "staff"), 0, 60_001).is_none());
        assert!(f.fire(&record("b", 1000, "staff"), 0, 60_000).is_some());
    }

    #[test]
    fn a_live_record_fires_whatever_the_terminal_clock_says() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        let now = 1_800_000_000_000;
        // Its clock fell back to 2000, or jumped to 2040: the person is at the door now.
        assert!(f
            .fire(&record("a", 946_684_800, "staff"), now - 50, now)
            .is_some());
        assert!(f
            .fire(&record("b", 2_208_988_800, "staff"), now - 50, now)
            .is_some());
    }

    #[test]
    fn a_fetched_record_never_fires_even_when_dated_now() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        let r = with_source("a", 1_800_000_000, "staff", "backfill");
        assert!(f.fire(&r, 1_800_000_000_000, 1_800_000_000_000).is_none());
    }

    #[test]
    fn a_record_taken_after_our_clock_stepped_back_still_fires() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        assert!(f.fire(&record("a", 1000, "staff"), 5_000, 1_000).is_some());
    }

    #[test]
    fn a_resent_record_fires_once() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        assert!(f.fire(&record("a", 1000, "staff"), 1000, 1000).is_some());
        assert!(f.fire(&record("a", 1000, "staff"), 1000, 1001).is_none());
    }

    #[test]
    fn the_memory_of_fired_events_is_bounded() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        for i in 0..(REMEMBER + 10) {
            f.fire(&record(&format!("r{i}"), 1000, "staff"), 1000, 1000);
        }
        assert_eq!(f.seen.len(), REMEMBER);
        assert_eq!(f.recent.len(), REMEMBER);
    }

    #[test]
    fn a_record_without_source_or_id_does_not_fire() {
        let mut f = FreshEvents::new(Duration::from_secs(60));
        assert!(f.fire(&json!({"event_id": "a"}), 0, 0).is_none());
        assert!(f.fire(&json!({"source": "live"}), 0, 0).is_none());
    }
}
