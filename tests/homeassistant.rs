//! Home Assistant discovery, its upkeep across restarts, and fresh-only events: the daemon in
//! process (with a fake exit button) against a real Mosquitto and the simulator.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::inproc::{Daemon, FakePins};
use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::Value;

type Msg = (String, Vec<u8>, bool);

const BUTTON: &str = r#"
[[button]]
pin = 17
terminal = "front-door"
press = "open"
"#;

const SECTIONS: &str = "[commands]\nrequire_synchronized_clock = false\nopen_hold = \"100ms\"\n";

/// Bridge: 4 diagnostic sensors + the button's event. Terminal: event, image, 3 sensors (the
/// clock offset among them), 2 binary sensors, 3 buttons, the lock.
const BRIDGE_ENTITIES: usize = 5;
const TERMINAL_ENTITIES: usize = 11;

/// Keys every entity may carry, whatever its platform.
const COMMON_KEYS: &[&str] = &[
    "name",
    "unique_id",
    "default_entity_id",
    "device",
    "origin",
    "qos",
    "availability",
    "availability_mode",
    "entity_category",
    "icon",
    "enabled_by_default",
    "json_attributes_topic",
    "json_attributes_template",
];

/// HA's `lock.mqtt` schema: a key outside it fails HA's validation of the whole entity.
const LOCK_KEYS: &[&str] = &[
    "command_topic",
    "command_template",
    "state_topic",
    "value_template",
    "code_format",
    "optimistic",
    "retain",
    "payload_lock",
    "payload_unlock",
    "payload_open",
    "payload_reset",
    "state_locked",
    "state_locking",
    "state_unlocked",
    "state_unlocking",
    "state_open",
    "state_opening",
    "state_jammed",
];

fn is_config(topic: &str) -> bool {
    topic.starts_with("homeassistant/") && topic.ends_with("/config")
}

/// The latest non-empty config payload per topic.
fn configs(messages: &[Msg]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (t, p, _) in messages.iter().filter(|(t, _, _)| is_config(t)) {
        if p.is_empty() {
            out.remove(t);
        } else {
            out.insert(
                t.clone(),
                serde_json::from_slice(p).expect("config is JSON"),
            );
        }
    }
    out
}

fn config_count(messages: &[Msg], live_only: bool) -> usize {
    messages
        .iter()
        .filter(|(t, p, retain)| is_config(t) && !p.is_empty() && (!live_only || !retain))
        .map(|(t, _, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .len()
}

fn str_of<'a>(v: &'a Value, key: &str, topic: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{topic}: `{key}` must be a string, got {}", v[key]))
}

/// What HA's MQTT discovery schema for each platform requires (and rejects).
fn check_against_home_assistant(topic: &str, v: &Value) {
    let component = topic.split('/').nth(1).expect("component");
    assert!(
        [
            "sensor",
            "binary_sensor",
            "event",
            "image",
            "button",
            "lock"
        ]
        .contains(&component),
        "{topic}: unexpected platform"
    );
    // Common to every entity.
    str_of(v, "name", topic);
    str_of(v, "unique_id", topic);
    assert!(
        str_of(v, "default_entity_id", topic).starts_with(&format!("{component}.")),
        "{topic}: default_entity_id must be <domain>.<id>"
    );
    assert!(
        v.get("object_id").is_none(),
        "{topic}: object_id is deprecated"
    );
    let ids = v["device"]["identifiers"].as_array().expect("identifiers");
    assert!(!ids.is_empty(), "{topic}: a device needs identifiers");
    str_of(&v["device"], "name", topic);
    str_of(&v["origin"], "name", topic);
    let avail = v["availability"].as_array().expect("availability list");
    assert!(!avail.is_empty());
    for a in avail {
        str_of(a, "topic", topic);
    }
    if let Some(m) = v.get("availability_mode") {
        assert!(
            ["all", "any", "latest"].contains(&m.as_str().unwrap_or("")),
            "{topic}"
        );
    }
    if let Some(c) = v.get("entity_category") {
        assert!(
            ["config", "diagnostic"].contains(&c.as_str().unwrap_or("")),
            "{topic}"
        );
    }
    match component {
        "event" => {
            str_of(v, "state_topic", topic);
            let types = v["event_types"].as_array().expect("event_types");
            assert!(!types.is_empty() && types.iter().all(Value::is_string));
        }
        "image" => {
            assert!(
                v.get("image_topic").is_some() != v.get("url_topic").is_some(),
                "{topic}: exactly one of image_topic / url_topic"
            );
            assert_eq!(v["content_type"], "image/jpeg");
        }
        "sensor" => {
            str_of(v, "state_topic", topic);
            match v.get("device_class").and_then(Value::as_str) {
                Some("temperature") => assert!(
                    ["°C", "°F", "K"].contains(&str_of(v, "unit_of_measurement", topic)),
                    "{topic}"
                ),
                Some("duration") => assert!(
                    ["d", "h", "min", "s", "ms"].contains(&str_of(v, "unit_of_measurement", topic)),
                    "{topic}"
                ),
                Some(other) => panic!("{topic}: device_class {other} not checked"),
                None => {}
            }
            if let Some(sc) = v.get("state_class") {
                assert!(
                    ["measurement", "total", "total_increasing"]
                        .contains(&sc.as_str().unwrap_or("")),
                    "{topic}"
                );
            }
        }
        "binary_sensor" => {
            str_of(v, "state_topic", topic);
        }
        "button" => {
            str_of(v, "command_topic", topic);
            assert_ne!(
                v.get("retain"),
                Some(&Value::Bool(true)),
                "{topic}: never retained"
            );
        }
        "lock" => {
            for key in v.as_object().expect("object").keys() {
                assert!(
                    COMMON_KEYS.contains(&key.as_str()) || LOCK_KEYS.contains(&key.as_str()),
                    "{topic}: `{key}` is not a lock key"
                );
            }
            str_of(v, "command_topic", topic);
            str_of(v, "state_topic", topic);
            // Without payload_open HA offers only lock and unlock.
            assert_eq!(str_of(v, "payload_open", topic), "OPEN");
            assert_eq!(str_of(v, "payload_unlock", topic), "UNLOCK");
            assert_eq!(str_of(v, "payload_lock", topic), "LOCK");
            assert_eq!(str_of(v, "state_locked", topic), "locked");
            assert_eq!(str_of(v, "state_unlocked", topic), "unlocked");
            assert_eq!(str_of(v, "state_open", topic), "open");
            assert_eq!(v["retain"], false, "{topic}: never retained");
        }
        _ => unreachable!(),
    }
}

/// Every topic a config names: `*_topic` keys and availability topics.
fn named_topics(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        for (k, val) in m {
            if k.ends_with("_topic") {
                out.push((k.clone(), val.as_str().expect("topic string").to_string()));
            }
        }
    }
    for a in v["availability"].as_array().into_iter().flatten() {
        out.push((
            "availability".into(),
            a["topic"].as_str().expect("topic").to_string(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_has_what_home_assistant_requires_and_names_only_topics_the_bridge_uses() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut ha = subscribe(broker.port, "homeassistant/#").await;
    let mut ours = subscribe(broker.port, "face2mqtt/#").await;
    let pins = FakePins::default();
    let setup = BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: BUTTON,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start(&setup, pins.clone());
    wait_link(&s.sim, 1).await;

    let mut seen = Vec::new();
    let total = BRIDGE_ENTITIES + TERMINAL_ENTITIES;
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "every entity",
        |m| config_count(m, false) >= total,
    )
    .await;
    // The device details come from the terminal; wait for the announcement that carries them.
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "device details",
        |m| {
            configs(m)
                .values()
                .filter(|v| v["device"]["serial_number"] == "SIM0000000000001")
                .count()
                == TERMINAL_ENTITIES
        },
    )
    .await;
    let all = configs(&seen);
    assert_eq!(all.len(), total, "{:#?}", all.keys());
    let mut unique = BTreeSet::new();
    for (topic, v) in &all {
        check_against_home_assistant(topic, v);
        assert!(
            unique.insert(v["unique_id"].to_string()),
            "{topic}: unique_id reused"
        );
    }
    let temp = all
        .iter()
        .find(|(t, _)| t.ends_with("front-door_temperature/config"))
        .expect("temperature sensor")
        .1;
    assert_eq!(temp["device"]["model"], "AATSS V2 PRO");
    assert_eq!(temp["device"]["via_device"], "face2mqtt_bridge");
    let entity = |suffix: &str| {
        all.iter()
            .find(|(t, _)| t.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix}"))
            .1
    };
    let lock = entity("/lock/face2mqtt/front-door_lock/config");
    let open = entity("/button/face2mqtt/front-door_open/config");
    assert_eq!(lock["availability"], open["availability"]);
    assert_eq!(lock["availability_mode"], open["availability_mode"]);

    // Make every state topic carry something: a record (record, snapshot, event), a button
    // press; diagnostics, bridge state and availability are published on connect.
    let pushed = s.sim.push(Some(PersonType::Staff));
    // A 100 ms press, its edges stamped as the GPIO driver stamps them (no sleep).
    let pressed = std::time::Instant::now();
    pins.level_at(17, false, pressed);
    pins.level_at(17, true, pressed + Duration::from_millis(100));
    let mut traffic = Vec::new();
    let wanted: BTreeSet<String> = all
        .values()
        .flat_map(named_topics)
        .filter(|(k, _)| k != "command_topic")
        .map(|(_, t)| t)
        .collect();
    collect_until(
        &mut ours,
        &mut traffic,
        Duration::from_secs(20),
        "a message on every state topic discovery names",
        |m| {
            let got: BTreeSet<&str> = m.iter().map(|(t, _, _)| t.as_str()).collect();
            wanted.iter().all(|w| got.contains(w.as_str()))
        },
    )
    .await;
    let event = traffic
        .iter()
        .find(|(t, _, _)| t == "face2mqtt/front-door/event")
        .expect("event");
    let event: Value = serde_json::from_slice(&event.1).expect("event JSON");
    assert_eq!(event["event_type"], "staff");
    assert_eq!(event["name"], pushed["name"]);

    // Every command topic is served: pressing it gets an answer from the bridge.
    let commands: Vec<String> = all
        .values()
        .flat_map(named_topics)
        .filter(|(k, _)| k == "command_topic")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(commands.len(), 4);
    for c in &commands {
        // The lock answers on the open request's response topic.
        let (response, press) = match c.strip_suffix("/lock/set") {
            Some(t) => (format!("{t}/response/open"), &b"OPEN"[..]),
            None => (c.replace("/request/", "/response/"), &b"PRESS"[..]),
        };
        let mark = traffic.len();
        publish(broker.port, c, press, false).await;
        // The lock's OPEN may come within the 100 ms hold of the button's: held back, answered.
        collect_until(
            &mut ours,
            &mut traffic,
            Duration::from_secs(10),
            &response,
            |m| {
                m[mark..].iter().any(|(t, p, _)| {
                    t == &response
                        && serde_json::from_slice::<Value>(p)
                            .is_ok_and(|v| v["status"] == "ok" || v["reason"] == "duplicate")
                })
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_published_again_after_the_broker_forgets_and_when_home_assistant_restarts() {
    let mut broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut ha = subscribe(broker.port, "homeassistant/#").await;
    let setup = BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start(&setup, FakePins::default());
    let total = BRIDGE_ENTITIES - 1 + TERMINAL_ENTITIES;
    let mut seen = Vec::new();
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "discovery",
        |m| {
            config_count(m, false) >= total
                && configs(m)
                    .values()
                    .filter(|v| v["device"]["serial_number"] == "SIM0000000000001")
                    .count()
                    == TERMINAL_ENTITIES
        },
    )
    .await;
    // Nothing more is published now; forget what is still queued from the start.
    while ha.rx.try_recv().is_ok() {}

    // A broker that lost every retained message: only a re-publication can bring them back.
    broker.restart_forgetting();
    let mut seen = Vec::new();
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(30),
        "discovery after the broker restart",
        |m| config_count(m, false) >= total,
    )
    .await;

    // HA restarted: it says so on its status topic, and wants everything again. The subscription
    // is old, so what arrives now is live, not a retained replay.
    // The bridge subscribes again on its reconnect, and its discovery may reach us before the
    // broker has that subscription in place: an announcement made then is heard by no one (CI
    // saw it once). So HA's announcement is made again every 2 s until the bridge answers.
    let mut seen = Vec::new();
    let port = broker.port;
    let announcing = tokio::spawn(async move {
        loop {
            publish(port, "homeassistant/status", b"online", false).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "discovery after Home Assistant came online",
        |m| config_count(m, true) >= total,
    )
    .await;
    announcing.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_removed_from_the_config_has_its_entities_cleared() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut ha = subscribe(broker.port, "homeassistant/#").await;
    let garage = format!(
        "\n[[terminal]]\nid = \"garage\"\nhost = \"127.0.0.1\"\nhttp_port = {}\nws_port = {}\npassword = \"x\"\n",
        unused_port(),
        unused_port()
    );
    let two = BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: &garage,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let d = Daemon::start(&two, FakePins::default());
    let mut seen = Vec::new();
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "both terminals",
        |m| config_count(m, false) >= BRIDGE_ENTITIES - 1 + 2 * TERMINAL_ENTITIES,
    )
    .await;
    let garage_topics: BTreeSet<String> = configs(&seen)
        .into_keys()
        .filter(|t| t.contains("/garage_"))
        .collect();
    assert_eq!(garage_topics.len(), TERMINAL_ENTITIES);
    let dir = d.stop().await;

    let one = BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start_in(&one, FakePins::default(), dir);
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "the garage's entities cleared",
        |m| {
            garage_topics
                .iter()
                .all(|g| m.iter().any(|(t, p, _)| t == g && p.is_empty()))
        },
    )
    .await;

    // A newcomer sees what is retained now: the retained replay comes before anything published
    // after the subscription, so a marker ends it.
    let mut fresh = subscribe(broker.port, "homeassistant/#").await;
    publish(broker.port, "homeassistant/test-marker", b"end", false).await;
    let mut retained = Vec::new();
    collect_until(
        &mut fresh,
        &mut retained,
        Duration::from_secs(10),
        "the marker",
        |m| m.iter().any(|(t, _, _)| t == "homeassistant/test-marker"),
    )
    .await;
    let now = configs(&retained);
    assert!(
        !now.keys().any(|t| t.contains("/garage_")),
        "{:#?}",
        now.keys()
    );
    assert!(now.keys().any(|t| t.contains("/front-door_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_home_assistant_off_clears_every_entity_the_lock_among_them() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut ha = subscribe(broker.port, "homeassistant/#").await;
    let on = BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let d = Daemon::start(&on, FakePins::default());
    let lock = "homeassistant/lock/face2mqtt/front-door_lock/config";
    let mut seen = Vec::new();
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "every entity",
        |m| config_count(m, false) >= BRIDGE_ENTITIES - 1 + TERMINAL_ENTITIES,
    )
    .await;
    let announced: BTreeSet<String> = configs(&seen).into_keys().collect();
    assert!(announced.contains(lock), "{announced:#?}");
    let dir = d.stop().await;

    let sections = format!("{SECTIONS}[home_assistant]\nenabled = false\n");
    let off = BridgeSetup {
        extra_sections: &sections,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start_in(&off, FakePins::default(), dir);
    collect_until(
        &mut ha,
        &mut seen,
        Duration::from_secs(20),
        "every entity cleared",
        |m| configs(m).is_empty(),
    )
    .await;
    assert!(
        seen.iter().any(|(t, p, _)| t == lock && p.is_empty()),
        "the lock's config was cleared with an empty payload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_record_older_than_the_limit_reaches_the_record_topic_but_not_the_event() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    // Recorded ten minutes ago (by the terminal's clock), while no bridge was listening.
    s.sim.set_clock_skew(-10 * 60 * 1000);
    let old: Vec<Value> = (0..3)
        .map(|_| s.sim.push(Some(PersonType::Visitor)))
        .collect();
    s.sim.set_clock_skew(0);

    let mut ours = subscribe(broker.port, "face2mqtt/+/+").await;
    let setup = BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start(&setup, FakePins::default());
    let mut seen = Vec::new();
    collect_until(
        &mut ours,
        &mut seen,
        Duration::from_secs(20),
        "the backfilled records",
        |m| {
            records_of(m)
                .iter()
                .filter(|r| r["source"] == "backfill")
                .count()
                >= old.len()
        },
    )
    .await;

    wait_link(&s.sim, 1).await;
    let live = s.sim.push(Some(PersonType::Blacklist));
    let live_id = format!("front-door-{}-{}", live["signTime"], live["id"]);
    collect_until(
        &mut ours,
        &mut seen,
        Duration::from_secs(20),
        "the live record's event",
        |m| m.iter().any(|(t, _, _)| t == "face2mqtt/front-door/event"),
    )
    .await;
    // Publishes reach a subscriber in order: events of the older records would be here by now.
    let events: Vec<Value> = seen
        .iter()
        .filter(|(t, _, _)| t == "face2mqtt/front-door/event")
        .map(|(_, p, _)| serde_json::from_slice(p).expect("event JSON"))
        .collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], live_id.as_str());
    assert_eq!(events[0]["event_type"], "blacklist");
    assert_eq!(events[0]["source"], "live");
    // The retained latest record (what HA's state sensors read) is the live one, the newest.
    let last: Vec<Value> = seen
        .iter()
        .filter(|(t, _, _)| t == "face2mqtt/front-door/last_record")
        .map(|(_, p, _)| serde_json::from_slice(p).expect("record JSON"))
        .collect();
    assert_eq!(
        last.last().expect("last_record published")["event_id"],
        live_id.as_str()
    );
    assert!(
        last.windows(2)
            .all(|w| w[0]["timestamp"].as_u64() <= w[1]["timestamp"].as_u64()),
        "last_record never goes back in time: {last:#?}"
    );
}
