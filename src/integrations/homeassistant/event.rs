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

use serde_json::{json, Value};

use crate::pipeline::record::{Record, Source};

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

    /// Whether a record the bridge took at `spooled_ms` is still fresh at `now_ms`: asked before
    /// the record is read at all, so a drain after an outage reads none of its stale records.
    pub fn in_time(&self, spooled_ms: u64, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(spooled_ms)) <= self.max_age.as_millis()
    }

    /// The event payload for this record, if it should fire: pushed live, and taken by the
    /// bridge (`spooled_ms`) no longer than the limit before `now_ms` (both Unix ms, ours).
    pub fn fire(&mut self, record: &Record, spooled_ms: u64, now_ms: u64) -> Option<Vec<u8>> {
        if record.source != Source::Live
            || !self.in_time(spooled_ms, now_ms)
            || !self.seen.insert(record.event_id.clone())
        {
            return None;
        }
        self.recent.push_back(record.event_id.clone());
        if self.recent.len() > REMEMBER {
            if let Some(old) = self.recent.pop_front() {
                self.seen.remove(&old);
            }
        }
        Some(payload(record).to_string().into_bytes())
    }
}

/// `event_type` is the person type; the rest become the event's attributes in HA.
pub fn payload(record: &Record) -> Value {
    let p = &record.person;
    json!({
        "event_type": p.kind,
        "name": p.name,
        "user_id": p.user_id,
        "department": p.department,
        "similarity": record.similarity,
        "temperature": record.temperature,
        "mask": record.mask,
        "method": record.method,
        "event_id": record.event_id,
        "time": record.time,
        "source": record.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, timestamp: u64, kind: &str) -> Record {
        with_source(id, timestamp, kind, Source::Live)
    }

    fn with_source(id: &str, timestamp: u64, kind: &str, source: Source) -> Record {
        let mut r = Record::bare("t", id, timestamp);
        r.source = source;
        r.person.user_id = "E1".into();
        r.person.name = "Ada".into();
        r.person.kind = kind.into();
        r.person.department = "R&D".into();
        r.similarity = Some(93);
        r.temperature = Some(crate::pipeline::record::Temperature {
            value: 36.6,
            unit: "C".into(),
            state: "normal".into(),
        });
        r
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
        assert_eq!(v["mask"], Value::Null);
        assert_eq!(v["source"], "live");
        assert_eq!(v["department"], "R&D");
        assert_eq!(v["user_id"], "E1");
        assert_eq!(v["method"], "face");
        assert_eq!(v["time"], "1970-01-01T00:16:40Z");
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
        let r = with_source("a", 1_800_000_000, "staff", Source::Backfill);
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
}
