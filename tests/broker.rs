//! A broker that says no, end to end: a real Mosquitto with an ACL, and two bridges with one
//! client id. Delivery is judged by a subscriber on the broker, never by the bridge's log.

mod common;

use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::Value;

/// The ACL an installer writes and gets wrong: the bridge's user may write everything but the
/// record topic of one door. Anonymous clients (the test's subscriber) read and write all.
const FORGOT_RECORDS: &str =
    "topic readwrite #\nuser bridge\ntopic readwrite #\ntopic deny face2mqtt/front-door/record\n";
const FIXED: &str = "topic readwrite #\nuser bridge\ntopic readwrite #\n";

fn event_ids_of(
    sim: &face2mqtt::simulator::Simulator,
    n: usize,
) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| {
            let r = sim.push(Some(PersonType::Staff));
            let map = r.as_object().expect("record");
            face2mqtt::pipeline::record::normalize(
                "front-door",
                map,
                face2mqtt::pipeline::record::Source::Live,
            )
            .expect("normalizes")
            .record
            .event_id
        })
        .collect()
}

async fn log_says(bridge: &Bridge, what: &str) {
    eventually(what, Duration::from_secs(20), || async {
        bridge.log_text().contains(what)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_refuses_stay_spooled_and_arrive_once_the_acl_is_fixed() {
    let mut broker = Mosquitto::start_with_acl(&[("bridge", "pw")], FORGOT_RECORDS);
    let sim = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let mut seen = Vec::new();
    let bridge = Bridge::start(&BridgeSetup {
        extra_mqtt_keys: "username = \"bridge\"\npassword = \"pw\"",
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    wait_link(&sim.sim, 1).await;
    let want = event_ids_of(&sim.sim, 10);
    log_says(
        &bridge,
        "the broker refused a publish on face2mqtt/front-door/record",
    )
    .await;
    // Refused again on every retry while the ACL stands; nothing reached the subscriber.
    log_says(&bridge, "refused again").await;
    let early: Vec<_> = std::iter::from_fn(|| sub.rx.try_recv().ok()).collect();
    assert!(records_of(&early).is_empty(), "refused, so not delivered");
    broker.set_acl(FIXED);
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(90), &bridge).await;
    let log = bridge.log_text();
    assert_eq!(
        log.matches("the broker refused a publish on").count(),
        1,
        "one ERROR for the episode:\n{log}"
    );
    assert!(log.contains("NotAuthorized (0x87)"), "{log}");
    assert!(
        log.contains("accepts publishes on this topic again"),
        "{log}"
    );
    assert!(!log.contains("broker connection lost"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusals_are_counted_in_diagnostics() {
    let broker = Mosquitto::start_with_acl(&[("bridge", "pw")], FORGOT_RECORDS);
    let sim = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/diagnostics").await;
    let mut seen = Vec::new();
    let _bridge = Bridge::start(&BridgeSetup {
        extra_mqtt_keys: "username = \"bridge\"\npassword = \"pw\"\ndiagnostics_interval = \"1s\"",
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    wait_link(&sim.sim, 1).await;
    event_ids_of(&sim.sim, 3);
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "refusals counted",
        |m| {
            m.iter().any(|(_, p, _)| {
                serde_json::from_slice::<Value>(p)
                    .is_ok_and(|v| v["broker_refusals"].as_u64().unwrap_or(0) >= 3)
            })
        },
    )
    .await;
}

/// Two bridges with one config (a config copied to a second Pi): the broker hands the session
/// back and forth. They must say so, and wait longer each time instead of flapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_with_one_client_id_say_so_and_back_off() {
    let broker = Mosquitto::start();
    let sim = default_simulator().await;
    let setup = BridgeSetup::new(broker.port, &sim.sim, PASSWORD);
    let write = |dir: &std::path::Path| {
        let own = bridge_config(&setup, &dir.join("spool"));
        let id = own
            .lines()
            .find(|l| l.starts_with("client_id"))
            .expect("a client id line")
            .to_string();
        own.replacen(&id, "client_id = \"copied\"", 1).replacen(
            "reconnect_max = \"500ms\"",
            "reconnect_max = \"4s\"",
            1,
        )
    };
    let a = Bridge::start_written(&[], write);
    log_says(&a, "connected to the broker").await;
    let b = Bridge::start_written(&[], write);
    let said = |b: &Bridge| b.log_text().contains("took its session");
    eventually(
        "a bridge names the client id",
        Duration::from_secs(20),
        || async { said(&a) || said(&b) },
    )
    .await;
    let log = if said(&a) { a.log_text() } else { b.log_text() };
    assert!(log.contains("mqtt.client_id"), "{log}");
    assert!(log.contains("`copied`"), "{log}");
    // Measured from here over 8 s: with the wait growing to 4 s, a handful of connections;
    // before, the two took the session from each other many times a second.
    let count = || {
        a.log_text().matches("reconnected to the broker").count()
            + b.log_text().matches("reconnected to the broker").count()
    };
    let before = count();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let flaps = count() - before;
    assert!(flaps <= 12, "{flaps} reconnects in 8 s");
    for bridge in [&a, &b] {
        let n = bridge.log_text().matches("took its session").count();
        assert!(n <= 1, "said once per episode, not {n} times");
    }
}

/// `check` under an ACL that forgot the bridge's own topics: one line naming the topic and the
/// broker's reason, exit 1 (before, "ok broker" and exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_topic_a_broker_acl_refuses() {
    let broker = Mosquitto::start_with_acl(
        &[("bridge", "pw")],
        "topic readwrite #\nuser bridge\ntopic readwrite #\ntopic deny face2mqtt/bridge/#\n",
    );
    let sim = default_simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = BridgeSetup {
        extra_mqtt_keys: "username = \"bridge\"\npassword = \"pw\"",
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    };
    let path = dir.path().join("config.toml");
    std::fs::write(&path, bridge_config(&setup, &dir.path().join("spool"))).expect("write");
    let out = tokio::task::spawn_blocking(move || {
        bridge_command()
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("runs")
    })
    .await
    .expect("check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("FAILED  broker round trip"))
        .unwrap_or_else(|| panic!("no round-trip line: {text}"));
    assert!(line.contains("face2mqtt/bridge/check/"), "{line}");
    assert!(line.contains("NotAuthorized (0x87)"), "{line}");
}
