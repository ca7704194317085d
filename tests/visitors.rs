//! The people commands end to end (README, "Visitors"): a stranger at the door, `admit` from
//! MQTT, and the simulated terminal knowing that face as a visitor until the pass ends; passes,
//! revoke and block; and every way such a request must be refused. Judged on the broker (the
//! records the terminal then makes, the visitors sensor) and at the terminal (its users, its
//! opens), never in the bridge's log, which is only searched for what must not be in it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::{json, Value};

type Msg = (String, Vec<u8>, bool);

const SECTIONS: &str = "[commands]\nrequire_synchronized_clock = false\n";
const PEOPLE: &str = "commands = [\"open\", \"admit\", \"pass\", \"revoke\", \"block\"]\n";
const BASE: &str = "face2mqtt/front-door";
/// A name that must never reach the bridge's log.
const NAME: &str = "Ann Quietly-Visiting";

struct Rig {
    broker: Mosquitto,
    sim: Sim,
    sub: Subscriber,
    bridge: Bridge,
    seen: Vec<Msg>,
}

async fn rig(terminal_keys: &str) -> Rig {
    let broker = Mosquitto::start();
    let sim = default_simulator().await;
    let sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: terminal_keys,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    let mut r = Rig {
        broker,
        sim,
        sub,
        bridge,
        seen: Vec::new(),
    };
    until_online(&mut r.sub, &mut r.seen).await;
    wait_link(&r.sim.sim, 1).await;
    r
}

impl Rig {
    /// A request on `request/<cmd>` and its answer on `response/<cmd>`.
    async fn request(&mut self, cmd: &str, payload: &[u8], retain: bool) -> Value {
        let topics = (
            format!("{BASE}/request/{cmd}"),
            format!("{BASE}/response/{cmd}"),
        );
        request_answered(
            self.broker.port,
            &mut self.sub,
            &mut self.seen,
            (&topics.0, &topics.1),
            payload,
            retain,
        )
        .await
    }

    async fn ask(&mut self, cmd: &str, payload: Value) -> Value {
        self.request(cmd, payload.to_string().as_bytes(), false)
            .await
    }

    /// The record the broker carries for `event_id`.
    async fn record(&mut self, event_id: &str) -> Value {
        record_seen(&mut self.sub, &mut self.seen, event_id).await
    }

    /// Someone shows `face` to the camera; the record the broker carries for it.
    async fn shows(&mut self, face: &Arc<[u8]>) -> Value {
        let pushed = self.sim.sim.push_face(face.clone());
        let id = event_id_of(&pushed);
        self.record(&id).await
    }

    /// A stranger at the door: their record on the broker and their face.
    async fn stranger(&mut self) -> (String, Arc<[u8]>) {
        let pushed = self.sim.sim.push(Some(PersonType::Stranger));
        let face = self.sim.sim.newest_capture().expect("a stranger's capture");
        let record = self.record(&event_id_of(&pushed)).await;
        assert_eq!(record["person"]["type"], "stranger");
        (record["event_id"].as_str().expect("id").to_string(), face)
    }

    /// The next visitors sensor state (retained) after `mark` that `done` accepts.
    async fn visitors(&mut self, mark: usize, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("{BASE}/visitors");
        let t = topic.clone();
        let accept = move |m: &[Msg]| {
            m[mark..]
                .iter()
                .filter(|(tp, _, _)| *tp == t)
                .filter_map(|(_, p, _)| serde_json::from_slice::<Value>(p).ok())
                .any(|v| done(&v))
        };
        collect_until(
            &mut self.sub,
            &mut self.seen,
            Duration::from_secs(30),
            what,
            &accept,
        )
        .await;
        self.seen[mark..]
            .iter()
            .rev()
            .filter(|(tp, _, _)| *tp == topic)
            .find_map(|(_, p, _)| serde_json::from_slice::<Value>(p).ok())
            .expect("visitors")
    }

    fn user(&self, user_id: &str) -> Option<face2mqtt::integrations::terminal::User> {
        self.sim
            .sim
            .users()
            .into_iter()
            .find(|u| u.user_id == user_id)
    }
}

/// The pass of `user_id` on a visitors sensor state.
fn pass_of<'a>(state: &'a Value, user_id: &str) -> Option<&'a Value> {
    state["passes"]
        .as_array()?
        .iter()
        .find(|p| p["user_id"] == user_id)
}

/// Who the terminal knows, and as what.
fn roster(sim: &face2mqtt::simulator::Simulator) -> Vec<(String, i64)> {
    sim.users()
        .into_iter()
        .map(|u| (u.user_id.clone(), u.user_type))
        .collect()
}

/// A stranger, and an admit of them that opens, refused `not_allowed` on a terminal with these
/// keys: nothing enrolled, nothing opened.
async fn admit_that_opens_refused(terminal_keys: &str) -> (Rig, String) {
    let mut r = rig(terminal_keys).await;
    let (event_id, _) = r.stranger().await;
    let before = roster(&r.sim.sim);
    let answer = r
        .ask(
            "admit",
            json!({"event_id": event_id, "name": NAME, "until": "1h", "open": true}),
        )
        .await;
    assert_eq!(answer["reason"], "not_allowed", "{answer}");
    assert_eq!(roster(&r.sim.sim), before);
    assert!(r.sim.sim.opens().is_empty());
    (r, event_id)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339_in(secs: u64) -> String {
    let at = std::time::SystemTime::now() + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_stranger_is_a_visitor_by_name_until_the_pass_ends() {
    let mut r = rig(PEOPLE).await;
    let (event_id, face) = r.stranger().await;
    let mark = r.seen.len();
    // A short pass, to see it end: the next recognitions happen well inside it, even on a
    // loaded machine.
    let until = rfc3339_in(15);
    let answer = r
        .ask(
            "admit",
            json!({"event_id": event_id, "name": NAME, "until": until, "open": true, "transaction": 7}),
        )
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["opened"], true);
    assert_eq!(answer["transaction"], 7);
    let user_id = answer["user_id"].as_str().expect("user_id").to_string();
    assert_eq!(r.sim.sim.opens().len(), 1, "the door opened once");
    let user = r.user(&user_id).expect("enrolled at the terminal");
    assert_eq!((user.user_type, user.name.as_str()), (2, NAME));

    let again = r.shows(&face).await;
    assert_eq!(again["person"]["type"], "visitor", "{again}");
    assert_eq!(again["person"]["name"], NAME);
    let id = user_id.clone();
    let state = r
        .visitors(mark, "the new pass on the visitors sensor", move |v| {
            pass_of(v, &id).is_some()
        })
        .await;
    let pass = pass_of(&state, &user_id).expect("pass");
    assert_eq!(pass["name"], NAME);
    assert_eq!(pass["until"], until.as_str());
    let count = state["count"].as_u64().expect("count");
    assert_eq!(
        count as usize,
        state["passes"].as_array().map_or(0, Vec::len)
    );

    // The sensor reads again when the pass ends; after it, the face is a stranger's again.
    let mark = r.seen.len();
    let id = user_id.clone();
    let state = r
        .visitors(mark, "the pass gone once it ended", move |v| {
            pass_of(v, &id).is_none()
        })
        .await;
    assert_eq!(state["count"].as_u64(), Some(count - 1));
    let after = r.shows(&face).await;
    assert_eq!(after["person"]["type"], "stranger", "{after}");
    assert_eq!(r.sim.sim.opens().len(), 1, "nothing opened the door again");
    let log = r.bridge.log_text();
    assert!(
        !log.contains(NAME),
        "a visitor's name reached the bridge's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_from_a_photo_then_revoke_and_block() {
    let mut r = rig(PEOPLE).await;
    let (_, face) = r.stranger().await;
    let photo = base64::engine::general_purpose::STANDARD.encode(&face);
    let answer = r
        .ask(
            "pass",
            json!({"name": NAME, "photo": photo, "until": "2h", "purpose": "audit", "interviewee": "Lee"}),
        )
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer.get("opened").is_none(), "a pass opens nothing");
    let user_id = answer["user_id"].as_str().expect("user_id").to_string();
    let user = r.user(&user_id).expect("enrolled");
    assert_eq!(user.extra["purpose"], "audit");
    assert_eq!(r.shows(&face).await["person"]["type"], "visitor");
    assert!(r.sim.sim.opens().is_empty());

    // The same pass again changes that user, never adds a second.
    let before = roster(&r.sim.sim);
    let answer = r
        .ask(
            "pass",
            json!({"name": "Renamed", "photo": photo, "until": "3h"}),
        )
        .await;
    assert_eq!(answer["user_id"], user_id.as_str());
    assert_eq!(roster(&r.sim.sim), before);
    assert_eq!(
        r.user(&user_id).map(|u| u.name),
        Some("Renamed".to_string())
    );

    let answer = r.ask("revoke", json!({"user_id": user_id})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(r.user(&user_id).is_none(), "revoked at the terminal");
    assert_eq!(r.shows(&face).await["person"]["type"], "stranger");
    let answer = r.ask("revoke", json!({"user_id": user_id})).await;
    assert_eq!(
        (answer["status"].clone(), answer["reason"].clone()),
        (json!("error"), json!("no_user"))
    );

    // Block the stranger of a record: that face is then recorded as blacklisted.
    let (event_id, stranger) = r.stranger().await;
    let answer = r.ask("block", json!({"event_id": event_id})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let blocked = r.shows(&stranger).await;
    assert_eq!(blocked["person"]["type"], "blacklist", "{blocked}");
    assert!(
        r.sim.sim.opens().is_empty(),
        "no people command opened the door"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_commands_are_refused_unless_the_terminal_allows_them() {
    let (r, _) = admit_that_opens_refused("").await;
    assert!(
        !r.seen.iter().any(|(t, _, _)| t.ends_with("/visitors")),
        "no visitors sensor on a terminal without people commands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_people_requests_enrol_nothing_and_open_nothing() {
    let mut r = rig(PEOPLE).await;
    let (event_id, _) = r.stranger().await;
    let before = roster(&r.sim.sim);
    let staff = r.sim.sim.push(Some(PersonType::Staff));
    let staff_event = event_id_of(&staff);
    r.record(&staff_event).await;
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n0000000000");
    let tiny_jpeg = base64::engine::general_purpose::STANDARD.encode(tiny_jpeg(16));
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        // late: an admit that opens a minute after it was sent is not the owner's admit now
        ("admit", json!({"event_id": event_id, "name": NAME, "until": "1h", "open": true, "time": now_secs() - 60}).to_string().into_bytes(), false, "stale"),
        // a record whose capture is not kept: unknown, or not a stranger's
        ("admit", json!({"event_id": "front-door-1-2", "name": NAME, "until": "1h"}).to_string().into_bytes(), false, "capture_gone"),
        ("admit", json!({"event_id": staff_event, "name": NAME, "until": "1h"}).to_string().into_bytes(), false, "capture_gone"),
        ("block", json!({"event_id": staff_event}).to_string().into_bytes(), false, "capture_gone"),
        // windows: past, beyond people.max_pass, nonsense
        ("admit", json!({"event_id": event_id, "name": NAME, "until": "2020-01-01T00:00:00Z"}).to_string().into_bytes(), false, "bad_request"),
        ("admit", json!({"event_id": event_id, "name": NAME, "until": "8d"}).to_string().into_bytes(), false, "bad_request"),
        ("admit", json!({"event_id": event_id, "name": NAME, "until": "whenever"}).to_string().into_bytes(), false, "bad_request"),
        // names and members
        ("admit", json!({"event_id": event_id, "name": "x".repeat(31), "until": "1h"}).to_string().into_bytes(), false, "bad_request"),
        ("admit", json!({"event_id": event_id, "name": NAME, "until": "1h", "userType": 1}).to_string().into_bytes(), false, "bad_request"),
        ("admit", b"PRESS".to_vec(), false, "bad_request"),
        ("admit", b"{\"event_id\":".to_vec(), false, "bad_request"),
        ("revoke", json!({"user_id": "../../all"}).to_string().into_bytes(), false, "bad_request"),
        ("block", json!({"event_id": event_id, "user_id": "u"}).to_string().into_bytes(), false, "bad_request"),
        // photos: not a JPEG, too large a request
        ("pass", json!({"name": NAME, "photo": png, "until": "1h"}).to_string().into_bytes(), false, "bad_request"),
        ("pass", vec![b' '; (1 << 20) + 1], false, "bad_request"),
        ("admit", vec![b' '; 4097], false, "bad_request"),
    ];
    for (cmd, payload, retain, reason) in cases {
        let answer = r.request(cmd, &payload, retain).await;
        let shown: String = String::from_utf8_lossy(&payload).chars().take(80).collect();
        assert_eq!(answer["status"], "error", "{cmd} {shown}: {answer}");
        assert_eq!(answer["reason"], reason, "{cmd} {shown}: {answer}");
    }
    // A JPEG without a face: the terminal refuses it (30002), and says so in words.
    let answer = r
        .ask(
            "pass",
            json!({"name": NAME, "photo": tiny_jpeg, "until": "1h"}),
        )
        .await;
    assert_eq!(
        (answer["reason"].clone(), answer["code"].clone()),
        (json!("terminal"), json!(30002)),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("30002")),
        "{answer}"
    );
    // Revoke never removes staff.
    let staff_id = staff["userId"].as_str().expect("staff id").to_string();
    let answer = r.ask("revoke", json!({"user_id": staff_id})).await;
    assert_eq!(answer["reason"], "not_a_visitor", "{answer}");
    assert!(r.user(&staff_id).is_some());

    assert_eq!(
        roster(&r.sim.sim),
        before,
        "nothing was enrolled or changed"
    );
    assert!(r.sim.sim.opens().is_empty(), "nothing opened the door");
    assert!(
        !r.bridge.log_text().contains(NAME),
        "a name reached the bridge's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_people_requests_waiting_on_the_broker_are_refused() {
    // Replayed (retain=1) on every subscribe: they would run again on every reconnect.
    let broker = Mosquitto::start();
    let photo = base64::engine::general_purpose::STANDARD.encode(b"\xFF\xD8\xFF\xE0jpeg");
    for (cmd, payload) in [
        (
            "admit",
            json!({"event_id": "front-door-1-2", "name": NAME, "until": "1h", "open": true}),
        ),
        ("pass", json!({"name": NAME, "photo": photo, "until": "1h"})),
    ] {
        publish(
            broker.port,
            &format!("{BASE}/request/{cmd}"),
            payload.to_string().as_bytes(),
            true,
        )
        .await;
    }
    let sim = default_simulator().await;
    let before = roster(&sim.sim);
    let mut sub = subscribe(broker.port, "face2mqtt/+/response/#").await;
    let _bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: PEOPLE,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "both refusals",
        |m| m.len() >= 2,
    )
    .await;
    for (topic, payload, _) in &seen {
        let answer: Value = serde_json::from_slice(payload).expect("json");
        assert_eq!(answer["reason"], "retained", "{topic}: {answer}");
    }
    assert_eq!(roster(&sim.sim), before);
    assert!(sim.sim.opens().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admit_that_asks_to_open_where_open_is_not_allowed_is_refused_whole() {
    let (mut r, event_id) = admit_that_opens_refused("commands = [\"admit\"]\n").await;
    let answer = r
        .ask(
            "admit",
            json!({"event_id": event_id, "name": NAME, "until": "1h"}),
        )
        .await;
    assert_eq!(answer["status"], "ok", "without open it enrols: {answer}");
    assert!(r.sim.sim.opens().is_empty());
}
